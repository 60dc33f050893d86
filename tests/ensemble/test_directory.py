"""Ensemble directories (seed §8): built from runs, evaluated and predicted like a run, fitted on the
validation split only, refusing members that were not scored on the same images, and never left
half-written."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cnntricks.config import ConfigError, load
from cnntricks.ensemble import build_ensemble, is_ensemble, load_ensemble
from cnntricks.ensemble.directory import ENSEMBLE
from cnntricks.rundir import RunDirectoryError, read_json
from cnntricks.train.inference import load_predictor
from cnntricks.train.loop import fit

BASE = ["data.source=digits", "model.width=4", "model.depth=1", "train.threads=1", "train.epochs=1",
        "optim.batch_size=64", "doctor.mode=off", "train.monitor=off"]
QUIET = dict(say=lambda message: None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three members: seeds 0 and 1 of one config, and one at 16x16 input with another model; all on one
    validation split (data.split_seed=0); plus seed 1 without split_seed (another validation split)."""
    root = tmp_path_factory.mktemp("members")
    made = {}
    for name, extra in {"a": ["train.seed=0", "data.split_seed=0"], "b": ["train.seed=1", "data.split_seed=0"],
                        "wide": ["train.seed=2", "data.split_seed=0", "data.image_size=16", "model.name=vgg"],
                        "other_split": ["train.seed=1"]}.items():
        fit(load(None, [*BASE, *extra, f"data.cache_dir={root / 'cache'}"]), root / name, progress=False)
        made[name] = root / name
    return made


def member_probabilities(run, split="test"):
    from cnntricks.data import load_splits
    loaded = load_predictor(run)
    store = getattr(load_splits(loaded.cfg.data, loaded.cfg.train.seed), split)
    return torch.softmax(loaded.predictor.logits(store.images), 1), store.labels


def test_a_mean_ensemble_is_a_directory_that_evaluates_like_a_run(runs, tmp_path):
    summary = build_ensemble([(runs["a"], None), (runs["b"], None), (runs["wide"], None)], tmp_path / "ens",
                             "mean", **QUIET)
    assert is_ensemble(tmp_path / "ens") and not (tmp_path / "ens.partial").exists()
    record = read_json(tmp_path / "ens" / ENSEMBLE)
    assert [m["name"] for m in record["members"]] == ["a", "b", "wide"]
    assert record["members"][2]["input"] == [1, 16, 16] and record["members"][2]["model"] == "vgg"
    assert record["members"][0]["run"] == "../../" + "/".join(runs["a"].parts[-2:])  # relative: move both together
    probabilities = [member_probabilities(runs[n]) for n in ("a", "b", "wide")]
    labels = probabilities[0][1]
    mean = sum(p for p, _ in probabilities) / 3
    assert summary["test_acc"] == pytest.approx(float((mean.argmax(1) == labels).float().mean()))
    assert summary["test_loss"] == pytest.approx(float(-mean[torch.arange(len(labels)), labels].log().mean()), rel=1e-4)
    info = summary["ensemble"]
    assert [m["acc"] for m in info["members"]] == pytest.approx(
        [float((p.argmax(1) == labels).float().mean()) for p, _ in probabilities])
    assert info["gain"] == pytest.approx(summary["test_acc"] - max(m["acc"] for m in info["members"]))
    assert len(info["disagreement"]) == 3 and info["disagreement"][0][0] == 0
    # loaded again, it evaluates to the same figures
    again = load_ensemble(tmp_path / "ens").evaluate("test")
    assert again["acc"] == pytest.approx(summary["test_acc"]) and again["loss"] == pytest.approx(summary["test_loss"])


def test_predict_reads_files_at_each_members_input_size(runs, tmp_path):
    build_ensemble([(runs["a"], None), (runs["wide"], None)], tmp_path / "ens", "mean", **QUIET)
    paths = []
    for index in range(3):
        path = tmp_path / f"{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (20, 20), dtype=np.uint8)).save(path)
        paths.append(path)
    fused = load_ensemble(tmp_path / "ens").predict_files(paths)
    from cnntricks.data import load_images
    expected = 0
    for run, size in ((runs["a"], 8), (runs["wide"], 16)):
        expected = expected + torch.softmax(load_predictor(run).predictor.logits(load_images(paths, 1, (size, size))),
                                            1) / 2
    assert torch.allclose(fused, expected, atol=1e-5)


def test_an_ensemble_of_identical_members_equals_the_member(runs, tmp_path):
    summary = build_ensemble([(runs["a"], None), (runs["a"], None)], tmp_path / "same", "weighted", **QUIET)
    probabilities, labels = member_probabilities(runs["a"])
    assert summary["test_acc"] == pytest.approx(float((probabilities.argmax(1) == labels).float().mean()))
    assert summary["test_loss"] == pytest.approx(float(torch.nn.functional.nll_loss(probabilities.log(), labels)),
                                                 rel=1e-4)
    assert summary["ensemble"]["gain"] == pytest.approx(0) and summary["ensemble"]["mean_disagreement"] == 0
    assert [m["name"] for m in read_json(tmp_path / "same" / ENSEMBLE)["members"]] == ["a", "a-2"]


def test_weights_are_fitted_on_the_validation_split_only(runs, tmp_path, monkeypatch):
    from cnntricks.ensemble.fusion import Weighted
    seen = []
    original = Weighted.fit
    monkeypatch.setattr(Weighted, "fit", lambda self, val, train, seed=0: (seen.append((val, train)),
                                                                             original(self, val, train, seed)))
    summary = build_ensemble([(runs["a"], None), (runs["b"], None)], tmp_path / "w", "weighted", **QUIET)
    (val, train), = seen
    _, val_labels = member_probabilities(runs["a"], "val")
    assert train is None and torch.equal(val.labels, val_labels)
    weights = read_json(tmp_path / "w" / ENSEMBLE)["fit"]["weights"]
    assert sum(weights) == pytest.approx(1, abs=1e-5) and read_json(tmp_path / "w" / ENSEMBLE)["fitted_on"] == "validation"
    assert (tmp_path / "w" / "fusion.safetensors").is_file() and summary["fusion"] == "weighted"


@pytest.mark.parametrize("fusion", [pytest.param("vote", marks=pytest.mark.slow), "stack",
                                    pytest.param("features", marks=pytest.mark.slow)])
def test_every_fusion_builds_and_reloads(runs, tmp_path, fusion):
    summary = build_ensemble([(runs["a"], None), (runs["b"], None), (runs["wide"], None)], tmp_path / fusion, fusion,
                             **QUIET)
    again = load_ensemble(tmp_path / fusion).evaluate("test")
    assert again["acc"] == pytest.approx(summary["test_acc"]) and 0 <= summary["test_ece"] <= 1


def test_members_scored_on_other_validation_images_are_refused_for_a_fitted_fusion(runs, tmp_path):
    with pytest.raises(RunDirectoryError, match="data.split_seed"):
        build_ensemble([(runs["a"], None), (runs["other_split"], None)], tmp_path / "w", "weighted", **QUIET)
    assert not (tmp_path / "w").exists()
    summary = build_ensemble([(runs["a"], None), (runs["other_split"], None)], tmp_path / "m", "mean", **QUIET)
    assert summary["members"] == 2  # digits' test split is the same for every seed: mean fits nothing


def test_copied_members_travel_with_the_ensemble(runs, tmp_path):
    for name in ("a", "b"):
        shutil.copytree(runs[name], tmp_path / "src" / name)
    summary = build_ensemble([(tmp_path / "src" / "a", None), (tmp_path / "src" / "b", None)], tmp_path / "ens",
                             "mean", copy=True, **QUIET)
    shutil.rmtree(tmp_path / "src")
    shutil.move(tmp_path / "ens", tmp_path / "moved")
    assert load_ensemble(tmp_path / "moved").evaluate("test")["acc"] == pytest.approx(summary["test_acc"])
    assert sorted(p.name for p in (tmp_path / "moved" / "members").iterdir()) == ["a", "b"]


def test_a_member_that_went_missing_is_named(runs, tmp_path):
    shutil.copytree(runs["a"], tmp_path / "a")
    build_ensemble([(tmp_path / "a", None), (runs["b"], None)], tmp_path / "ens", "mean", **QUIET)
    shutil.rmtree(tmp_path / "a")
    with pytest.raises(RunDirectoryError, match="member a .*missing.*--copy"):
        load_ensemble(tmp_path / "ens")


def test_a_failed_build_leaves_no_ensemble_and_a_second_try_works(runs, tmp_path, monkeypatch):
    import cnntricks.ensemble.directory as directory
    real = directory.write_json

    def failing(path, value, indent=2):
        if str(path).endswith(ENSEMBLE):
            raise OSError(28, "No space left on device", str(path))
        return real(path, value, indent)
    monkeypatch.setattr(directory, "write_json", failing)
    with pytest.raises(OSError):
        build_ensemble([(runs["a"], None), (runs["b"], None)], tmp_path / "ens", "mean", **QUIET)
    assert not is_ensemble(tmp_path / "ens") and not (tmp_path / "ens").exists()
    monkeypatch.setattr(directory, "write_json", real)
    build_ensemble([(runs["a"], None), (runs["b"], None)], tmp_path / "ens", "mean", **QUIET)
    assert is_ensemble(tmp_path / "ens") and not (tmp_path / "ens.partial").exists()


def test_bad_requests_say_what_to_do(runs, tmp_path):
    from cnntricks.config import ConfigError
    with pytest.raises(ConfigError, match="2 or more members"):
        build_ensemble([(runs["a"], None)], tmp_path / "one", **QUIET)
    with pytest.raises(ConfigError, match="--fusion must be one of"):
        build_ensemble([(runs["a"], None), (runs["b"], None)], tmp_path / "x", "median", **QUIET)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(RunDirectoryError, match="not empty"):
        build_ensemble([(runs["a"], None), (runs["b"], None)], tmp_path / "full", **QUIET)
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(RunDirectoryError, match="no checkpoint epoch-0009 .*kept: checkpoints/epoch-0001"):
        build_ensemble([(runs["a"], "epoch-0009"), (runs["b"], None)], tmp_path / "y", **QUIET)


def test_a_named_checkpoint_is_the_member(runs, tmp_path):
    summary = build_ensemble([(runs["a"], "epoch-0001"), (runs["b"], None)], tmp_path / "ens", **QUIET)
    record = json.loads((tmp_path / "ens" / ENSEMBLE).read_text())
    assert record["members"][0]["checkpoint"] == "checkpoints/epoch-0001" and record["members"][0]["name"] == "a@epoch-0001"
    assert summary["members"] == 2


@pytest.fixture(scope="module")
def fold_runs(tmp_path_factory):
    """Two configs (widths 4 and 6), each a 2-fold cross-validation on one split seed."""
    root = tmp_path_factory.mktemp("folds")
    made = {}
    for width in (4, 6):
        for fold in (0, 1):
            name = f"w{width}-fold-{fold}"
            fit(load(None, [*BASE, f"model.width={width}", "data.folds=2", f"data.fold={fold}", f"train.seed={fold}",
                            "data.split_seed=3", f"data.cache_dir={root / 'cache'}"]), root / name, progress=False)
            made[name] = root / name
    return made


def test_stacking_fits_on_out_of_fold_outputs_and_predicts_with_each_groups_mean(fold_runs, tmp_path, monkeypatch):
    from cnntricks.data import load_splits
    from cnntricks.ensemble.fusion import Stack
    seen = []
    original = Stack.fit
    monkeypatch.setattr(Stack, "fit", lambda self, val, train, seed=0: (seen.append((val, train)),
                                                                          original(self, val, train, seed)))
    names = ["w4-fold-0", "w4-fold-1", "w6-fold-1", "w6-fold-0"]
    summary = build_ensemble([(fold_runs[n], None) for n in names], tmp_path / "s", "stack", **QUIET)
    (val, train), = seen
    folds = [load_splits(load_predictor(fold_runs[f"w4-fold-{i}"]).cfg.data, i) for i in (0, 1)]
    assert train is None and len(val.logits) == 2  # one output per group
    assert torch.equal(val.labels, torch.cat([f.val.labels for f in folds]))  # every training image, once
    assert len(val.labels) == len(folds[0].train) + len(folds[0].val)
    first = load_predictor(fold_runs["w4-fold-0"]).predictor.logits(folds[0].val.images)
    assert torch.allclose(val.logits[0][:len(first)], first, atol=1e-5)  # fold 0's member on fold 0
    record = read_json(tmp_path / "s" / ENSEMBLE)
    assert record["fitted_on"] == "out-of-fold validation" and record["fit"]["groups"] == [0, 0, 1, 1]
    assert record["fit"]["fitted_images"] == len(val.labels)
    again = load_ensemble(tmp_path / "s").evaluate("test")
    assert again["acc"] == pytest.approx(summary["test_acc"])
    weighted = build_ensemble([(fold_runs[n], None) for n in names], tmp_path / "w", "weighted", **QUIET)
    assert len(read_json(tmp_path / "w" / ENSEMBLE)["fit"]["weights"]) == 2 and 0 < weighted["test_acc"] <= 1


def test_k_fold_members_must_make_whole_groups(fold_runs, runs, tmp_path):
    with pytest.raises(RunDirectoryError, match=r"folds \[0\] of data.folds=2"):
        build_ensemble([(fold_runs["w4-fold-0"], None), (fold_runs["w6-fold-0"], None), (fold_runs["w6-fold-1"], None)],
                       tmp_path / "s", "stack", **QUIET)
    with pytest.raises(RunDirectoryError, match="are not k-fold members"):
        build_ensemble([(fold_runs["w4-fold-0"], None), (fold_runs["w4-fold-1"], None), (runs["a"], None)],
                       tmp_path / "s", "stack", **QUIET)
    with pytest.raises(ConfigError, match="features"):
        build_ensemble([(fold_runs["w4-fold-0"], None), (fold_runs["w4-fold-1"], None)], tmp_path / "s", "features",
                       **QUIET)
    assert not (tmp_path / "s").exists()
    summary = build_ensemble([(fold_runs["w4-fold-0"], None), (fold_runs["w6-fold-0"], None)], tmp_path / "m", "mean",
                             **QUIET)
    assert summary["members"] == 2  # mean fits nothing: any members with one test split
