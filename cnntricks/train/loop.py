"""The training loop: one visible loop, with the seed's §4 practice as its defaults.

`fit(cfg, run_dir)` trains, checkpoints atomically after each epoch, and writes the run
directory (rundir.py), holding its lock. `fit(..., resume=True)` continues from the newest intact
checkpoint: model, optimizer, schedule, RNG and plug-in state are restored, so the run ends with
the same numbers as one never interrupted. SIGTERM or Ctrl-C while training writes a checkpoint
at the next step boundary and raises `Interrupted` (train/interrupt.py).

`Trainer.train_epoch` reads in data-flow order: batch indices -> augment -> preprocess -> mix ->
forward -> loss -> backward -> step -> record. Everything else (the history, the progress bar,
the monitor, the live doctor, your own callbacks) is a plug-in on the named events of
train/plugins.py; a plug-in that must change the run returns an action (roll back, restart,
stop) that `Trainer.run` carries out.
"""
from __future__ import annotations

import io
import math
import signal
import time
import warnings
from contextlib import closing, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cnntricks import config as config_module
from cnntricks.augment import FancyPCA
from cnntricks.augment.policy import create_mixing, create_policy
from cnntricks.config import Config
from cnntricks.data import load_splits
from cnntricks.data.loader import BatchReader
from cnntricks.data.samplers import sampler_for
from cnntricks.data.store import Splits
from cnntricks.nn.init import lsuv_
from cnntricks.nn.regularize import apply_max_norm, l1_active, penalty
from cnntricks.preprocess.pipeline import load_preprocess
from cnntricks.rundir import (BEST, CONFIG, DATA, FANCY_PCA, MISCLASSIFIED, PREPROCESS, SUMMARY, SWA, TRANSFER,
                              DamagedFileError, RunDirectoryError, archive_attempt, checkpoint_folders, find_checkpoint,
                              hold_run_dir, in_use_error, latest_checkpoint, lock_holder, read_json, read_restarts, write_atomic,
                              write_json)
from cnntricks.train import checkpoint as ckpt
from cnntricks.train import distributed
from cnntricks.transfer import input_preprocess, load_pretrained, plan_transfer, transfer_plugins
from cnntricks.train.budget import Replan, budget_plugins
from cnntricks.train.device import autocast
from cnntricks.train.epoch import EpochProgress
from cnntricks.train.losses import create_loss
from cnntricks.train.interrupt import Interrupted, StopSignals
from cnntricks.train.inference import Predictor, build_model, describe_data, shot_accuracy
from cnntricks.train.optim import apply_decoupled_decay, create_optimizer, set_lr
from cnntricks.train.plugins import EVENTS, History, NullHistory, Progress, Restart, Rollback, Stop
from cnntricks.train.race import choose
from cnntricks.train.resolve import resolve
from cnntricks.train.schedule import create_schedule
from cnntricks.train.habits import habit_plugins
from cnntricks.train.snapshots import snapshot_plugins
from cnntricks.train.stages import stage_plugins

__all__ = ["fit", "Trainer", "TrainerState", "TrainingDiverged", "RunDirectoryError", "Interrupted"]

MISCLASSIFIED_KEPT = 36  # test images kept for the report's grid of confident mistakes
FIT_SAMPLE_BYTES = 64 * 2**20  # data.storage=disk: the preprocessing is fitted on as many images as fit in
# 64 MiB of uint8 (fitting works in float, 4x that): 85,000 at 28x28, 445 at 3x224x224, whose per-channel means
# and stds (22 million pixels each) are within a fraction of a percent of the whole split's


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class TrainerState:
    """The counters and latest numbers, saved in every checkpoint."""
    epoch: int = 0          # epochs completed
    step: int = 0           # optimizer steps taken
    train_seconds: float = 0.0  # time in training steps only (no evaluation, no checkpoint I/O)
    images_seen: int = 0
    best_val_acc: float | None = None
    last_epoch: dict = field(default_factory=dict)
    stop_reason: str | None = None
    first_loss: float | None = None  # the run's first finite loss (fix mode measures explosions by it)
    loop_seconds: float = 0.0  # wall time of the training loop to the last epoch's end: steps, validation, checkpoints
    plan: dict | None = None  # train.time_budget's plan: {"steps": the schedule's last step, "warmup_steps"}


def fit(cfg: Config, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
        callbacks: tuple = (), splits: Splits | None = None) -> dict:
    """Train `cfg` into `run_dir` (or continue it); returns the summary also written to summary.json.

    `callbacks` are plug-ins (train/plugins.py). A `Restart` from one of them starts the run again
    with its config: the abandoned attempt goes to `run_dir/attempts/<n>/`. `splits`: data already
    loaded (the advisor's race trains on parts of a training split) instead of `cfg.data`'s.
    """
    run_dir, world = Path(run_dir), distributed.current()  # under torchrun: rank 0 holds and writes the run
    if resume and world.main:
        open_run_dir(run_dir, resume)  # before the lock creates the folder
    over = world.broadcast(killed_before_first_checkpoint(run_dir) if world.main else None)
    with hold_run_dir(run_dir) if world.main else nullcontext():  # one run per folder; a second stops here
        while True:
            trainer = Trainer(cfg, run_dir, resume=resume, progress=progress and world.main, callbacks=callbacks,
                              splits=splits)
            if over:
                trainer.say(f"{run_dir} holds a run stopped before its first checkpoint: nothing to continue, so it "
                            f"starts over{' (--resume)' if resume else ''}")
                over = False
            try:
                outcome = trainer.run()
            except KeyboardInterrupt as stop:  # Ctrl-C or a signal: the message names this run
                stop.run_dir = run_dir
                raise
            if not isinstance(outcome, Restart):
                return outcome
            if world.main:
                kept = archive_attempt(run_dir, outcome.event)
                trainer.say(f"doctor: fix: {outcome.event['message']} (the abandoned attempt is in {kept})")
            world.barrier()  # the attempt archived before any rank starts the next
            cfg, resume = outcome.config, False


def open_run_dir(run_dir: Path, resume: bool) -> Config | None:
    """The saved config of a run to resume; None for a new run (refused where a run already is)."""
    if (holder := lock_holder(run_dir)) is not None:
        raise in_use_error(run_dir, holder)
    if resume:
        if not (run_dir / CONFIG).exists():
            raise RunDirectoryError(f"--resume {run_dir}: no config.yaml there, so no run to continue; "
                                    f"check the path (runs are in runs/ by default)")
        if (run_dir / SWA).is_file():
            raise RunDirectoryError(f"--resume {run_dir}: it holds averaged weights (cnntricks ensemble --swa) "
                                    f"without an optimizer's state; evaluate, predict or diagnose it, or resume "
                                    f"the run it was averaged from")
        return config_module.load(run_dir / CONFIG)
    if checkpoint_folders(run_dir) or (run_dir / SUMMARY).exists():
        raise RunDirectoryError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                                f"or choose another --run-dir")
    return None


def killed_before_first_checkpoint(run_dir: Path) -> bool:
    """A run started in `run_dir` (config.yaml) and stopped before writing any checkpoint or summary."""
    return (run_dir / CONFIG).is_file() and not checkpoint_folders(run_dir) and not (run_dir / SUMMARY).exists()


class Trainer:
    """One attempt at a run: the live objects plug-ins see, and the loop."""

    def __init__(self, cfg: Config, run_dir: Path, *, resume: bool = False, progress: bool = True,
                 callbacks: tuple = (), splits: Splits | None = None):
        self.run_dir, self.resume, self.progress = Path(run_dir), resume, progress
        self.world = world = distributed.current()  # one process, or this rank of torchrun's (distributed.py)
        if world.main:
            saved = open_run_dir(self.run_dir, resume)
        world.barrier()  # rank 0 has checked the folder (and holds it) before the others read it
        if not world.main:
            saved = config_module.load(self.run_dir / CONFIG) if resume else None
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        self.splits = splits if splits is not None else load_splits(cfg.data, cfg.train.seed)
        self.data = describe_data(self.splits)
        self.resolved = resolve(cfg, self.data, saved, self.run_dir)  # checked here, and nowhere after
        self.cfg = cfg = self.resolved.cfg
        self.device, self.precision = self.resolved.device, self.resolved.precision
        if self.resolved.plan_notice and not resume:  # train.epochs unset on a small split (train/budget.py)
            self.say(f"train.epochs: {self.resolved.plan_notice}")
        self.advice = None  # transfer.strategy=auto: the advisor's measurements and choice (transfer.json)
        if cfg.model.pretrained and cfg.transfer.strategy == "auto":  # probes, table, race (train/race.py): rank 0's
            self.advice = world.broadcast(choose(cfg, self.splits, self.device, self.say) if world.main else None)
            self.say(f"transfer.strategy=auto: {self.advice.reason()} (measured in {self.advice.seconds:.1f} s)")
            self.cfg = cfg = self.advice.apply(cfg)  # config.yaml keeps the choice: a resume needs no advice
        if not resume and world.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.run_dir / CONFIG, config_module.dump(cfg))
        if self.advice is not None and world.main:
            write_json(self.run_dir / TRANSFER, self.advice.to_dict())
        # the augmentation's draws (and in one process the epochs' order too: the same stream as always);
        # under torchrun every rank draws the same order from its own generator and augments with its rank's
        self.generator = torch.Generator(device=self.device).manual_seed(world.augmentation_seed(cfg.train.seed))
        self.order_generator = self.generator if not world.distributed else \
            torch.Generator(device=self.device).manual_seed(cfg.train.seed)
        self.preprocess_notice = ""  # fine-tuning: where the input preprocessing came from
        self.preprocess = self._fit_preprocess()
        if world.main:
            write_json(self.run_dir / DATA, self.data)
        # seed §4's power-of-2 advice when the user chose a size (data.image_size); a source's own size
        # (Fashion-MNIST's 28x28, the default recipe's, measured) is not a choice to warn about every run
        self.model = build_model(cfg, self.data, self.device, warn_size=not resume and cfg.data.image_size is not None)
        if cfg.train.sync_batchnorm and world.distributed:
            if self.device.type != "cuda":
                raise config_module.ConfigError(
                    "train.sync_batchnorm=true needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only); on the CPU each "
                    "process normalizes its share of the batch: leave it false")
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        # fine-tuning (seed §4): frozen stages and per-stage LR scales, before the optimizer sees the parameters
        self.transfer = plan_transfer(cfg.transfer, self.model) if cfg.model.pretrained else None
        self.optimizer = create_optimizer(cfg.optim, self.model, cfg.regularize.penalize,
                                          self.transfer.scales if self.transfer else None)
        self.augment, self.mixing = self._augmentation()
        # the whole split lives on the device (airbench), or (data.storage=disk) stays in its file, read by batch
        images = self.splits.train.images
        self.train_images = images if self.splits.train.on_disk else images.to(self.device)
        self.reader = BatchReader(self.train_images, self.device)
        self.train_labels = self.splits.train.labels.to(self.device)
        # the epochs' order of training images (data/samplers.py: imbalance.sampler, two_stage) and the loss
        self.sampler = sampler_for(cfg.imbalance, self.train_labels, cfg.train.epochs)
        self.criterion = create_loss(cfg, self.splits.train.class_counts().to(self.device))
        smallest = min(self.sampler.epoch_size(e) for e in range(cfg.train.epochs))
        self.batch_size = min(cfg.optim.batch_size, smallest)  # the global batch: each rank takes its share
        if self.batch_size % world.size:
            raise config_module.ConfigError(
                f"optim.batch_size={self.batch_size} does not split evenly over {world.size} processes; choose a "
                f"multiple of {world.size} (the batch size is the global batch, shared by the processes)")
        self.steps_per_epoch = self.sampler.size // self.batch_size  # the epoch now's (two_stage: per stage)
        self.schedule = create_schedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs, self.sampler, self.batch_size,
                                        cfg.imbalance.stage2_lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.state = TrainerState()
        self.epoch: EpochProgress | None = None  # the running epoch (continued from a checkpoint inside it)
        self.signals = StopSignals()  # SIGTERM / Ctrl-C while training: noted, acted on at a step boundary
        self.predictor = Predictor.for_config(cfg, self.model, self.preprocess, self.splits.train.classes,
                                              self.device, self.precision)
        self.history = History(self.run_dir, cfg.train.log_every) if world.main else NullHistory()
        self.plugins = [self.history, *([Progress()] if progress else []), *transfer_plugins(self.transfer),
                        *stage_plugins(cfg, self.sampler), *snapshot_plugins(cfg), *habit_plugins(cfg), *callbacks,
                        *budget_plugins(cfg)]  # the budget last: a rollback or restart asked for at a read comes first
        if not world.main:  # the plug-ins that watch and write run on rank 0; those that act on the model everywhere
            self.plugins = [p for p in self.plugins if getattr(p, "every_rank", False)]
        self.hooks = {event: [getattr(p, event) for p in self.plugins if hasattr(p, event)] for event in EVENTS}
        # Reading a loss back to the host waits for the device. On a CPU that costs nothing, so every
        # step is checked; on CUDA the losses are read every few steps to keep the GPU queue full.
        self.sync_every = 1 if self.device.type == "cpu" else 25
        self.parallel, self.trainable = self.model, None  # what the step calls: DDP's wrapper under torchrun

    def _fit_preprocess(self):
        """The input preprocessing, saved as the run's own: fitted on the training split only, or, when
        fine-tuning, the source's (so a resume does not need the source any more: it reads its own)."""
        if self.resume and self.cfg.model.pretrained and (self.run_dir / PREPROCESS).is_file():
            return load_preprocess(self.run_dir)
        preprocess, self.preprocess_notice = input_preprocess(self.cfg, self.fitting_images())
        if self.world.main:
            preprocess.save(self.run_dir)
        return preprocess

    def fitting_images(self) -> torch.Tensor:
        """What the input preprocessing and fancy PCA are fitted on: the training split, or for a split on
        disk a sample of FIT_SAMPLE_BYTES (all of it, in order, when it fits: the memory run's numbers)."""
        images = self.splits.train.images
        if not self.splits.train.on_disk:
            return images
        count = max(1, FIT_SAMPLE_BYTES // images.row)
        return images.sample(count, torch.Generator().manual_seed(self.cfg.train.seed))

    def _augmentation(self):
        """(label-preserving policy, mixing or None), from the resolved augmentation values."""
        channels, classes = self.data["channels"], len(self.data["classes"])
        if self.resolved.augment_notice and not self.resume:
            warnings.warn(self.resolved.augment_notice)
        fancy_pca = None
        if self.resolved.augment["fancy_pca"]:  # AlexNet: PCA of the whole training set's RGB values, fitted once
            fancy_pca = FancyPCA.fit(self.fitting_images())
            if self.world.main:
                write_json(self.run_dir / FANCY_PCA, fancy_pca.state_dict(), indent=None)
        values = self.resolved.augment
        return (create_policy(self.cfg.augment, channels, fancy_pca, values=values),
                create_mixing(self.cfg.augment, channels, classes, values=values))

    # ---- the run: start, epochs, actions, finish ---------------------------------------------

    def run(self) -> dict | Restart:
        """Train to the end; returns the summary, or the Restart a plug-in asked for."""
        with self.signals, closing(self.reader):
            self.start()
            self.signals.deferring = True
            while self.state.epoch < self.cfg.train.epochs and self.state.stop_reason is None:
                action = self.train_epoch()
                if isinstance(action, Rollback):
                    self.roll_back(action)
                elif isinstance(action, Restart):
                    return action
            self.signals.deferring = False
            if self.signals.received is not None:  # a signal during the last epoch's end: its checkpoint is written
                raise Interrupted(self.signals.received, latest_checkpoint(self.run_dir))
            return self.finish()

    def start(self) -> None:
        last = find_checkpoint(self.run_dir, "resuming from") if self.resume else None
        if last is not None:
            try:
                self.state = self.restore(last)
            except DamagedFileError:
                raise
            except (RuntimeError, ValueError) as err:  # tensor shapes or parameter groups differ
                raise config_module.ConfigError(
                    f"--resume {self.run_dir}: the checkpoint {last.name} does not fit this configuration "
                    f"({str(err).strip().splitlines()[-1].strip()}); when resuming, change training keys "
                    f"(train.epochs, optim.lr, ...) but not the model or the data") from None
            except (KeyError, TypeError, IndexError) as err:  # intact files, but not a state this trainer wrote
                raise DamagedFileError(f"{last}/state.json lacks what a checkpoint holds ({err!r}); "
                                       f"start the run again") from None
            within = " (inside the next one)" if self.epoch is not None else ""
            self.say(f"resuming {self.run_dir} from {last.name}: epoch {self.state.epoch} of "
                     f"{self.cfg.train.epochs} done{within}, step {self.state.step}")
        else:  # a new run, or one killed before its first checkpoint: start over
            self.call("on_restore", {})
            if self.transfer is not None:  # fine-tuning (seed §4): the new head, the rest from the source
                loaded = load_pretrained(self.model, self.cfg.model.pretrained, self.cfg.transfer.strict) \
                    if self.transfer.load else None
                message = f"{loaded.describe() if loaded else 'weights not loaded (the baseline)'}; " \
                          f"transfer.strategy={self.cfg.transfer.strategy}: {self.transfer.describe(self.model)}; " \
                          f"inputs: {self.preprocess_notice or 'fitted here'}"
                self.history.add("event", epoch=0, step=0, event="pretrained", message=message)
                self.say(f"model.pretrained: {message}")
            for event in read_restarts(self.run_dir):  # doctor.mode=fix started this run again: say so first
                self.history.add("event", epoch=0, step=0, **event)  # (a restart event has at_epoch, not epoch)
        loaded = self.transfer is not None and self.transfer.load  # pre-trained weights are not rescaled
        if self.cfg.model.init == "lsuv" and self.state.step == 0 and not loaded:  # LSUV scales each layer on a real batch
            first = torch.randperm(len(self.train_labels),
                                   generator=torch.Generator().manual_seed(self.cfg.train.seed))[:self.batch_size]
            lsuv_(self.model, orthogonalize=False, batch=self.model_input(self.train_images[first.to(self.device)]))
        if self.state.plan is not None:  # a time-budget run resumed: its plan, not a new one
            self.apply_plan(self.state.plan)
        if self.resume and self.world.main:  # written once the checkpoint is known to fit: a refused override changes nothing
            write_atomic(self.run_dir / CONFIG, config_module.dump(self.cfg))
        self.loop_started = time.perf_counter() - self.state.loop_seconds  # the loop's clock, continued on a resume
        self.call("on_fit_start")

    def train_epoch(self) -> Rollback | Restart | None:
        state, reg = self.state, self.cfg.regularize
        self.model.train()
        epoch = self.epoch = self.epoch or EpochProgress.begin(self.order_generator, self.device)  # or a resumed one
        pending = []  # (step, lr, loss on the device) not yet read back
        size = self.sampler.epoch_size(state.epoch)
        self.steps_per_epoch = size // self.batch_size
        self.call("on_epoch_start")
        forward = self.wrapped()  # after on_epoch_start: a fine-tuning plan may have unfrozen a stage
        progress = state.epoch / self.cfg.train.epochs  # what the progressive and two-stage samplers move with
        order = None if self.sampler.name == "none" else lambda generator: self.sampler.order(generator, progress)
        for indices, upcoming in epoch.batch_indices(size, self.batch_size, self.order_generator, order):
            indices = self.world.share(indices)  # this process's part of the global batch (all of it in one)
            upcoming = None if upcoming is None else self.world.share(upcoming)
            images = self.augment(self.reader.read(indices, upcoming), self.generator)
            images = self.model_input(images)
            labels = targets = self.train_labels[indices]
            if self.mixing is not None:  # mixup / cutmix: soft targets (N, classes)
                images, targets = self.mixing(images, labels, self.generator)
            lr = self.schedule.lr(state.step)
            set_lr(self.optimizer, lr)
            self.call("on_step_start")
            with autocast(self.device, self.precision):
                logits = forward(images)
                # Mean over the batch: the seed's "divide the gradients by mini batch size",
                # so the LR need not change with the batch size (seed §4, Sutskever).
                loss = self.criterion(logits, targets, progress)  # imbalance.loss (train/losses.py)
            l1 = reg.l1 if reg.l1 and l1_active(state.step, self.schedule.total_steps, reg.l1_start) else 0.0
            total = loss + penalty(self.model, l1, reg.l2, reg.penalize)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.call("on_after_backward")
            apply_decoupled_decay(self.optimizer)  # SGD with optim.decay=decoupled only
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if reg.max_norm is not None:
                apply_max_norm(self.model, reg.max_norm)
            state.step += 1
            self.call("on_step_end")
            pending.append((state.step, lr, total.detach()))
            epoch.add(loss, logits, labels)
            if len(pending) >= self.sync_every and (action := self.read_losses(pending)):
                return action
            if state.plan is not None and state.step >= state.plan["steps"]:  # train.time_budget's last step
                break
        if pending and (action := self.read_losses(pending)):
            return action
        self.epoch = None
        loss_sum, correct = self.world.sum(torch.stack([epoch.loss_sum.float(), epoch.correct.float()])).tolist()
        seen = epoch.seen * self.world.size
        return self.end_epoch(loss_sum / seen, correct / seen, seen, epoch.seconds, lr)

    def wrapped(self) -> torch.nn.Module:
        """The model as the step calls it: itself in one process; under torchrun DDP's wrapper, made again
        when the set of trainable parameters changed (DDP reduces the gradients of those it was given)."""
        if not self.world.distributed:
            return self.model
        trainable = tuple(p.requires_grad for p in self.model.parameters())
        if trainable != self.trainable:
            from torch.nn.parallel import DistributedDataParallel
            ids = None if self.device.type != "cuda" else [  # this rank's GPU (distributed.setup chose it)
                self.device.index if self.device.index is not None else torch.cuda.current_device()]
            self.parallel, self.trainable = DistributedDataParallel(self.model, device_ids=ids), trainable
        return self.parallel

    def model_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> what the model reads: preprocessed, in the training memory format."""
        images = self.preprocess(images)
        return images.contiguous(memory_format=torch.channels_last) if self.resolved.channels_last else images

    def read_losses(self, pending: list) -> Rollback | None:
        """One host sync for the steps since the last; a non-finite loss ends the run, unless a plug-in
        rolls it back."""
        values = torch.stack([loss for _, _, loss in pending]).float()
        signalled = self.signals.received is not None
        if self.world.distributed:  # the global batch's losses, and a stop signal on any rank, seen by every rank
            numbers = self.world.mean(torch.cat([values.cpu(), torch.tensor([float(signalled)])]))
            values, signalled = numbers[:-1], bool(numbers[-1] > 0)
        losses = [(step, lr, value) for (step, lr, _), value in zip(pending, values.tolist())]
        pending.clear()
        bad = next((i for i, (_, _, value) in enumerate(losses) if not math.isfinite(value)), None)
        losses = losses if bad is None else losses[:bad + 1]  # nothing after the first non-finite loss
        if self.state.first_loss is None:
            self.state.first_loss = next((value for _, _, value in losses if math.isfinite(value)), None)
        action = next((a for hook in self.hooks["on_losses_read"] if (a := hook(self, losses)) is not None), None)
        action = self.world.broadcast(action)  # rank 0's decision, carried out by every rank
        if isinstance(action, Replan):  # train.time_budget: the schedule's new end; the epoch goes on
            action = self.replan(action)
        if action is not None:
            return action
        if bad is not None:
            self.diverge(*losses[-1])
        if signalled:  # SIGTERM or Ctrl-C: a checkpoint at this step, then stop
            self.flush()
            raise Interrupted(self.signals.received or signal.SIGTERM, self.save_checkpoint())
        return None

    def end_epoch(self, train_loss: float, train_acc: float, seen: int, seconds: float, lr: float):
        state, t = self.state, self.cfg.train
        state.train_seconds += seconds
        state.images_seen += seen
        self.world.sync_buffers(self.model)  # BatchNorm's statistics of rank 0 everywhere, then its numbers
        val = self.world.broadcast(self.evaluate(self.splits.val) if self.world.main else None)
        state.epoch += 1
        if val["acc"] is not None and (state.best_val_acc is None or val["acc"] > state.best_val_acc):
            state.best_val_acc = val["acc"]
        state.last_epoch = {"epoch": state.epoch, "train_loss": train_loss, "train_acc": train_acc,
                            "val_loss": val["loss"], "val_acc": val["acc"], "lr": lr, "seconds": seconds,
                            "images_per_second": seen / seconds}
        self.history.add("epoch", **state.last_epoch)
        state.loop_seconds = time.perf_counter() - self.loop_started
        if message := self.schedule.on_epoch_end(val["acc"]):
            self.history.event(self, "lr_divided", message=message)
        if t.target_accuracy is not None and val["acc"] is not None and val["acc"] >= t.target_accuracy:
            state.stop_reason = "target_accuracy"
            self.history.event(self, "target_reached", message=f"validation accuracy {val['acc']:.4f} >= {t.target_accuracy}")
        self.flush()  # the files are complete to this epoch: plug-ins that read them (the doctor) see it
        action = None
        for hook in self.hooks["on_epoch_end"]:
            action = hook(self)
            if isinstance(action, Stop):
                state.stop_reason, action = action.reason, None
            elif action is not None:
                break
        # rank 0's decisions, carried out by every rank
        action, state.stop_reason = self.world.broadcast((action, state.stop_reason))
        if action is not None:
            return action
        if state.epoch % t.checkpoint_every == 0 or state.epoch == t.epochs or state.stop_reason is not None:
            self.save_checkpoint()
        else:
            self.flush()
        return None

    def replan(self, action: Replan) -> None:
        """train.time_budget (train/budget.py): the schedule now ends at the action's step, where training stops."""
        self.state.plan = {"steps": action.total_steps, "warmup_steps": action.warmup_steps}
        self.apply_plan(self.state.plan)
        self.history.event(self, "planned", message=action.message)
        self.say(action.message)
        if self.world.main:  # config.yaml says how many epochs the run has (the doctor reads it)
            write_atomic(self.run_dir / CONFIG, config_module.dump(self.cfg))

    def apply_plan(self, plan: dict) -> None:
        self.schedule.plan(plan["steps"], plan["warmup_steps"])
        self.cfg.train.epochs = math.ceil(plan["steps"] / self.steps_per_epoch)  # the last one cut at the plan's end

    def roll_back(self, action: Rollback) -> None:
        """Back to the action's checkpoint (history and statistics cut back to it), LR x its factor."""
        before = self.schedule.plateau_scale  # the LR scale that failed
        plan = self.state.plan  # a time budget's plan stays: the clock did not go back
        self.state = self.restore(action.checkpoint)
        self.state.plan = plan
        self.schedule.plateau_scale = min(before, self.schedule.plateau_scale) * action.lr_factor
        self.call("on_rolled_back", action, before, self.schedule.plateau_scale)
        self.flush()

    def diverge(self, step: int, lr: float, value: float):
        last = latest_checkpoint(self.run_dir)
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        message = (f"loss is {value} at step {step} (epoch {self.state.epoch + 1}); {where}. "
                   f"Lower optim.lr (seed §7: a 'very high' learning rate makes the loss explode) "
                   f"and continue with --resume, or start again.")
        self.history.add("event", epoch=self.state.epoch + 1, step=step, event="nonfinite", message=message)
        self.flush()  # the statistics up to the fault: evidence for the doctor
        self.call("on_fit_end", None)
        raise TrainingDiverged(message)

    def finish(self) -> dict:
        """The test split's numbers and summary.json (rank 0's, which every rank returns)."""
        return self.world.broadcast(self.summarize() if self.world.main else None)

    def summarize(self) -> dict:
        state, splits = self.state, self.splits
        kept = self.run_dir / BEST
        best = read_json(kept / "state.json") if self.cfg.train.keep != "last" and kept.is_dir() else None
        if best is not None and self.cfg.train.keep == "best":  # the run ends with the best epoch's weights
            ckpt.load_model_weights(self.model, kept)
        test = {"acc": None, "loss": None, "balanced_acc": None, "macro_f1": None, "per_class": [], "confusion": []}
        if splits.test is not None and len(splits.test):
            test = self.evaluate(splits.test, keep_logits=True)
            save_misclassified(self.run_dir / MISCLASSIFIED, splits.test, test.pop("logits"))
        summary = {
            "test_acc": test["acc"], "test_loss": test["loss"],
            "test_balanced_acc": test["balanced_acc"], "test_macro_f1": test["macro_f1"],
            "test_shot_acc": shot_accuracy(test["per_class"], self.data["train_counts"]) if test["per_class"] else None,
            "best_val_acc": state.best_val_acc, "val_acc": state.last_epoch.get("val_acc"),
            "train_acc": state.last_epoch.get("train_acc"),
            "train_seconds": state.train_seconds, "epochs": state.epoch, "steps": state.step,
            "loop_seconds": state.loop_seconds, "time_budget": self.cfg.train.time_budget,
            "images_per_second": state.images_seen / max(state.train_seconds, 1e-9),
            # data.storage=disk: seconds the steps waited for a batch read from disk (since this process started)
            "data_wait_seconds": self.reader.waited if self.reader.on_disk else None,
            "stop_reason": state.stop_reason or "completed",
            "device": str(self.device), "precision": self.precision,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "classes": splits.train.classes, "per_class": test["per_class"], "confusion": test["confusion"],
            "restarts": [{k: event.get(k) for k in ("attempt", "ids", "before", "after", "at_epoch", "message")}
                         for event in read_restarts(self.run_dir)],  # doctor.mode=fix: attempts/<n>/
            "split_sizes": {"train": len(splits.train), "val": len(splits.val),
                            "test": len(splits.test) if splits.test is not None else 0},
            "train_counts": splits.train.class_counts().tolist(),  # per class: data.imbalance shows here
            "transfer": self.transfer_summary(),
            "test_weights": "best" if best is not None and self.cfg.train.keep == "best" else "last",
            "best_epoch": best["epoch"] if best is not None else None,
        }
        write_json(self.run_dir / SUMMARY, summary)
        self.call("on_fit_end", summary)
        return summary

    def transfer_summary(self) -> dict | None:
        """Fine-tuning: the weights, the strategy, and the advisor's measurements when it chose."""
        if not self.cfg.model.pretrained:
            return None
        advice = read_json(self.run_dir / TRANSFER) if (self.run_dir / TRANSFER).is_file() else None
        return {"pretrained": self.cfg.model.pretrained, "strategy": self.cfg.transfer.strategy, "advice": advice}

    # ---- services for plug-ins -----------------------------------------------------------------

    def call(self, event: str, *args) -> None:
        for hook in self.hooks[event]:
            hook(self, *args)

    def evaluate(self, store, keep_logits: bool = False) -> dict:
        """{"loss", "acc", "per_class", "confusion"} of the model now on a uint8 store, with the run's TTA."""
        return self.predictor.evaluate(store, keep_logits)

    def say(self, message: str) -> None:
        """A line on the terminal (not with progress=False)."""
        if self.progress:
            Progress.say(message)

    @property
    def grad_scale(self) -> float | torch.Tensor:
        """The GradScaler's scale (fp16), as a device tensor: reading it would wait for the device."""
        return self.scaler._scale if self.scaler.is_enabled() else 1.0

    def flush(self) -> None:
        """Every plug-in's buffered records into the run directory."""
        for plugin in self.plugins:
            getattr(plugin, "flush", lambda: None)()

    def save_checkpoint(self) -> Path | None:
        """Checkpoint the run now (epoch `state.epoch`), plug-in state included; under torchrun every rank
        calls it (each rank's augmentation generator goes in), rank 0 writes it and returns its folder."""
        generators = None
        if self.world.distributed and self.state.step == 0:  # every rank's augmentation still at its seed: no need
            generators = [torch.Generator(device=self.device).manual_seed(
                distributed.World(rank, self.world.size).augmentation_seed(self.cfg.train.seed)).get_state()
                for rank in range(self.world.size)]  # to ask (the fix-mode doctor's first checkpoint)
        elif self.world.distributed:
            generators = self.world.gather(self.generator.get_state())
        if not self.world.main:
            return None
        extra = {}
        for hook in self.hooks["on_checkpoint"]:  # the history first: its lines are on disk before the checkpoint
            extra.update(hook(self))
        rng = {"generator": self.order_generator.get_state(), "torch": torch.get_rng_state()}
        if generators is not None:  # the epochs' order above; each rank's augmentation here
            rng["rank_generators"] = torch.stack(generators)
        if self.epoch is not None:  # inside an epoch: where it stands, to continue it bit for bit
            rng["epoch_generator"] = self.epoch.start_state
            extra["mid_epoch"] = self.epoch.state_dict()
        return ckpt.save_checkpoint(self.run_dir, self.state.epoch, self.model, self.optimizer, rng,
                                    {"schedule": self.schedule.state_dict(), **extra,
                                     "scaler": self.scaler.state_dict(), "trainer": self.state.__dict__},
                                    step=self.state.step if self.epoch is not None else None,
                                    keep=self.cfg.train.keep_checkpoints)

    def restore(self, folder: Path) -> TrainerState:
        """Everything back to checkpoint `folder`: weights, optimizer, RNG, schedule, plug-ins and their files."""
        saved, rng = ckpt.load_checkpoint(folder, self.model, self.optimizer)
        self.order_generator.set_state(rng["generator"])
        ranks = rng.get("rank_generators")
        if self.world.distributed and ranks is not None and len(ranks) == self.world.size:
            # each rank's augmentation goes on where it stood (a copy: set_state reads a row view's storage
            # from its start, and crashes on torch 2.13)
            self.generator.set_state(ranks[self.world.rank].clone())
        elif self.world.distributed:  # a run resumed with another number of processes: fresh augmentation draws
            self.generator.manual_seed(self.world.augmentation_seed(self.cfg.train.seed) + saved["trainer"]["step"])
            if self.world.main:
                self.say(f"{folder.name} was written by {len(ranks) if ranks is not None else 1} process(es), this "
                         f"run has {self.world.size}: the augmentation draws start afresh (the order of the images "
                         f"and everything else go on as saved)")
        torch.set_rng_state(rng["torch"])
        self.schedule.load_state_dict(saved["schedule"])
        if saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epoch = (EpochProgress.from_state(saved["mid_epoch"], rng["epoch_generator"], self.device)
                      if saved.get("mid_epoch") else None)
        self.call("on_restore", saved)
        return TrainerState(**saved["trainer"])


def save_misclassified(path: Path, store, logits: torch.Tensor) -> None:
    """The most confident test mistakes (images uint8, labels, predicted, confidence), as .npz."""
    import numpy as np
    probabilities = logits.float().softmax(1).cpu()
    confidence, predicted = probabilities.max(1)
    labels = store.labels.cpu()
    wrong = torch.nonzero(predicted != labels).flatten()
    chosen = wrong[confidence[wrong].argsort(descending=True)[:MISCLASSIFIED_KEPT]]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=store.images[chosen].cpu().numpy(), labels=labels[chosen].numpy(),
                        predicted=predicted[chosen].numpy(), confidence=confidence[chosen].numpy())
    write_atomic(path, buffer.getvalue())
