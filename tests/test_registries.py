"""Every registry of the package has one shape (Keras' `get`, timm's `list_models`): sorted names,
closest-match errors, the config's `Literal` in step with the registry, every entry built once.

A new entry gets these tests for free; one registered without its config value (or the other way
round) fails here, and so does a data source without a tiny input below.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
import typing
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnntricks import config
from cnntricks.augment import FancyPCA
from cnntricks.augment.policy import (MIXING_ORDER, MIXINGS, OPERATION_ORDER, OPERATIONS, POLICIES,
                                      create_policy)
from cnntricks.config import AugmentConfig, DataConfig, ModelConfig, OptimConfig, PreprocessConfig, ScheduleConfig
from cnntricks.data import SOURCES
from cnntricks.doctor import CHECKS  # the package registers every check
from cnntricks.doctor.evidence import Evidence
from cnntricks.doctor.findings import Finding
from cnntricks.ensemble.fusion import FUSIONS, Outputs
from cnntricks.experiments import EXPERIMENTS
from cnntricks.nn.activations import ACTIVATIONS, create_activation, width_factor
from cnntricks.nn.init import INITS, SYMMETRIC, resolve_scheme
from cnntricks.nn.models import MODELS, create_model
from cnntricks.preprocess.normalize import NORMALIZATIONS
from cnntricks.preprocess.pipeline import WHITENINGS, fit_preprocess, model_input_shape
from cnntricks.train.optim import OPTIMIZERS, decay_mode, parameter_groups
from cnntricks.train.schedule import SCHEDULES, Schedule
from cnntricks.transfer import STRATEGIES, layer_groups

REGISTRIES = {"SOURCES": SOURCES, "POLICIES": POLICIES, "OPERATIONS": OPERATIONS, "MIXINGS": MIXINGS,
              "NORMALIZATIONS": NORMALIZATIONS, "WHITENINGS": WHITENINGS, "ACTIVATIONS": ACTIVATIONS,
              "INITS": INITS, "MODELS": MODELS, "OPTIMIZERS": OPTIMIZERS, "SCHEDULES": SCHEDULES,
              "CHECKS": CHECKS, "EXPERIMENTS": EXPERIMENTS, "STRATEGIES": STRATEGIES, "FUSIONS": FUSIONS}

# config key -> the registry its value is looked up in
CONFIG_KEYS = {"data.source": SOURCES, "augment.policy": POLICIES, "preprocess.normalize": NORMALIZATIONS,
               "preprocess.whiten": WHITENINGS, "model.name": MODELS, "model.activation": ACTIVATIONS,
               "model.init": INITS, "optim.name": OPTIMIZERS, "schedule.name": SCHEDULES,
               "transfer.strategy": STRATEGIES}
# config values that are resolved to a registered name before the lookup (nn.init.resolve_scheme)
RESOLVED = {"model.init": {"auto"}, "transfer.strategy": {"auto"}}

ENTRIES = [(registry, name) for registry in REGISTRIES for name in REGISTRIES[registry].names()]


def literal_values(key: str) -> set[str]:
    """The values of the `typing.Literal` that types config key `key` ("section.field")."""
    section, field = key.split(".")
    section_type = typing.get_type_hints(config.Config)[section]
    return set(typing.get_args(typing.get_type_hints(section_type)[field]))


@pytest.mark.parametrize("registry", REGISTRIES)
def test_names_are_sorted_and_not_empty(registry):
    names = REGISTRIES[registry].names()
    assert names and names == sorted(names)
    assert all(isinstance(name, str) and name and name == name.strip() for name in names)
    assert all(name in REGISTRIES[registry] and callable(REGISTRIES[registry].get(name)) for name in names)


@pytest.mark.parametrize("registry, name", ENTRIES)
def test_a_near_miss_is_an_error_that_names_the_entry(registry, name):
    typo = name + "x"
    assert typo not in REGISTRIES[registry]
    with pytest.raises(ValueError, match=re.escape(f"did you mean '{name}'")) as caught:
        REGISTRIES[registry].get(typo)
    assert REGISTRIES[registry].kind in str(caught.value) and ", ".join(REGISTRIES[registry].names()) in str(caught.value)


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_the_config_literal_lists_exactly_the_registered_names(key):
    values = literal_values(key)
    assert values - RESOLVED.get(key, set()) == set(CONFIG_KEYS[key].names()), (
        f"{key}: the Literal in cnntricks/config.py and the registry disagree; add the name to both")


def test_auto_init_resolves_to_a_registered_scheme_for_every_activation():
    assert {resolve_scheme("auto", activation) for activation in ACTIVATIONS.names()} <= set(INITS.names())


def test_the_operation_orders_name_every_operation_once():
    assert sorted(OPERATION_ORDER) == OPERATIONS.names() and len(set(OPERATION_ORDER)) == len(OPERATION_ORDER)
    assert sorted(MIXING_ORDER) == MIXINGS.names() and len(set(MIXING_ORDER)) == len(MIXING_ORDER)


# ---- every entry built once, with default arguments, on tiny inputs --------------------------------


def tiny_images(n=4, channels=3, size=8, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def every_operation_on() -> dict:
    """Values that switch every operation and mixing on (crop on: the flip is not folded into the warp)."""
    return {**POLICIES.create("heavy"), "crop_padding": 2, "mixup": 0.2, "cutmix": 1.0}


def build_schedule(name, tmp_path):
    schedule = Schedule(ScheduleConfig(name=name), 0.1, 20, 5)
    lrs = [schedule.lr(step) for step in range(20)]
    assert all(0 < lr <= 0.1 * (1 + 1e-12) for lr in lrs)


def build_optimizer(name, tmp_path):
    model = nn.Linear(3, 2)
    before = [p.detach().clone() for p in model.parameters()]
    cfg = OptimConfig(name=name)
    optimizer = OPTIMIZERS.create(name, cfg, parameter_groups(model, cfg.weight_decay), decay_mode(cfg))
    model(torch.ones(4, 3)).square().mean().backward()
    optimizer.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def build_normalization(name, tmp_path):
    images = tiny_images(20, 2)
    out = NORMALIZATIONS.create(name, images)(images)
    assert out.shape == images.shape and out.dtype == torch.float32 and out.isfinite().all()


def build_whitening(name, tmp_path):
    cfg, images = PreprocessConfig(whiten=name), tiny_images(60, 1, 4)
    out = fit_preprocess(cfg, images, torch.Generator().manual_seed(0))(images)
    assert tuple(out.shape[1:]) == model_input_shape(cfg, (1, 4, 4)) and out.isfinite().all()


def build_policy(name, tmp_path):
    assert set(POLICIES.create(name)) == {f.name for f in dataclasses.fields(AugmentConfig)} - {"policy", "fill"}
    images = tiny_images()
    out = create_policy(AugmentConfig(policy=name), 3, FancyPCA.fit(images))(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8


def build_operation(name, tmp_path):
    images = tiny_images()
    operation = OPERATIONS.create(name, every_operation_on(), fancy_pca=FancyPCA.fit(images))
    out = operation(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8


def build_mixing(name, tmp_path):
    mixer = MIXINGS.create(name, every_operation_on(), 3)
    images, targets = mixer(torch.rand(6, 3, 8, 8), torch.arange(6) % 3, torch.Generator().manual_seed(0))
    assert images.shape == (6, 3, 8, 8) and targets.shape == (6, 3)
    assert torch.allclose(targets.sum(1), torch.ones(6))


def build_activation(name, tmp_path):
    module = create_activation(name, channels=4)
    out = module(torch.randn(2, 4 * width_factor(name), 3, 3))
    assert out.shape == (2, 4, 3, 3) and out.isfinite().all()


def build_init(name, tmp_path):
    weight = torch.empty(8, 16)
    INITS.create(name, weight, "relu", torch.Generator().manual_seed(0))
    assert weight.isfinite().all()
    assert (weight.unique().numel() == 1) == (name in SYMMETRIC)  # only the symmetry traps are constant


def build_model(name, tmp_path):
    model = create_model(ModelConfig(name=name, width=4, depth=2), 1, 3, (8, 8))
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 3)


def fashion_mnist_files(tmp_path) -> dict:
    rng = np.random.default_rng(0)
    for name, shape in [("train-images-idx3-ubyte", (20, 28, 28)), ("t10k-images-idx3-ubyte", (10, 28, 28)),
                        ("train-labels-idx1-ubyte", (20,)), ("t10k-labels-idx1-ubyte", (10,))]:
        array = rng.integers(0, 256, shape, dtype=np.uint8) if len(shape) == 3 else np.arange(shape[0]) % 10
        header = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
        (tmp_path / name).write_bytes(header + array.astype(np.uint8).tobytes())
    return {"root": str(tmp_path), "download": False}


def image_folder(tmp_path) -> dict:
    for split, count in (("train", 3), ("test", 2)):
        for cls in ("ant", "bee"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (40 * i, 100, 200)).save(tmp_path / split / cls / f"{i}.png")
    return {"root": str(tmp_path)}


def npz_file(tmp_path) -> dict:
    np.savez(tmp_path / "data.npz", x=tiny_images(6, 1).numpy()[:, 0], y=np.arange(6) % 2)
    return {"root": str(tmp_path / "data.npz"), "test_fraction": 0.34}


# data source -> DataConfig values that point it at a tiny input written under tmp_path
SOURCE_INPUTS = {"fashion-mnist": fashion_mnist_files, "image-folder": image_folder, "npz": npz_file,
                 "digits": lambda tmp_path: {}, "synthetic": lambda tmp_path: {"image_size": 8},
                 "letters": lambda tmp_path: {"root": str(Path(matplotlib.get_data_path()) / "fonts" / "ttf")}}


def build_source(name, tmp_path):
    assert name in SOURCE_INPUTS, f"data source '{name}': add a tiny input for it to SOURCE_INPUTS"
    cfg = DataConfig(source=name, cache_dir=str(tmp_path / "cache"), **SOURCE_INPUTS[name](tmp_path))
    train, test = SOURCES.create(name, cfg, 0)
    assert train.images.dtype == test.images.dtype == torch.uint8 and train.images.ndim == 4
    assert len(train) and len(test) and train.classes == test.classes


def build_check(name, tmp_path):
    losses = [2.3 * math.exp(-step / 20) + 0.1 for step in range(40)]
    evidence = Evidence(tmp_path, config.load(None, []), classes=10,
                        batches=[{"kind": "batch", "step": s + 1, "epoch": s // 20 + 1, "loss": v, "lr": 0.1}
                                 for s, v in enumerate(losses)],
                        epochs=[{"kind": "epoch", "epoch": e, "lr": 0.1, "train_loss": 1 / e, "train_acc": 0.8,
                                 "val_loss": 0.5, "val_acc": 0.78} for e in (1, 2)])
    for run in (Evidence(tmp_path, None), evidence):
        findings = CHECKS.create(name, run)
        assert isinstance(findings, list) and all(isinstance(f, Finding) for f in findings)


def build_experiment(name, tmp_path):
    """Running one takes minutes (tests/experiments/test_studies.py runs them at --budget smoke);
    here: the one signature the command line calls them with (experiments/__init__.py)."""
    parameters = inspect.signature(EXPERIMENTS.get(name)).parameters
    assert list(parameters)[:1] == ["out_dir"] and {"seed", "seeds", "budget", "data"} <= set(parameters)


def build_fusion(name, tmp_path):
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    outputs = Outputs([torch.randn(30, 3, generator=generator) for _ in range(2)], labels,
                      [torch.randn(30, 4, generator=generator) for _ in range(2)])
    fusion = FUSIONS.create(name)
    fusion.fit(outputs, outputs)
    log_probs = fusion.log_probs(outputs)
    assert log_probs.shape == (30, 3) and torch.allclose(log_probs.exp().sum(1), torch.ones(30), atol=1e-5)


def build_strategy(name, tmp_path):
    model = create_model(config.ModelConfig(width=4, depth=2), 3, 4, (8, 8))
    plan = STRATEGIES.create(name, config.TransferConfig(strategy=name), layer_groups(model))
    assert all(p.requires_grad for p in model.head.parameters()) and plan.scales[id(model.head.weight)] == 1.0


BUILDERS = {"SOURCES": build_source, "POLICIES": build_policy, "OPERATIONS": build_operation,
            "MIXINGS": build_mixing, "NORMALIZATIONS": build_normalization, "WHITENINGS": build_whitening,
            "ACTIVATIONS": build_activation, "INITS": build_init, "MODELS": build_model,
            "OPTIMIZERS": build_optimizer, "SCHEDULES": build_schedule, "CHECKS": build_check,
            "EXPERIMENTS": build_experiment, "STRATEGIES": build_strategy, "FUSIONS": build_fusion}


def test_every_registry_has_a_builder():
    assert set(BUILDERS) == set(REGISTRIES)


@pytest.mark.parametrize("registry, name", ENTRIES)
def test_every_entry_builds_on_tiny_inputs(registry, name, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # nothing may touch the real cache
    BUILDERS[registry](name, tmp_path)
