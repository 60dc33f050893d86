"""Post-hoc rebalancing of a trained run (`cnntricks rebalance`): the features stay as trained, only
the classifier changes, and the result is a new run directory that evaluate, predict, the doctor
and the report read like any other.

  logit_adjust  logits - τ log π_c, π the training class frequencies (Menon et al. 2021, post-hoc):
                folded into the head's bias, b' = b - τ log π
  tau_norm      each class's logit divided by the norm of its classifier row to the power τ (Kang et
                al. 2020): W' = W / ‖w_c‖^τ, b' = b / ‖w_c‖^τ (τ = 0 is the run itself)
  crt           classifier re-training (Kang et al. 2020): the head fitted again on the frozen features
                of the training split, each class weighted by the inverse of its count (class-balanced
                in expectation), as a logistic regression (transfer/head.py's fit)

τ is searched on the validation split (balanced: data.imbalance leaves it as it was) for the best
balanced accuracy, unless given. The new directory has the run's files (config, data, preprocessing,
history and statistics: the features' training), one checkpoint with the new head, summary.json
evaluated again, and rebalance.json: the method, τ, and the validation figures before and after.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from cnntricks.config import ConfigError
from cnntricks.rundir import (CHECKPOINTS, SUMMARY, copy_run_files, RunDirectoryError, checkpoint_files, read_json,
                              save_tensors, write_atomic, write_json)
from cnntricks.train.checkpoint import model_tensors
from cnntricks.transfer.head import fit_classifier
from cnntricks.train.inference import load_predictor, metrics, shot_accuracy

METHODS = ("logit_adjust", "tau_norm", "crt")
TAUS = {"logit_adjust": [i / 4 for i in range(13)], "tau_norm": [i / 10 for i in range(21)]}  # 0..3, 0..2
REBALANCE = "rebalance.json"


def adjusted_head(method: str, weight: torch.Tensor, bias: torch.Tensor, counts: torch.Tensor,
                  tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the head after `method` with `tau` (logit_adjust, tau_norm)."""
    if method == "logit_adjust":
        prior = counts.double() / counts.sum()
        return weight, bias - (tau * torch.log(prior.clamp(min=1e-12))).to(bias.dtype)
    if method == "tau_norm":
        scale = weight.norm(dim=1).clamp(min=1e-12) ** tau
        return weight / scale[:, None], bias / scale
    raise ValueError(f"unknown method {method!r}")


def retrained_head(train_features: torch.Tensor, labels: torch.Tensor, classes: int, seed: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """cRT's head: a class-balanced logistic regression of the frozen training features."""
    weight, bias = fit_classifier(train_features.double().numpy(), labels.cpu().numpy(), classes, seed,
                                  class_weight="balanced")
    return torch.as_tensor(weight, dtype=torch.float32), torch.as_tensor(bias, dtype=torch.float32)


def head_metrics(feats: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> dict:
    return metrics(feats @ weight.T.float() + bias.float(), labels, len(bias))


def rebalance(run_dir: str | Path, out_dir: str | Path, method: str, tau: float | None = None, say=print) -> dict:
    """Write the rebalanced run to `out_dir`; returns rebalance.json's contents."""
    from cnntricks.data import load_splits
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if method not in METHODS:
        raise ConfigError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunDirectoryError(f"{out_dir} already exists and is not empty; choose another --out")
    if tau is not None and tau < 0:
        raise ConfigError(f"--tau must be >= 0, got {tau}")
    if tau is not None and method == "crt":
        raise ConfigError("--tau is for logit_adjust and tau_norm; crt fits the head again and has none")
    loaded = load_predictor(run_dir)
    counts = loaded.data.get("train_counts")
    if not counts:
        raise RunDirectoryError(f"{run_dir}/data.json has no train_counts (the run predates them); train it again "
                                f"to rebalance it")
    cfg, predictor = loaded.cfg, loaded.predictor
    splits = load_splits(cfg.data, cfg.train.seed)  # the run's own splits: its seed draws the same ones
    if splits.train.class_counts().tolist() != counts:
        raise RunDirectoryError(f"the data of {run_dir} ({cfg.data.source}) no longer gives the training split it "
                                f"was trained on (class counts differ); rebalance where that data is as it was")
    head = predictor.model.head
    weight, bias = head.weight.detach().float().cpu().clone(), head.bias.detach().float().cpu().clone()
    count_tensor = torch.tensor(counts)
    val = splits.val if len(splits.val) else splits.train
    val_name = "validation" if len(splits.val) else "training (no validation split)"
    say(f"rebalance {run_dir} by {method}: features of {len(val)} {val_name} images")
    val_features = predictor.features(val.images)
    before = head_metrics(val_features, val.labels, weight, bias)
    searched = []
    if method == "crt":
        say(f"  features of {len(splits.train)} training images; the head fitted again, class-balanced")
        new_weight, new_bias = retrained_head(predictor.features(splits.train.images), splits.train.labels,
                                              len(counts), cfg.train.seed)
    else:
        taus = [tau] if tau is not None else TAUS[method]
        for value in taus:
            searched.append((value, head_metrics(val_features, val.labels,
                                                 *adjusted_head(method, weight, bias, count_tensor, value))))
        tau = max(searched, key=lambda item: (item[1]["balanced_acc"], -item[0]))[0]
        new_weight, new_bias = adjusted_head(method, weight, bias, count_tensor, tau)
    after = head_metrics(val_features, val.labels, new_weight, new_bias)
    with torch.no_grad():
        head.weight.copy_(new_weight.to(head.weight))
        head.bias.copy_(new_bias.to(head.bias))

    out_dir.mkdir(parents=True, exist_ok=True)
    copy_run_files(run_dir, out_dir)
    folder = out_dir / CHECKPOINTS / loaded.checkpoint.name
    folder.mkdir(parents=True)
    save_tensors(model_tensors(predictor.model), folder / "model.safetensors")
    shutil.copy2(loaded.checkpoint / "state.safetensors", folder / "state.safetensors")
    state = json.loads((loaded.checkpoint / "state.json").read_text())
    (folder / "state.json").write_text(json.dumps({**state, "files": checkpoint_files(folder)}))
    write_atomic(out_dir / CHECKPOINTS / "latest", folder.name + "\n")

    record = {"source_run": str(run_dir.resolve()), "method": method, "tau": tau, "checkpoint": folder.name,
              "searched_on": val_name, "searched": [{"tau": t, "balanced_acc": m["balanced_acc"], "acc": m["acc"]}
                                                    for t, m in searched],
              "val_before": {k: before[k] for k in ("acc", "balanced_acc", "macro_f1")},
              "val_after": {k: after[k] for k in ("acc", "balanced_acc", "macro_f1")}}
    summary = dict(read_json(run_dir / SUMMARY) or {})
    if splits.test is not None and len(splits.test):
        test = predictor.evaluate(splits.test)
        record["test_before"] = {"acc": summary.get("test_acc"), "balanced_acc": summary.get("test_balanced_acc"),
                                 "macro_f1": summary.get("test_macro_f1")}
        record["test_after"] = {k: test[k] for k in ("acc", "balanced_acc", "macro_f1")}
        summary.update({"test_acc": test["acc"], "test_loss": test["loss"], "test_balanced_acc": test["balanced_acc"],
                        "test_macro_f1": test["macro_f1"], "per_class": test["per_class"],
                        "confusion": test["confusion"], "test_shot_acc": shot_accuracy(test["per_class"], counts)})
    summary["rebalance"] = record
    write_json(out_dir / REBALANCE, record)
    write_json(out_dir / SUMMARY, summary)
    return record
