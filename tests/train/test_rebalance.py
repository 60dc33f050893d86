"""cnntricks rebalance: post-hoc logit adjustment, τ-normalization and classifier re-training leave the
features untouched and write a run that evaluate, predict and the doctor read."""
import json
import math

import pytest
import torch

from cnntricks.cli import main
from cnntricks.config import load
from cnntricks.rundir import read_json
from cnntricks.train.inference import load_predictor
from cnntricks.train.loop import fit
from cnntricks.train.rebalance import adjusted_head, rebalance


@pytest.fixture(scope="module")
def long_tailed_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebalance")
    cfg = load(None, ["data.source=synthetic", "model.width=4", "model.depth=1", "train.threads=1", "train.epochs=2",
                      "optim.batch_size=32", "data.imbalance=10", f"data.cache_dir={root / 'cache'}"])
    fit(cfg, root / "run", progress=False)
    return root / "run"


def weights(run):
    return {k: v.clone() for k, v in load_predictor(run).predictor.model.state_dict().items()}


@pytest.mark.parametrize("method", ["logit_adjust", "tau_norm", "crt"])
def test_only_the_head_changes_and_the_new_run_is_a_run(long_tailed_run, tmp_path, method):
    record = rebalance(long_tailed_run, tmp_path / method, method, say=lambda m: None)
    before, after = weights(long_tailed_run), weights(tmp_path / method)
    assert before.keys() == after.keys()
    for name in before:
        if not name.startswith("head."):
            assert torch.equal(before[name], after[name]), name  # the features, untouched
    assert not torch.equal(before["head.bias"], after["head.bias"]) or record["tau"] == 0
    summary = read_json(tmp_path / method / "summary.json")
    assert summary["rebalance"]["method"] == method and summary["test_balanced_acc"] == record["test_after"]["balanced_acc"]
    assert read_json(tmp_path / method / "data.json") == read_json(long_tailed_run / "data.json")
    assert (tmp_path / method / "history.jsonl").is_file()  # the features' training, for the report


def test_logit_adjustment_subtracts_tau_log_prior_from_the_bias():
    weight, bias, counts = torch.randn(3, 5), torch.randn(3), torch.tensor([90, 9, 1])
    new_weight, new_bias = adjusted_head("logit_adjust", weight, bias, counts, 0.5)
    assert torch.equal(new_weight, weight)
    expected = [b - 0.5 * math.log(n / 100) for b, n in zip(bias.tolist(), (90, 9, 1))]
    assert new_bias.tolist() == pytest.approx(expected, rel=1e-6)


def test_tau_normalization_divides_each_row_by_its_norm_to_the_tau():
    weight, bias = torch.tensor([[3.0, 4.0], [0.0, 2.0]]), torch.tensor([1.0, 1.0])
    new_weight, new_bias = adjusted_head("tau_norm", weight, bias, torch.tensor([10, 1]), 1.0)
    assert torch.allclose(new_weight, torch.tensor([[0.6, 0.8], [0.0, 1.0]]))
    assert torch.allclose(new_bias, torch.tensor([0.2, 0.5]))
    same = adjusted_head("tau_norm", weight, bias, torch.tensor([10, 1]), 0.0)
    assert torch.equal(same[0], weight) and torch.equal(same[1], bias)


def test_a_given_tau_is_used_and_tau_zero_is_the_run_itself(long_tailed_run, tmp_path):
    record = rebalance(long_tailed_run, tmp_path / "zero", "logit_adjust", tau=0.0, say=lambda m: None)
    assert record["tau"] == 0.0 and record["test_after"] == pytest.approx(record["test_before"])


def test_the_command_line_writes_the_run_and_refuses_to_overwrite(long_tailed_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["rebalance", str(long_tailed_run), "--method", "logit_adjust", "--out", str(out), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["method"] == "logit_adjust" and len(record["searched"]) == 13  # τ from 0 to 3 by 0.25
    assert main(["evaluate", str(out)]) == 0 and "balanced accuracy" in capsys.readouterr().out
    assert main(["rebalance", str(long_tailed_run), "--method", "crt", "--out", str(out)]) == 4
    assert "already exists" in capsys.readouterr().err
    assert main(["rebalance", str(long_tailed_run), "--method", "crt", "--tau", "1", "--out",
                 str(tmp_path / "x")]) == 2
