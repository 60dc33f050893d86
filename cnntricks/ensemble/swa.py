"""Stochastic weight averaging (Izmailov et al. 2018), beyond seed §8: one model whose weights are the
mean of several checkpoints of one architecture (a snapshot run's cycles, or a run's kept
checkpoints), with its batch-norm statistics recomputed on the training split (the averaged weights'
activations have other means and variances than any member's). Where an ensemble of K costs K
passes to predict, the average costs one.

The result is a run directory (the last member's files, one checkpoint with the averaged weights,
summary.json evaluated again, swa.json: the members and the test figures before and after) that
evaluate, predict, the doctor and the report read; it is not resumed (it has no optimizer state).
It is written in a temporary folder renamed when complete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cnntricks.config import ConfigError
from cnntricks.ensemble.members import MemberData, load_member
from cnntricks.rundir import (CHECKPOINTS, SUMMARY, SWA, copy_run_files, RunDirectoryError, checkpoint_files, read_json,
                              save_tensors, write_atomic, write_json)
from cnntricks.train.checkpoint import model_tensors



def averaged_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The mean of each floating tensor over `states`; other tensors (counters) from the last."""
    first = states[0]
    for index, state in enumerate(states[1:], 2):
        if state.keys() != first.keys() or any(state[k].shape != first[k].shape for k in first):
            raise ConfigError(f"weight averaging needs one architecture: member {index} has other weights than "
                              f"member 1 (another model.name, width or depth)")
    return {key: (torch.stack([s[key].double() for s in states]).mean(0).to(first[key].dtype)
                  if first[key].is_floating_point() else states[-1][key].clone()) for key in first}


@torch.no_grad()
def recompute_batch_norm(predictor, images: torch.Tensor) -> int:
    """Reset every batch norm's running statistics and average them over `images` (one pass in train
    mode, as torch.optim.swa_utils.update_bn does); returns how many layers were updated."""
    model = predictor.model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    was_training = model.training
    model.train()
    for batch in predictor.batches(images):
        model(batch)
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
    return len(norms)


def average_weights(sources: list[tuple[str | Path, str | None]], out_dir: str | Path, say=print) -> dict:
    """Write the weight average of `sources` ([(run, checkpoint or None)]) as a run in `out_dir`;
    returns swa.json's contents."""
    out_dir = Path(out_dir)
    if len(sources) < 2:
        raise ConfigError(f"weight averaging needs 2 or more checkpoints, got {len(sources)}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunDirectoryError(f"{out_dir} already exists and is not empty; choose another --out")
    members = [load_member(run, checkpoint) for run, checkpoint in sources]
    last = members[-1]
    for member in members[:-1]:
        if member.loaded.cfg.model != last.loaded.cfg.model or member.input_shape != last.input_shape:
            raise ConfigError(f"weight averaging needs one architecture and input: {member.run_dir} and "
                              f"{last.run_dir} differ (model or data.image_size); build an ensemble instead")
    data = MemberData()
    splits = data.splits(last)
    predictor = last.loaded.predictor
    before = predictor.evaluate(splits.test) if splits.test is not None and len(splits.test) else None
    state = averaged_state([model_tensors(m.loaded.predictor.model) for m in members])
    predictor.model.load_state_dict(state)
    say(f"swa: the mean of {len(members)} checkpoints; batch-norm statistics over {len(splits.train)} training images")
    layers = recompute_batch_norm(predictor, splits.train.images)
    after = predictor.evaluate(splits.test) if before is not None else None

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    copy_run_files(last.run_dir, partial)
    epoch = (read_json(last.loaded.checkpoint / "state.json") or {}).get("epoch", 0)
    folder = partial / CHECKPOINTS / f"epoch-{epoch:04d}"
    folder.mkdir(parents=True)
    save_tensors(model_tensors(predictor.model), folder / "model.safetensors")
    save_tensors({}, folder / "state.safetensors")  # no optimizer: the average is not trained further
    (folder / "state.json").write_text(json.dumps({"epoch": epoch, "swa": True, "files": checkpoint_files(folder)}))
    write_atomic(partial / CHECKPOINTS / "latest", folder.name + "\n")
    record = {"members": [{"run": str(m.run_dir.resolve()), "checkpoint": m.checkpoint} for m in members],
              "batch_norm_layers_recomputed": layers, "bn_images": len(splits.train)}
    summary = dict(read_json(last.run_dir / SUMMARY) or {})
    if after is not None:
        record["test_before"] = {"member": last.name, "acc": before["acc"], "loss": before["loss"]}
        record["test_after"] = {"acc": after["acc"], "loss": after["loss"]}
        summary.update({"test_acc": after["acc"], "test_loss": after["loss"], "test_balanced_acc": after["balanced_acc"],
                        "test_macro_f1": after["macro_f1"], "per_class": after["per_class"],
                        "confusion": after["confusion"]})
    summary["swa"] = record
    write_json(partial / SWA, record)
    write_json(partial / SUMMARY, summary)
    if out_dir.exists():
        out_dir.rmdir()
    partial.rename(out_dir)
    return record
