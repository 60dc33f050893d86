"""Stochastic weight averaging: the mean of the checkpoints' weights, batch-norm statistics recomputed as
torch's own update_bn does, written as a run that evaluate reads and --resume refuses."""
import copy

import pytest
import torch

from cnntricks.config import ConfigError, load
from cnntricks.ensemble.swa import average_weights, averaged_state, recompute_batch_norm
from cnntricks.rundir import RunDirectoryError, load_tensors, read_json
from cnntricks.train.inference import Predictor, load_predictor
from cnntricks.train.loop import fit, open_run_dir

BASE = ["data.source=digits", "model.width=4", "model.depth=1", "train.threads=1", "optim.batch_size=64",
        "doctor.mode=off", "train.monitor=off", "schedule.warmup_epochs=0"]


@pytest.fixture(scope="module")
def snapshot_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("swa")
    fit(load(None, [*BASE, "train.epochs=2", "schedule.name=snapshot", "schedule.cycles=2",
                    f"data.cache_dir={root / 'cache'}"]), root / "snap", progress=False)
    return root / "snap"


def test_averaged_state_is_the_mean_of_floats_and_the_last_counter():
    a = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    mean = averaged_state([a, b])
    assert mean["w"].tolist() == [2.0, 4.0] and mean["n"].item() == 9
    with pytest.raises(ConfigError, match="one architecture"):
        averaged_state([a, {"w": torch.zeros(3), "n": torch.tensor(1)}])


def test_batch_norm_statistics_match_torchs_update_bn():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.LazyLinear(2))
    images = torch.randint(0, 255, (70, 1, 8, 8), dtype=torch.uint8)
    model(images[:2].float())  # materialize the lazy layer
    reference = copy.deepcopy(model)
    predictor = Predictor(model, lambda x: x.float() / 255, ["a", "b"], torch.device("cpu"), batch_size=32)
    assert recompute_batch_norm(predictor, images) == 1
    loader = [images[i:i + 32].float() / 255 for i in range(0, 70, 32)]
    torch.optim.swa_utils.update_bn(loader, reference)
    assert torch.allclose(model[1].running_mean, reference[1].running_mean, atol=1e-6)
    assert torch.allclose(model[1].running_var, reference[1].running_var, atol=1e-6)
    assert model[1].momentum == 0.1 and model.training


def test_a_snapshot_runs_average_is_a_run(snapshot_run, tmp_path):
    record = average_weights([(snapshot_run, "snapshots/cycle-01"), (snapshot_run, "snapshots/cycle-02")],
                             tmp_path / "swa", say=lambda m: None)
    assert len(record["members"]) == 2 and "test_after" in record
    one, two = (load_tensors(snapshot_run / "snapshots" / c / "model.safetensors") for c in ("cycle-01", "cycle-02"))
    averaged = load_predictor(tmp_path / "swa").predictor.model.state_dict()
    for key in one:
        if "running" not in key and one[key].is_floating_point():
            assert torch.allclose(averaged[key].float(), (one[key].float() + two[key].float()) / 2, atol=1e-6), key
    summary = read_json(tmp_path / "swa" / "summary.json")
    assert summary["test_acc"] == record["test_after"]["acc"] and summary["swa"]["members"] == record["members"]
    with pytest.raises(RunDirectoryError, match="averaged weights"):
        open_run_dir(tmp_path / "swa", resume=True)
    with pytest.raises(ConfigError, match="2 or more"):
        average_weights([(snapshot_run, None)], tmp_path / "x", say=lambda m: None)
