"""The loop plug-in of schedule.name=snapshot (seed §8, "different checkpoints of a single model"; Huang
et al. 2017): at the end of each cosine cycle (train.schedule's `cycle_ends`) the model's weights are
kept in <run>/snapshots/cycle-NN/ (model.safetensors and a state.json with its epoch and checksum), one
folder per cycle, written atomically. `cnntricks ensemble --snapshots RUN` makes them an ensemble."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from cnntricks.rundir import SNAPSHOTS, file_digest, fsync_dir, save_tensors
from cnntricks.train.checkpoint import model_tensors
from cnntricks.train.schedule import cycle_ends


def keep_weights(model, final: Path, info: dict) -> None:
    """The model's weights as `final`/ (model.safetensors, and state.json: `info` with the weights' size
    and checksum, as a checkpoint's), written beside it under a temporary name and renamed into place:
    a kill leaves the old folder or the new one, never half of one."""
    root = final.parent
    root.mkdir(exist_ok=True)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        weights = tmp / "model.safetensors"
        save_tensors(model_tensors(model), weights)
        (tmp / "state.json").write_text(json.dumps({
            **info, "files": {"model.safetensors": {"bytes": weights.stat().st_size, "sha256": file_digest(weights)}}}))
        for name in ("model.safetensors", "state.json"):
            with (tmp / name).open("rb") as f:
                os.fsync(f.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():  # a resumed run that redoes the epoch, or a better epoch replacing the best
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)


class Snapshots:
    def __init__(self, epochs: int, cycles: int):
        self.ends = cycle_ends(epochs, cycles)

    def on_epoch_end(self, trainer) -> None:
        epoch = trainer.state.epoch
        if epoch not in self.ends:
            return
        cycle = self.ends.index(epoch) + 1
        final = trainer.run_dir / SNAPSHOTS / f"cycle-{cycle:02d}"
        keep_weights(trainer.model, final, {"epoch": epoch, "cycle": cycle, "step": trainer.state.step})
        trainer.history.event(trainer, "snapshot", message=f"snapshot {cycle} of {len(self.ends)} kept at epoch "
                                                            f"{epoch}: {final.relative_to(trainer.run_dir)}")


def snapshot_plugins(cfg) -> list:
    """The plug-in schedule.name=snapshot needs (none otherwise)."""
    return [Snapshots(cfg.train.epochs, cfg.schedule.cycles)] if cfg.schedule.name == "snapshot" else []
