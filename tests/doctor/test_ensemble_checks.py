"""The doctor on an ensemble: no gain over the best member (a warning with a fitted fusion to try), members
that make the same mistakes (info), and each member's run diagnosed as a run."""
import json

from cnntricks.doctor.ensemble_checks import diagnose_ensemble, ensemble_findings


def summary(accs, acc, disagreement):
    best = max(range(len(accs)), key=lambda i: accs[i])
    return {"test_acc": acc, "ensemble": {
        "members": [{"name": f"m{i}", "acc": a} for i, a in enumerate(accs)], "best_member": f"m{best}",
        "best_member_acc": accs[best], "gain": acc - accs[best], "mean_member_acc": sum(accs) / len(accs),
        "mean_disagreement": disagreement}}


def test_a_gain_with_diverse_members_is_healthy():
    assert ensemble_findings(summary([0.90, 0.89, 0.91], 0.925, 0.06), "mean") == []


def test_no_gain_is_a_warning_that_proposes_a_fitted_fusion():
    found, = ensemble_findings(summary([0.80, 0.60, 0.62], 0.78, 0.3), "mean")
    assert found.id == "ensemble_no_gain" and found.severity == "warning" and found.change == {"--fusion": "weighted"}
    assert "78.00% against 80.00% for m0 (-2.00 points)" in found.evidence
    fitted, = ensemble_findings(summary([0.80, 0.60], 0.79, 0.3), "weighted")
    assert fitted.change == {} and fitted.advice.startswith("Drop the weak members")


def test_members_that_agree_are_information():
    found, = ensemble_findings(summary([0.90, 0.90], 0.905, 0.01), "mean")  # 1% disagreement, 10% errors
    assert found.id == "ensemble_alike" and found.severity == "info"
    assert ensemble_findings(summary([0.90, 0.90], 0.905, 0.03), "mean") == []  # a quarter of 10% is the bar


def test_diagnose_ensemble_reads_the_members_runs(tmp_path):
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "history.jsonl").write_text("".join(json.dumps({"kind": "batch", "step": s, "epoch": 1, "loss": 2.3, "lr": 0.1})
                                               + "\n" for s in range(1, 40)))
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.json").write_text(json.dumps({"fusion": "mean", "members": [{"name": "a", "run": "../runs/a"}]}))
    (ens / "summary.json").write_text(json.dumps(summary([0.5, 0.4], 0.45, 0.2)))
    scopes = diagnose_ensemble(ens)
    assert [scope for scope, _ in scopes] == ["ensemble", "a"]
    assert [f.id for f in scopes[0][1]] == ["ensemble_no_gain"]
    assert any(f.id == "lr_too_low" or f.id == "unchecked" for f in scopes[1][1])  # the member's own history
