"""cnntricks experiment imbalance at --budget smoke: every remedy, the post-hoc ones, the balanced twin,
and the doctor's class_imbalance figures."""
import json

from cnntricks.cli import main
from cnntricks.experiments import imbalance


def test_the_imbalance_study_runs_every_remedy(tmp_path, capsys):
    out = tmp_path / "imbalance"
    assert main(["experiment", "imbalance", "--budget", "smoke", "--out", str(out)]) == 0
    numbers = json.loads((out / "results.json").read_text())
    labels = [row[0] for row in numbers["rows"]]
    assert len(labels) == len(imbalance.REMEDIES) + len(imbalance.POST_HOC) + 1
    assert sum("(seed)" in label for label in labels) == 4  # up-, down-sampling, minority crops, two stages
    assert len(numbers["runs"]) == len(imbalance.RATIOS) * len(imbalance.REMEDIES) + 1  # + the balanced twin
    detection = numbers["detection"]
    assert detection["long_tailed_runs"] == len(imbalance.RATIOS) * len(imbalance.REMEDIES)
    assert detection["on_balanced"] == 0
    assert (out / "imbalance.png").is_file() and "Cao et al." in (out / "results.md").read_text()
    post_hoc = list((out / "runs").glob("cross-entropy-rho100-seed0-*"))
    assert sorted(p.name.rsplit("-", 1)[1] for p in post_hoc) == ["crt", "logit_adjust", "tau_norm"]


def test_the_papers_numbers_are_the_issues():
    assert imbalance.PAPERS == {("cross-entropy", 100): 70.4, ("cross-entropy", 10): 86.4, ("LDAM-DRW", 100): 77.0,
                                ("LDAM-DRW", 10): 88.2, ("logit-adjusted loss", 100): 77.9}
