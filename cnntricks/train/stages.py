"""The loop plug-in of imbalance.two_stage (the seed's two-stage fine-tuning; the order of the images is
data/samplers.py's `two_stage`, the LR per stage train/schedule.py's `StagedSchedule`): it says in the
history when the second stage starts and, with imbalance.keep_head_rows, keeps the head classes'
classifier rows as the first stage left them (written back after every step of the second stage, so
neither the gradient nor the weight decay moves them)."""
from __future__ import annotations

import torch


class TwoStage:
    every_rank = True  # it changes the model: every process of a torchrun run applies it (plugins.py)

    def __init__(self, head: list[int], stage1_epochs: int, keep_rows: bool):
        self.head, self.stage1, self.keep_rows = head, stage1_epochs, keep_rows
        self.rows: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_epoch_start(self, trainer) -> None:
        epoch = trainer.state.epoch
        if epoch < self.stage1:
            return
        layer = trainer.model.head
        if self.keep_rows and self.rows is None:  # the second stage's start, or a resume inside it
            index = torch.tensor(self.head, device=layer.weight.device)
            self.index = index
            self.rows = (layer.weight.detach()[index].clone(), layer.bias.detach()[index].clone())
        if epoch == self.stage1 and trainer.epoch is not None and trainer.epoch.batches == 0:
            tail = trainer.sampler.epoch_size(epoch)
            trainer.history.event(trainer, "stage", message=(
                f"two_stage: stage 2 of 2 from epoch {epoch + 1}: the tail classes with a replayed share of the "
                f"head's ({tail} images an epoch), LR x{trainer.cfg.imbalance.stage2_lr:g}"
                + (", the head classes' classifier rows kept" if self.keep_rows else "")))

    def on_step_end(self, trainer) -> None:
        if self.rows is not None:
            layer = trainer.model.head
            with torch.no_grad():
                layer.weight[self.index] = self.rows[0]
                layer.bias[self.index] = self.rows[1]


def stage_plugins(cfg, sampler) -> list:
    """The plug-ins imbalance.two_stage needs (none otherwise)."""
    if not sampler.stages:
        return []
    return [TwoStage(sampler.head, sampler.stages[0][0], cfg.imbalance.keep_head_rows)]
