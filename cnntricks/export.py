"""`cnntricks export RUN --format onnx|torchscript|safetensors`: a trained run as a file other tools load.

The ONNX and TorchScript graphs take images as they come and do what `cnntricks predict` does:
the run's input normalization and whitening are folded into the graph, and so is its test-time
augmentation (the mean of the image's and its mirror's logits, with train.tta). Their input is
`images`, (N, C, H, W) at the run's size and channels (data.json), with a dynamic batch dimension:

  --input float (default)  float32 in [0, 1] (a decoded image divided by 255)
  --input uint8            uint8 in [0, 255], as decoded

and their output `logits` (N, classes) float32 (softmax gives the probabilities; the classes, in
order, are in the sidecar). An ONNX export is checked with onnxruntime at batch 1 and 8 against
PyTorch on the same images (at most 1e-4 apart in fp32), and the difference is reported.

`safetensors` writes the model's plain state dict (no preprocessing in it) and `model.json` beside
it with what is needed to use it: the model's name and config, the classes, the input size and
channels, the normalization (mean and std in [0, 1] units), the whitening (named; its tensors are in
the run's preprocess.safetensors), and train.tta.

Every file is written under a temporary name and renamed into place: a failed export leaves none.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cnntricks.config import ConfigError
from cnntricks.rundir import write_atomic, write_json
from cnntricks.train.inference import LoadedRun, load_predictor

FORMATS = {"onnx": ".onnx", "torchscript": ".pt", "safetensors": ".safetensors"}
INPUTS = ("float", "uint8")
TOLERANCE = 1e-4


class ExportError(ConfigError):
    """The model could not be exported in that format (the reason, and what to try): exit 2."""


class Deployable(nn.Module):
    """images as they come -> the run's logits: scale, normalization, whitening, model, TTA."""

    def __init__(self, loaded: LoadedRun, input_kind: str):
        super().__init__()
        predictor = loaded.predictor
        self.model = predictor.model.float().eval().to(memory_format=torch.contiguous_format)
        self.preprocess = predictor.preprocess
        self.tta = predictor.tta
        self.scale = 255.0 if input_kind == "float" else 1.0

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images.float() * self.scale)
        logits = self.model(x)
        if self.tta:
            logits = (logits + self.model(x.flip(-1))) / 2
        return logits


def example_input(loaded: LoadedRun, batch: int, input_kind: str, seed: int = 0) -> torch.Tensor:
    data = loaded.data
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (batch, data["channels"], data["height"], data["width"]), generator=generator,
                           dtype=torch.uint8)
    return pixels if input_kind == "uint8" else pixels.float() / 255


def export_run(run_dir: str | Path, fmt: str, out: str | Path | None = None, input_kind: str = "float",
               checkpoint: str | None = None) -> dict:
    """Export the run's model; returns what was written and checked (the CLI prints it)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if input_kind not in INPUTS:
        raise ConfigError(f"--input must be one of {', '.join(INPUTS)}, got {input_kind!r}")
    run_dir = Path(run_dir)
    loaded = load_predictor(run_dir, ["train.device=cpu", "train.precision=fp32"], checkpoint=checkpoint)
    out = Path(out) if out else run_dir / "export" / f"model{FORMATS[fmt]}"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"format": fmt, "file": str(out), "checkpoint": loaded.checkpoint.name, "classes": loaded.data["classes"],
              "input": {"name": "images", "dtype": "float32 in [0, 1]" if input_kind == "float" else "uint8",
                        "shape": ["batch", loaded.data["channels"], loaded.data["height"], loaded.data["width"]]},
              "output": {"name": "logits", "shape": ["batch", len(loaded.data["classes"])]},
              "tta": loaded.predictor.tta}
    if fmt == "safetensors":
        write_plain(loaded, out, record)
        return record
    module = Deployable(loaded, input_kind)
    example = example_input(loaded, 2, input_kind)
    try:
        if fmt == "onnx":
            write_atomic(out, lambda path: onnx_export(module, example, path))
            record["check"] = check_onnx(out, module, loaded, input_kind)
        else:
            write_atomic(out, lambda path: torch.jit.trace(module, example, check_trace=False).save(str(path)))
            record["check"] = check_torchscript(out, module, loaded, input_kind)
    except ExportError:
        raise
    except Exception as err:  # the exporter's own errors: unsupported operators, dynamic control flow
        name = loaded.cfg.model.name
        raise ExportError(f"model {name} ({loaded.cfg.model.activation}) could not be exported to {fmt}: "
                          f"{str(err).strip().splitlines()[0][:300]}; try --format "
                          f"{'torchscript' if fmt == 'onnx' else 'onnx'} or safetensors") from None
    write_json(out.with_suffix(".json"), record)
    return record


def onnx_export(module: nn.Module, example: torch.Tensor, path: Path) -> None:
    import warnings
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it)
    except ImportError:
        raise ExportError("--format onnx needs the onnx exporter's packages: pip install onnx onnxscript "
                          "onnxruntime (or pip install 'cnntricks[export]')") from None
    import logging
    batch = torch.export.Dim("batch", min=1, max=4096)
    # the exporter's registry says, per run, that torchvision's operators are skipped: not ours to use
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["logits"],
                          dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False, report=False)


def max_difference(run, module: nn.Module, loaded: LoadedRun, input_kind: str) -> dict:
    """The largest |exported - PyTorch| logit at batch 1 and 8, on seeded random images."""
    result = {}
    for batch in (1, 8):
        images = example_input(loaded, batch, input_kind, seed=batch)
        with torch.no_grad():
            expected = module(images)
        result[f"batch_{batch}"] = float((torch.as_tensor(run(images)) - expected).abs().max())
    result["within"] = TOLERANCE
    result["ok"] = all(v <= TOLERANCE for k, v in result.items() if k.startswith("batch_"))
    return result


def check_onnx(path: Path, module: nn.Module, loaded: LoadedRun, input_kind: str) -> dict:
    try:
        import onnxruntime
    except ImportError:
        return {"skipped": "onnxruntime is not installed (pip install onnxruntime): the export is not checked"}
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return max_difference(lambda images: session.run(None, {"images": images.numpy()})[0], module, loaded,
                          input_kind)


def check_torchscript(path: Path, module: nn.Module, loaded: LoadedRun, input_kind: str) -> dict:
    scripted = torch.jit.load(str(path))
    with torch.no_grad():
        return max_difference(lambda images: scripted(images), module, loaded, input_kind)


def write_plain(loaded: LoadedRun, out: Path, record: dict) -> None:
    from cnntricks.rundir import save_tensors
    from cnntricks.train.checkpoint import model_tensors
    preprocess = loaded.predictor.preprocess
    cfg = loaded.cfg
    write_atomic(out, lambda path: save_tensors(model_tensors(loaded.predictor.model), path))
    record.update({"model": cfg.to_dict()["model"], "image_size": [loaded.data["height"], loaded.data["width"]],
                   "channels": loaded.data["channels"],
                   "normalization": preprocess.normalization.to_dict() | {"units": "[0, 1] pixels: (x / 255 - mean) / std"},
                   "whitening": cfg.preprocess.whiten,
                   "input": {"name": "images", "note": "normalize, then whiten (preprocess.safetensors of the run), "
                                                       "then the model; with tta, average the mirror's logits"}})
    write_atomic(out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
