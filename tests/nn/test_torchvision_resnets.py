"""resnet18/34/50 are torchvision's: the same state-dict keys and shapes in the same order, the same
logits for the same weights (tests/transfer/torchvision_resnets.json, written from the real
torchvision by scripts/torchvision_manifest.py; torchvision is not a dependency), and the zoo's
interface on top (head, stages, forward_features) without a second key per weight."""
from __future__ import annotations

import copy
import importlib.util
import json
import math
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from cnntricks.config import ModelConfig, TransferConfig
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.transfer.hub import PUBLISHED, weights_cache
from cnntricks.transfer.probe import stage_features
from cnntricks.transfer.strategy import layer_groups, plan_transfer

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "tests" / "transfer" / "torchvision_resnets.json").read_text())["models"]
NAMES = ["resnet18", "resnet34", "resnet50"]


def manifest_script():
    """scripts/torchvision_manifest.py as a module: its deterministic weights and input, shared with
    the side that ran torchvision (its torchvision import is inside `main`)."""
    spec = importlib.util.spec_from_file_location("torchvision_manifest", ROOT / "scripts" / "torchvision_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(name, channels=3, classes=1000, size=(64, 64), **keys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImageSizeWarning)
        return create_model(ModelConfig(name=name, **keys), channels, classes, size)


def test_the_manifest_is_small_and_from_torchvision():
    path = ROOT / "tests" / "transfer" / "torchvision_resnets.json"
    assert path.stat().st_size < 200_000
    assert sorted(MANIFEST) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_keys_and_shapes_are_torchvisions_in_order(name):
    state = build(name).state_dict()
    assert [(key, list(value.shape)) for key, value in state.items()] == list(MANIFEST[name]["state_dict"].items())
    assert sum(p.numel() for p in build(name).parameters()) == MANIFEST[name]["num_params"]


@pytest.mark.parametrize("name", NAMES)
def test_the_forward_pass_gives_torchvisions_logits(name):
    # the same deterministic weights on both sides, evaluation mode, a fixed (2, 3, 64, 64) input
    script = manifest_script()
    check = MANIFEST[name]["check"]
    assert check["input"] == list(script.CHECK_SHAPE) and check["columns"] == [
        script.CHECK_COLUMNS.start, script.CHECK_COLUMNS.stop, script.CHECK_COLUMNS.step]
    got = torch.tensor(script.check_logits(build(name)))
    want = torch.tensor(check["logits"])
    assert want.abs().max() > 1 and want.std() > 1  # numbers that tell architectures apart
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_the_numerical_check_tells_a_wrong_architecture():
    # resnet50 with the stride on the first 1x1 conv (V1, not torchvision's V1.5): same keys, other logits
    script = manifest_script()
    model = build("resnet50")
    for layer in (model.layer2, model.layer3, model.layer4):
        layer[0].conv1.stride, layer[0].conv2.stride = (2, 2), (1, 1)
    got = torch.tensor(script.check_logits(model))
    assert not torch.allclose(got, torch.tensor(MANIFEST["resnet50"]["check"]["logits"]), rtol=1e-2)


@pytest.mark.parametrize("name", NAMES)
def test_the_hub_table_is_torchvisions(name, monkeypatch):
    monkeypatch.delenv("CNNTRICKS_WEIGHTS_URL", raising=False)
    entry, published = PUBLISHED[name], MANIFEST[name]
    assert (entry.url, entry.file, entry.sha256_prefix) == (published["url"], published["file"],
                                                            published["sha256_prefix"])
    assert list(entry.mean) == published["mean"] and list(entry.std) == published["std"] and entry.channels == 3
    assert weights_cache().name == "weights"


@pytest.mark.parametrize("size", [32, 224])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_gray_and_colour_images_of_32_and_224_pixels(name, channels, size):
    torch.manual_seed(0)
    model = build(name, channels, 5, (size, size)).eval()
    assert model.conv1.weight.shape == (64, channels, 7, 7)
    with torch.no_grad():
        logits = model(torch.randn(1, channels, size, size))
    assert logits.shape == (1, 5) and torch.isfinite(logits).all()


@pytest.mark.parametrize("size", [(1, 1), (13, 17)])
def test_any_image_size_runs(size):
    model = build("resnet18", 1, 3, size).eval()
    assert model(torch.randn(2, 1, *size)).shape == (2, 3)


# ---- the zoo's interface on torchvision's names ----------------------------------------------------

def test_head_is_fc_under_the_zoos_name_and_reset_head_keeps_the_key():
    model = build("resnet18", classes=10)
    assert model.head is model.fc and model.num_features == 512
    model.reset_head(3)
    assert model.head is model.fc and model.fc.out_features == 3 and torch.all(model.fc.bias == 0)
    model.head = nn.Linear(512, 7)  # the property's setter: still one module, under "fc"
    keys = list(model.state_dict())
    assert keys[-2:] == ["fc.weight", "fc.bias"] and not any(k.startswith("head.") for k in keys)
    assert list(model.children())[-1] is model.fc and len(keys) == len(set(keys))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_dropout_before_the_head_adds_no_key():
    model = build("resnet18", dropout=0.5, spatial_dropout=0.2)
    assert model.dropout.p == 0.5 and sum(isinstance(m, nn.Dropout2d) for m in model.modules()) == 4
    assert list(model.state_dict()) == list(MANIFEST["resnet18"]["state_dict"])


@pytest.mark.parametrize("name", NAMES)
def test_stages_are_the_stem_and_the_four_layers_registered_once(name):
    model = build(name)
    stem, *layers = model.stages.children()
    assert list(stem) == [model.conv1, model.bn1, model.act, model.maxpool]
    assert layers == [model.layer1, model.layer2, model.layer3, model.layer4]
    assert "_stage_groups" not in dict(model.named_children())
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in model.named_parameters(remove_duplicate=False)]
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model.forward_features(x), model.avgpool(model.stages(x)).flatten(1))
    assert model.forward_features(x).shape == (2, MANIFEST[name]["state_dict"]["fc.weight"][1])


def test_stages_follow_a_replaced_module_and_a_copy():
    model = build("resnet18").eval()
    model.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # torchvision's idiom for gray images
    assert next(iter(model.stages[0])) is model.conv1
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1000)
    twin = copy.deepcopy(model)
    assert next(iter(twin.stages[0])) is twin.conv1 and twin.stages[1] is twin.layer1


def test_stage_hooks_fire_for_the_probes():
    model = build("resnet18", 3, 4, (32, 32))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    features = stage_features(model, lambda x: x.float() / 255, images, torch.device("cpu"))
    assert [f.shape for f in features] == [(6, 64), (6, 64), (6, 128), (6, 256), (6, 512)]


def test_top_strategy_freezes_all_but_the_head_and_layer4():
    model = build("resnet18", 3, 4, (32, 32))
    groups = layer_groups(model)
    assert groups[:5] == [model.fc, model.layer4, model.layer3, model.layer2, model.layer1]
    assert list(groups[5]) == [model.conv1, model.bn1, model.act, model.maxpool]
    plan = plan_transfer(TransferConfig(strategy="top", stages=1), model)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc", "layer4"}
    assert plan.frozen == groups[2:]


# ---- initialization ---------------------------------------------------------------------------------

def test_auto_init_is_torchvisions_with_zero_init_residual():
    model = build("resnet50", size=(32, 32))
    conv = model.layer3[1].conv2  # 256 x 256 x 3 x 3: He with fan_out = 256 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.layer3[1].bn2.weight == 1)
    assert all(torch.all(block.bn3.weight == 0) for layer in model.stages[1:] for block in layer)
    assert model.head.weight.std().item() == pytest.approx(0.001, rel=0.1)
    basic = build("resnet18", size=(32, 32))
    assert all(torch.all(block.bn2.weight == 0) and torch.all(block.bn1.weight == 1)
               for layer in basic.stages[1:] for block in layer)


def test_another_init_or_activation_is_the_zoos():
    # model.init=he_normal: the seed's fan_in (nn/init.py), not torchvision's fan_out
    conv = build("resnet18", size=(32, 32), init="he_normal").layer3[1].conv2
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)  # square: fan_in = fan_out
    stem = build("resnet18", size=(32, 32), init="he_normal").conv1  # fan_in 3·49, fan_out 64·49
    assert stem.weight.std().item() == pytest.approx(math.sqrt(2 / (3 * 49)), rel=0.05)
    tanh = build("resnet18", size=(32, 32), activation="tanh")
    kinds = {type(m) for m in tanh.modules()}
    assert nn.Tanh in kinds and nn.ReLU not in kinds
