"""cnntricks export: ONNX (dynamic batch, checked with onnxruntime against PyTorch at batch 1 and 8 within
1e-4), TorchScript and a plain safetensors state dict with its sidecar; the normalization, whitening and
test-time augmentation folded into the graph so that it takes images as they come and gives what
`cnntricks predict` gives."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cnntricks import config
from cnntricks.data import load_splits
from cnntricks.export import export_run
from cnntricks.train.inference import load_predictor
from cnntricks.train.loop import fit

BASE = ["data.source=digits", "model.width=8", "model.depth=1", "train.epochs=1", "train.threads=1",
        "doctor.mode=off", "train.monitor=off"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with ZCA whitening and flip TTA: both must be in the exported graph."""
    root = tmp_path_factory.mktemp("export")
    fit(config.load(None, [*BASE, "preprocess.whiten=zca", "train.tta=true", f"data.cache_dir={root / 'cache'}"]),
        root / "run", progress=False)
    return root / "run"


def predicted(run, count):
    # in fp32, as the export is checked: on a CPU with bf16 (AVX-512 BF16, AMX) predict's default autocast
    # differs from fp32 by about 5e-4
    loaded = load_predictor(run, ["train.precision=fp32"])
    images = load_splits(loaded.cfg.data, loaded.cfg.train.seed).test.images[:count]
    return images, loaded.predictor.logits(images)


def test_onnx_takes_images_as_they_come_and_gives_what_predict_gives(run, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    record = export_run(run, "onnx", tmp_path / "float.onnx")
    assert record["check"]["ok"] and record["check"]["batch_8"] <= 1e-4 and record["tta"]
    session = onnxruntime.InferenceSession(str(tmp_path / "float.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"] and session.get_outputs()[0].name == "logits"
    for batch in (1, 8):  # one graph, any batch
        images, expected = predicted(run, batch)
        got = session.run(None, {"images": images.float().numpy() / 255})[0]
        assert got.shape == (batch, 10) and np.abs(got - expected.numpy()).max() <= 1e-4
    export_run(run, "onnx", tmp_path / "uint8.onnx", input_kind="uint8")
    raw = onnxruntime.InferenceSession(str(tmp_path / "uint8.onnx"), providers=["CPUExecutionProvider"])
    images, expected = predicted(run, 8)
    assert np.abs(raw.run(None, {"images": images.numpy()})[0] - expected.numpy()).max() <= 1e-4
    sidecar = json.loads((tmp_path / "float.json").read_text())
    assert sidecar["classes"] == load_predictor(run).data["classes"] and sidecar["input"]["shape"][0] == "batch"


def test_torchscript_and_the_plain_state_dict(run, tmp_path):
    export_run(run, "torchscript", tmp_path / "model.pt")
    scripted = torch.jit.load(str(tmp_path / "model.pt"))
    images, expected = predicted(run, 8)
    assert (scripted(images.float() / 255) - expected).abs().max() <= 1e-4
    export_run(run, "safetensors", tmp_path / "model.safetensors")
    weights = load_file(str(tmp_path / "model.safetensors"))
    assert set(weights) == set(load_predictor(run).predictor.model.state_dict())
    sidecar = json.loads((tmp_path / "model.json").read_text())
    assert sidecar["whitening"] == "zca" and len(sidecar["normalization"]["mean"]) == 1 and sidecar["tta"]


def test_the_command_line_exports_and_bad_requests_say_what_to_do(user, run):
    made = user.run("export", run, "--format", "torchscript", "--out", "m.pt")
    assert made.code == 0, made
    assert "checked against PyTorch: largest logit difference" in made.out and (user.cwd / "m.pt").is_file()
    assert user.run("export", run, "--format", "tflite").code == 2
    missing = user.run("export", user.cwd / "nowhere")
    assert missing.code == 4 and "not a run directory" in missing.err
