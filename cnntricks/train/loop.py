"""The training loop: one visible loop, with the seed's §4 practice as its defaults.

`fit(cfg, run_dir)` trains, checkpoints atomically after each epoch, and writes the run
directory (config.yaml, preprocess.json, history.jsonl, checkpoints/, summary.json).
`fit(..., resume=True)` continues from the newest checkpoint: model, optimizer, schedule and
RNG state are restored, so the run ends with the same numbers as one never interrupted.

Hooks are duck-typed (Lightning Fabric's way, without a base class): any object in
`callbacks` may define `on_step_end(state, run)` and `on_epoch_end(state, run)`, where `state`
is the `TrainerState` (counters, saved in checkpoints) and `run` the `Run` (model, optimizer,
splits, ...). `on_epoch_end` runs outside the timed part (its time is not in `train_seconds`);
`on_step_end` runs inside it: keep it light.
"""
from __future__ import annotations

import copy
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from cnntricks import config as config_module
from cnntricks.augment import FancyPCA
from cnntricks.augment.policy import create_mixing, create_policy
from cnntricks.augment.policy import resolve as resolve_augment
from cnntricks.config import Config
from cnntricks.data import Splits, batch_indices, load_splits
from cnntricks.nn.models import ImageSizeWarning, create_model
from cnntricks.doctor.act import (EXPLODED_LOSS, MAX_ROLLBACKS, ROLLBACK_LR_FACTOR, Restart, TrainingDoctor,
                                  archive_attempt, read_restarts)
from cnntricks.monitor import Monitor
from cnntricks.nn.init import lsuv_
from cnntricks.nn.regularize import apply_max_norm, l1_active, penalty
from cnntricks.preprocess.pipeline import Preprocess, fit_preprocess, model_input_shape
from cnntricks.train import checkpoint as ckpt
from cnntricks.train.device import autocast, resolve_device, resolve_precision
from cnntricks.train.evaluate import metrics, predict_logits
from cnntricks.train.history import HistoryWriter
from cnntricks.train.optim import apply_decoupled_decay, create_optimizer, set_lr
from cnntricks.train.schedule import Schedule


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class RunDirectoryError(RuntimeError):
    """The run directory cannot be used as asked (already holds a run, or has none to resume)."""


@dataclass
class TrainerState:
    """What hooks and the loop share: counters and the latest numbers."""
    epoch: int = 0          # epochs completed
    step: int = 0           # optimizer steps taken
    train_seconds: float = 0.0  # time in training steps only (no evaluation, no checkpoint I/O)
    images_seen: int = 0
    best_val_acc: float | None = None
    last_epoch: dict = field(default_factory=dict)
    stop_reason: str | None = None
    first_loss: float | None = None  # the run's first finite loss: doctor.mode=fix measures explosions by it


@dataclass
class Run:
    """What hooks may use: the live objects of the run (not saved; TrainerState is)."""
    cfg: Config
    run_dir: Path
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    splits: Splits
    preprocess: Preprocess  # normalization and whitening, fitted on the training split
    device: torch.device
    precision: str
    evaluate: object  # evaluate(store) -> {"loss", "acc", "per_class"}, with the run's TTA setting


def _rng_states(generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state()}


def _restore_rng(generator: torch.Generator, states: dict[str, torch.Tensor]) -> None:
    generator.set_state(states["generator"])
    torch.set_rng_state(states["torch"])


def prepare_run_dir(cfg: Config, run_dir: Path, resume: bool) -> None:
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise RunDirectoryError(f"--resume {run_dir}: no config.yaml there, so no run to continue; "
                                    f"check the path (runs are in runs/ by default)")
        return
    if ckpt.latest_checkpoint(run_dir) is not None or (run_dir / "summary.json").exists():
        raise RunDirectoryError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                                f"or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt.write_atomic(run_dir / "config.yaml", config_module.dump(cfg))


# Keys a resumed run may not change: they would make it a different run than the checkpoint's.
FIXED_ON_RESUME = ("data", "preprocess", "model", "augment", "train.seed")


def check_resume_config(saved: Config, wanted: Config, run_dir: Path) -> None:
    changed = []
    for name in FIXED_ON_RESUME:
        section, _, key = name.partition(".")
        before, after = getattr(saved, section), getattr(wanted, section)
        if key:
            before, after = {key: getattr(before, key)}, {key: getattr(after, key)}
        else:
            before, after = before.__dict__, after.__dict__
        changed += [f"{section}.{k}" for k in before if before[k] != after[k]]
    if changed:
        raise config_module.ConfigError(
            f"--resume {run_dir}: {', '.join(changed)} cannot change when resuming (the checkpoint was "
            f"trained with the old value); change training keys such as train.epochs or optim.lr, "
            f"or start a new run")


def resolve_device_and_precision(cfg: Config) -> tuple[torch.device, str]:
    """train.device and train.precision for this machine; one it lacks is a configuration error."""
    try:
        device = resolve_device(cfg.train.device)
        return device, resolve_precision(cfg.train.precision, device)
    except RuntimeError as err:  # e.g. train.device=cuda without CUDA, fp16 on a CPU
        raise config_module.ConfigError(str(err)) from None


def uses_channels_last(cfg: Config) -> bool:
    """channels_last pays off for convolutions only; the MLP's input is flattened anyway."""
    return cfg.train.channels_last and cfg.model.name != "mlp"


def describe_data(splits: Splits) -> dict:
    """What the model is built for: written to data.json, so that predict needs no training data."""
    _, channels, height, width = splits.train.images.shape
    return {"source": splits.source, "classes": splits.train.classes, "channels": channels,
            "height": height, "width": width}


def read_data_description(run_dir: str | Path) -> dict:
    return json.loads((Path(run_dir) / "data.json").read_text())


def build(cfg: Config, data: dict, device: torch.device, warn_size: bool = False):
    """The model for `data` (see describe_data), on `device`, in the memory format training uses."""
    with warnings.catch_warnings():
        if not warn_size:  # said once, when training starts; not again at evaluation
            warnings.simplefilter("ignore", ImageSizeWarning)
        channels, height, width = model_input_shape(cfg.preprocess, (data["channels"], data["height"], data["width"]))
        model = create_model(cfg.model, channels, len(data["classes"]), (height, width))
    model = model.to(device)
    if uses_channels_last(cfg):
        model = model.to(memory_format=torch.channels_last)
    return model


def fit(cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
        callbacks: tuple = ()) -> dict:
    """Train `cfg` into `run_dir` (or continue it); returns the summary also written to summary.json.

    Under doctor.mode=fix the doctor may start the run again with a corrected config (a `Restart`,
    doctor/act.py): the abandoned attempt goes to `run_dir/attempts/<n>/` and training starts over.
    """
    run_dir = Path(run_dir)
    while True:
        try:
            return _fit_attempt(cfg, run_dir, resume=resume, progress=progress, callbacks=callbacks)
        except Restart as restart:
            kept = archive_attempt(run_dir, restart.event, ckpt.write_atomic)
            if progress:
                tqdm.write(f"doctor: fix: {restart.event['message']} (the abandoned attempt is in {kept})")
            cfg, resume = restart.config, False


def _fit_attempt(cfg: Config, run_dir: Path, *, resume: bool, progress: bool, callbacks: tuple) -> dict:
    cfg = copy.deepcopy(cfg)
    for key in ("root", "cache_dir"):  # absolute, so evaluate works from any folder later
        if getattr(cfg.data, key):
            setattr(cfg.data, key, str(Path(getattr(cfg.data, key)).expanduser().resolve()))
    device, precision = resolve_device_and_precision(cfg)  # a bad setting stops before any file is written
    if cfg.preprocess.whiten == "pca" and cfg.model.name != "mlp":
        raise config_module.ConfigError(
            f"preprocess.whiten=pca gives each image as {cfg.preprocess.components or 'C·H·W'} numbers, not an "
            f"image, which model.name={cfg.model.name} cannot read; use model.name=mlp, or "
            f"preprocess.whiten=zca or patch for the conv nets")
    prepare_run_dir(cfg, run_dir, resume)
    if resume:
        check_resume_config(config_module.load(run_dir / "config.yaml"), cfg, run_dir)
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    generator = torch.Generator(device=device).manual_seed(t.seed)

    splits = load_splits(cfg.data, t.seed)
    try:  # fitted on the training split only; a seeded subset for dense whitening
        preprocess = fit_preprocess(cfg.preprocess, splits.train.images, torch.Generator().manual_seed(t.seed))
    except ValueError as err:  # e.g. dense ZCA asked of images too big for its D x D covariance
        raise config_module.ConfigError(f"preprocess.whiten={cfg.preprocess.whiten}: {err}") from None
    preprocess.save(run_dir, ckpt.write_atomic)
    ckpt.write_atomic(run_dir / "data.json", json.dumps(describe_data(splits), indent=2))
    channels_last = uses_channels_last(cfg)
    model = build(cfg, describe_data(splits), device, warn_size=not resume)
    optimizer = create_optimizer(cfg.optim, model, cfg.regularize.penalize)
    channels, num_classes = splits.train.images.shape[1], len(splits.train.classes)
    try:
        augment_values, notice = resolve_augment(cfg.augment, channels)
    except ValueError as err:
        raise config_module.ConfigError(str(err)) from None
    if notice and not resume:
        warnings.warn(notice)
    fancy_pca = None
    if augment_values["fancy_pca"]:  # AlexNet: PCA of the whole training set's RGB values, fitted once
        fancy_pca = FancyPCA.fit(splits.train.images)
        ckpt.write_atomic(run_dir / "fancy_pca.json", json.dumps(fancy_pca.state_dict()))
    augment = create_policy(cfg.augment, channels, fancy_pca)
    mixing = create_mixing(cfg.augment, channels, num_classes)
    train_images = splits.train.images.to(device)  # the whole split lives on the device (airbench)
    train_labels = splits.train.labels.to(device)
    batch_size = min(cfg.optim.batch_size, len(train_labels))
    steps_per_epoch = len(train_labels) // batch_size
    schedule = Schedule(cfg.schedule, cfg.optim.lr, t.epochs * steps_per_epoch, steps_per_epoch)
    history = HistoryWriter(run_dir / "history.jsonl")
    monitor = Monitor.from_setting(t.monitor, model, run_dir / "stats.jsonl")  # None when off
    state = TrainerState()
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    doctor = TrainingDoctor(cfg.doctor.mode, run_dir)

    def restore(last: Path) -> TrainerState:
        """Everything back to checkpoint `last`: weights, optimizer, RNG, schedule, files."""
        saved, rng = ckpt.load_checkpoint(last, model, optimizer)
        _restore_rng(generator, rng)
        schedule.load_state_dict(saved["schedule"])
        if saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        history.truncate(saved["history_lines"])
        if monitor is not None:
            monitor.truncate(saved.get("stats_lines", 0))
            monitor.load_state_dict(saved.get("monitor") or {})
        doctor.load_state_dict(saved.get("doctor") or {})
        return TrainerState(**saved["trainer"])

    def save(epoch: int) -> None:
        ckpt.save_checkpoint(run_dir, epoch, model, optimizer, _rng_states(generator),
                             {"schedule": schedule.state_dict(), "history_lines": history.flush(),
                              "stats_lines": monitor.flush() if monitor is not None else 0,
                              "monitor": monitor.state_dict() if monitor is not None else None,
                              "doctor": doctor.state_dict(), "scaler": scaler.state_dict(),
                              "trainer": state.__dict__})

    if resume and (last := ckpt.latest_checkpoint(run_dir)) is not None:
        try:
            state = restore(last)
        except (RuntimeError, ValueError) as err:  # tensor shapes or parameter groups differ
            raise config_module.ConfigError(
                f"--resume {run_dir}: the checkpoint {last.name} does not fit this configuration "
                f"({str(err).strip().splitlines()[-1].strip()}); when resuming, change training keys "
                f"(train.epochs, optim.lr, ...) but not the model or the data") from None
    else:
        # A new run, or one killed before its first checkpoint: start over. Lines that such a run
        # wrote (its first epoch, a nonfinite event) are vouched for by no checkpoint.
        history.truncate(0)
        for event in read_restarts(run_dir):  # doctor.mode=fix started this run again: say so first
            history.add("event", epoch=0, step=0, **event)  # (a restart event has at_epoch, not epoch)
        if monitor is not None:
            monitor.truncate(0)
    if cfg.model.init == "lsuv" and state.step == 0:  # LSUV scales each layer on a real batch
        first = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(t.seed))[:batch_size]
        lsuv_(model, orthogonalize=False, batch=preprocess(train_images[first.to(device)]).contiguous(
            memory_format=torch.channels_last if channels_last else torch.contiguous_format))
    if resume:  # written once the checkpoint is known to fit, so a refused override changes nothing
        ckpt.write_atomic(run_dir / "config.yaml", config_module.dump(cfg))
    if cfg.doctor.mode == "fix" and ckpt.latest_checkpoint(run_dir) is None:
        save(0)  # a NaN in the first epoch can then roll back too

    def evaluate_split(store, keep_logits: bool = False) -> dict:
        logits = predict_logits(model, store.images, preprocess, device=device, precision=precision,
                                tta=t.tta, batch_size=t.eval_batch_size, channels_last=channels_last)
        result = metrics(logits, store.labels, len(splits.train.classes))
        return {**result, "logits": logits} if keep_logits else result

    run = Run(cfg, run_dir, model, optimizer, splits, preprocess, device, precision, evaluate_split)
    # Reading a loss back to the host waits for the device. On a CPU that costs nothing, so every
    # step is checked; on CUDA the losses are read every few steps to keep the GPU queue full.
    sync_every = 1 if device.type == "cpu" else 25
    while state.epoch < t.epochs and state.stop_reason is None:
        try:
            epoch = state.epoch
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{t.epochs}", leave=False,
                       disable=not progress, unit="step", dynamic_ncols=True)
            started = time.perf_counter()
            pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, loss on the device)

            def read_pending() -> None:
                """One host sync for the steps since the last: history lines, the finite check, the bar."""
                values = torch.stack([loss for _, _, loss in pending]).float().tolist()
                for (step, step_lr, _), value in zip(pending, values):
                    finite = math.isfinite(value)
                    if state.first_loss is None and finite:
                        state.first_loss = value
                    # fix mode: a loss that exploded (still finite) is rolled back too, before it
                    # leaves garbage weights in the next checkpoint
                    exploded = (cfg.doctor.mode == "fix" and finite and state.first_loss is not None
                                and value > EXPLODED_LOSS * state.first_loss)
                    if not finite or exploded:
                        last = ckpt.latest_checkpoint(run_dir)
                        if cfg.doctor.mode == "fix" and last is not None and doctor.rollbacks < MAX_ROLLBACKS:
                            bar.close()
                            raise _Rollback(step, value, step_lr, last)
                    if not finite:
                        bar.close()
                        if monitor is not None:  # the statistics up to the fault: evidence for the doctor
                            monitor.flush()
                        _diverged(run_dir, history, state, epoch, step, value, step_lr)
                    if step % t.log_every == 0:
                        history.add("batch", step=step, epoch=epoch + 1, loss=value, lr=step_lr)
                if progress:  # drawn by bar.update, at most every 0.1 s
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(loss=f"{values[-1]:.3f}", lr=f"{pending[-1][1]:.3g}", img_s=f"{rate:.0f}",
                                    refresh=False)
                bar.update(len(pending))
                pending.clear()

            for indices in batch_indices(len(train_labels), batch_size, generator):
                images = augment(train_images[indices], generator)
                images = preprocess(images)
                if channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                labels = train_labels[indices]
                targets = labels
                if mixing is not None:  # mixup / cutmix: soft targets (N, classes)
                    images, targets = mixing(images, labels, generator)
                lr = schedule.lr(state.step)
                set_lr(optimizer, lr)
                watched = monitor is not None and monitor.before_forward(state.step + 1)
                with autocast(device, precision):
                    logits = model(images)
                    # Mean over the batch: the seed's "divide the gradients by mini batch size",
                    # so the LR need not change with the batch size (seed §4, Sutskever).
                    loss = F.cross_entropy(logits, targets, label_smoothing=cfg.optim.label_smoothing)
                reg = cfg.regularize
                l1 = reg.l1 if reg.l1 and l1_active(state.step, schedule.total_steps, reg.l1_start) else 0.0
                total = loss + penalty(model, l1, reg.l2, reg.penalize)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(total).backward()
                if watched:
                    # the scale as a device tensor: reading it would wait for the device
                    monitor.after_backward(grad_scale=scaler._scale if scaler.is_enabled() else 1.0)
                apply_decoupled_decay(optimizer)  # SGD with optim.decay=decoupled only
                scaler.step(optimizer)
                scaler.update()
                if reg.max_norm is not None:
                    apply_max_norm(model, reg.max_norm)
                state.step += 1
                if watched:
                    monitor.after_step(state.step, epoch + 1)
                pending.append((state.step, lr, total.detach()))
                loss_sum += loss.detach() * len(labels)
                correct += (logits.argmax(1) == labels).sum()
                seen += len(labels)
                if len(pending) >= sync_every:
                    read_pending()
                for callback in callbacks:
                    getattr(callback, "on_step_end", lambda s, r: None)(state, run)
            if pending:
                read_pending()
            seconds = time.perf_counter() - started
            bar.close()
            state.train_seconds += seconds
            state.images_seen += seen

            val = evaluate_split(splits.val)
            state.epoch = epoch + 1
            if val["acc"] is not None and (state.best_val_acc is None or val["acc"] > state.best_val_acc):
                state.best_val_acc = val["acc"]
            record = {"epoch": state.epoch, "train_loss": float(loss_sum) / seen,
                      "train_acc": float(correct) / seen, "val_loss": val["loss"], "val_acc": val["acc"],
                      "lr": lr, "seconds": seconds, "images_per_second": seen / seconds}
            history.add("epoch", **record)
            state.last_epoch = record
            if message := schedule.on_epoch_end(val["acc"]):
                history.add("event", epoch=state.epoch, step=state.step, event="lr_divided", message=message)
            if t.target_accuracy is not None and val["acc"] is not None and val["acc"] >= t.target_accuracy:
                state.stop_reason = "target_accuracy"
                history.add("event", epoch=state.epoch, step=state.step, event="target_reached",
                            message=f"validation accuracy {val['acc']:.4f} >= {t.target_accuracy}")
            for callback in callbacks:
                getattr(callback, "on_epoch_end", lambda s, r: None)(state, run)
            if progress:
                tqdm.write(_epoch_line(record, t.epochs))
            history.flush()  # the doctor reads the files: this epoch's lines must be in them
            if monitor is not None:
                monitor.flush()
            _consult(doctor, cfg, state, schedule, optimizer, history, progress, num_classes)
            last_epoch = state.epoch == t.epochs or state.stop_reason is not None
            if state.epoch % t.checkpoint_every == 0 or last_epoch:
                save(state.epoch)
            else:
                history.flush()

        except _Rollback as rollback:  # doctor.mode=fix: back to the last good checkpoint, half the LR
            doctor_state, before = doctor.state_dict(), schedule.plateau_scale  # the LR that failed
            state = restore(rollback.checkpoint)  # (cuts history.jsonl back to the checkpoint)
            schedule.plateau_scale = min(before, schedule.plateau_scale) * ROLLBACK_LR_FACTOR
            message = (f"loss {rollback.value} at step {rollback.step}: rolled back to {rollback.checkpoint.name}, "
                       f"learning rate x{ROLLBACK_LR_FACTOR} (scale {before:.3g} -> {schedule.plateau_scale:.3g})")
            kind = "nonfinite" if not math.isfinite(rollback.value) else "exploded"
            logged = doctor_state["rollback_events"] + [
                dict(epoch=state.epoch, step=rollback.step, event=kind,
                     message=f"loss is {rollback.value} at step {rollback.step}"),
                dict(epoch=state.epoch, step=rollback.step, event="remedy", id="nonfinite", what="rollback",
                     before=before, after=schedule.plateau_scale, message=message)]
            doctor.load_state_dict({**doctor_state, "rollbacks": doctor_state["rollbacks"] + 1,
                                    "rollback_events": logged})
            for event in logged:  # every roll back so far, also those the cut removed
                if event["step"] > state.step:
                    history.add("event", **event)
            history.flush()
            if progress:
                tqdm.write(f"doctor: {message}")

    return _finish(cfg, run_dir, model, splits, state, evaluate_split, device, precision)


def _epoch_line(record: dict, epochs: int) -> str:
    val = "-" if record["val_acc"] is None else f"{100 * record['val_acc']:.2f}%"
    return (f"epoch {record['epoch']:>3}/{epochs}  train loss {record['train_loss']:.4f}  "
            f"train acc {100 * record['train_acc']:.2f}%  val acc {val}  lr {record['lr']:.4g}  "
            f"{record['images_per_second']:.0f} img/s  {record['seconds']:.1f}s")


class _Rollback(Exception):
    """A non-finite loss under doctor.mode=fix, with a checkpoint to go back to."""

    def __init__(self, step: int, value: float, lr: float, checkpoint: Path):
        super().__init__(f"loss {value} at step {step}")
        self.step, self.value, self.lr, self.checkpoint = step, value, lr, checkpoint


def _consult(doctor: TrainingDoctor, cfg: Config, state: TrainerState, schedule, optimizer,
             history: HistoryWriter, progress: bool, classes: int) -> None:
    """The doctor at an epoch's end: announce new findings (warn), apply remedies (fix; may raise
    Restart), stop (stop)."""
    if doctor.mode == "off":
        return
    new, current = doctor.review()
    for f in new:
        history.add("event", epoch=state.epoch, step=state.step, event="finding", id=f.id,
                    severity=f.severity, message=f"{f.title}: {f.evidence}")
        if progress:
            tqdm.write(f"doctor: {f.severity} {f.id}: {f.title} ({f.evidence})")
    for event in doctor.remedies(current, state.epoch, schedule, optimizer, cfg=cfg,
                                 best_val_acc=state.best_val_acc, classes=classes):
        history.add("event", epoch=state.epoch, step=state.step, **event)
        if progress:
            tqdm.write(f"doctor: fix: {event['message']}")
    if doctor.mode == "stop" and current:
        state.stop_reason = f"doctor:{current[0].id}"
        history.add("event", epoch=state.epoch, step=state.step, event="doctor_stop", id=current[0].id,
                    message=f"stopped by the doctor: {current[0].title}")


def _diverged(run_dir: Path, history: HistoryWriter, state: TrainerState, epoch: int, step: int,
              value: float, lr: float):
    last = ckpt.latest_checkpoint(run_dir)
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    message = (f"loss is {value} at step {step} (epoch {epoch + 1}); {where}. "
               f"Lower optim.lr (seed §7: a 'very high' learning rate makes the loss explode) "
               f"and continue with --resume, or start again.")
    # README: "a non-finite loss is written as null with a nonfinite event"
    history.add("batch", step=step, epoch=epoch + 1, loss=value, lr=lr)
    history.add("event", epoch=epoch + 1, step=step, event="nonfinite", message=message)
    history.flush()
    raise TrainingDiverged(message)


MISCLASSIFIED = 36  # test images kept for the report's grid of confident mistakes


def _save_misclassified(run_dir: Path, store, logits: torch.Tensor) -> None:
    """misclassified.npz: the most confident test mistakes (images uint8, labels, predicted, confidence)."""
    import io

    import numpy as np
    probabilities = logits.float().softmax(1).cpu()
    confidence, predicted = probabilities.max(1)
    labels = store.labels.cpu()
    wrong = torch.nonzero(predicted != labels).flatten()
    chosen = wrong[confidence[wrong].argsort(descending=True)[:MISCLASSIFIED]]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=store.images[chosen].cpu().numpy(), labels=labels[chosen].numpy(),
                        predicted=predicted[chosen].numpy(), confidence=confidence[chosen].numpy())
    path, tmp = run_dir / "misclassified.npz", run_dir / ".misclassified.npz.tmp"
    tmp.write_bytes(buffer.getvalue())
    tmp.replace(path)


def _finish(cfg, run_dir, model, splits, state, evaluate_split, device, precision) -> dict:
    test = {"acc": None, "loss": None, "per_class": [], "confusion": []}
    if splits.test is not None:
        test = evaluate_split(splits.test, keep_logits=True)
        _save_misclassified(run_dir, splits.test, test.pop("logits"))
    for row in test["per_class"]:
        row["name"] = splits.train.classes[row["class"]]
    summary = {
        "test_acc": test["acc"], "test_loss": test["loss"],
        "best_val_acc": state.best_val_acc, "val_acc": state.last_epoch.get("val_acc"),
        "train_acc": state.last_epoch.get("train_acc"),
        "train_seconds": state.train_seconds, "epochs": state.epoch, "steps": state.step,
        "images_per_second": state.images_seen / max(state.train_seconds, 1e-9),
        "stop_reason": state.stop_reason or "completed",
        "device": str(device), "precision": precision,
        "parameters": sum(p.numel() for p in model.parameters()),
        "classes": splits.train.classes, "per_class": test["per_class"], "confusion": test["confusion"],
        "restarts": [{k: event.get(k) for k in ("attempt", "ids", "before", "after", "at_epoch", "message")}
                     for event in read_restarts(run_dir)],  # doctor.mode=fix: attempts/<n>/
        "split_sizes": {"train": len(splits.train), "val": len(splits.val),
                        "test": len(splits.test) if splits.test is not None else 0},
    }
    ckpt.write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    return summary
