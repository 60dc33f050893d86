"""cnntricks experiment ensemble at --budget smoke: every row measured, the costs in E-epoch runs, the
papers beside them."""
import json

from cnntricks.cli import main
from cnntricks.experiments import ensemble


def test_the_ensemble_study_measures_every_row(tmp_path):
    out = tmp_path / "ensemble"
    assert main(["experiment", "ensemble", "--budget", "smoke", "--out", str(out)]) == 0
    numbers = json.loads((out / "results.json").read_text())
    assert [row[0] for row in numbers["rows"]] == list(ensemble.LABELS.values())
    rows = {key: values for key, values in numbers["per_seed"][0].items()}
    k = ensemble.MEMBERS["smoke"]
    assert rows["single"][3] == 1 and rows["long"][3] == k and rows["snapshots"][3] == k
    assert all(0 <= values[0] <= 1 for values in rows.values())
    assert rows["seeds-mean"][2] is not None and rows["long"][2] is None  # a gain only where there are members
    assert rows["search-top"][3] >= k  # 2k trials of E epochs, less what pruning saved
    assert "93.25 → 93.64" in (out / "results.md").read_text()
    assert sorted(p.name for p in (out / "configs").iterdir()) == ["long.yaml", "member.yaml", "snapshot.yaml"]
    assert rows["folds-stack"][3] == k and rows["folds-mean"][2] is not None
    stacked = json.loads((out / "runs" / "seed0" / "folds-stack" / "ensemble.json").read_text())
    assert stacked["fitted_on"] == "out-of-fold validation" and stacked["fit"]["groups"] == [0] * k
    assert sorted(p.name for p in (out / "runs" / "seed0").iterdir()) == [
        "folds", "folds-mean", "folds-stack", "long", "search", "search-top", "seeds",
        *(f"seeds-{f}" for f in sorted(ensemble.FUSED)), "snap", "snap-mean", "snap-swa", "space.yaml"]
