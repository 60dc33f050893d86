"""Checkpoints that survive a kill at any moment, and that load without unpickling.

A checkpoint is a folder `checkpoints/epoch-NNNN/` with
  model.safetensors  weights and buffers (what evaluate, predict and other tools load)
  state.safetensors  optimizer tensors (momentum buffers...) and the RNG states, as tensors
  state.json         epoch, step, schedule state, history line count, optimizer settings
It is written under a temporary name and renamed into place (a rename is atomic), then
`checkpoints/latest` is replaced (also atomic) to point at it. A kill before the rename leaves
the previous checkpoint untouched; a stale temporary folder is cleared at the next save, and a
failed save (a full disk) removes its own. state.json records the size and SHA-256 of the two
tensor files; `rundir.find_checkpoint` checks them before a load, so a damaged checkpoint is
passed over for the next older intact one. A checkpoint taken inside an epoch (a signal stopped
the run) is `epoch-NNNN-step-SSSSSSSS`, NNNN the epochs completed.
The format is rundir.py's; `rundir.latest_checkpoint` finds the newest. Nothing here calls pickle: safetensors and JSON only (DESIGN: never unpickle a file you did not write).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from cnntricks.rundir import CHECKPOINTS, checkpoint_files, fsync_dir, load_tensors, save_tensors, write_atomic

KEEP = 2  # complete checkpoints kept (train.keep_checkpoints); older ones are deleted after a newer one is in place


def _optimizer_split(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        plain["state"][str(index)] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain["state"][str(index)][key] = value
    return tensors, plain


def _optimizer_join(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state = {int(i): dict(v) for i, v in plain["state"].items()}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


def save_checkpoint(run_dir: str | Path, epoch: int, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, rng: dict[str, torch.Tensor],
                    state: dict, step: int | None = None, keep: int = KEEP) -> Path:
    """Write checkpoint `epoch` (with `step`: one inside the next epoch) atomically and point `latest`
    at it; returns its folder. The `keep` newest complete checkpoints stay (0: every one)."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):  # a checkpoint folder a kill left half written
        shutil.rmtree(stale, ignore_errors=True)
    name = f"epoch-{epoch:04d}" + (f"-step-{step:08d}" if step is not None else "")
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    try:
        tmp.mkdir()
        save_tensors(model_tensors(model), tmp / "model.safetensors")
        tensors, plain = _optimizer_split(optimizer)
        tensors.update({f"rng.{k}": v.contiguous() for k, v in rng.items()})
        save_tensors(tensors, tmp / "state.safetensors")
        (tmp / "state.json").write_text(json.dumps({**state, "epoch": epoch, "optimizer": plain,
                                                    "files": checkpoint_files(tmp)}))
        for file in ("model.safetensors", "state.safetensors", "state.json"):
            with (tmp / file).open("rb") as f:
                os.fsync(f.fileno())
    except BaseException:  # a full disk, a kill signal turned exception: leave nothing half written
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # the same epoch written again (a resumed run redoing it)
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    write_atomic(root / "latest", final.name + "\n")
    done = sorted(p for p in root.glob("epoch-*") if p.is_dir())
    for old in (done[:-keep] if keep else []):
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_model_weights(model: torch.nn.Module, folder: str | Path) -> None:
    model.load_state_dict(load_tensors(Path(folder) / "model.safetensors"))


def load_checkpoint(folder: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore model and optimizer in place; returns (state.json contents, RNG tensors)."""
    folder = Path(folder)
    load_model_weights(model, folder)
    state = json.loads((folder / "state.json").read_text())
    state.pop("files", None)
    tensors = load_tensors(folder / "state.safetensors")
    optimizer.load_state_dict(_optimizer_join(tensors, state.pop("optimizer")))
    rng = {k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")}
    return state, rng
