"""Which layers a fine-tuned model trains, and how fast (seed §4's table; `transfer.strategy`).

The groups come from the model's own stages (every conv net of the zoo keeps them in
`model.stages`; the MLP's hidden layers likewise), never from a hand-written splitter: the head
is the top group, then the stages from the last to the first.
  all      every layer trains; the head at optim.lr, the top stage at lr_scale x that, each lower
           stage at lr_decay x the one above (discriminative LRs: lower layers hold the general
           features and should move least; Yosinski et al. 2014, Howard & Ruder 2018)
  top      the head at optim.lr and the `stages` top stages at lr_scale x it; the rest frozen
           (seed: similar data, "fine-tune a few top layers ... with a small learning rate")
  scratch  every layer at optim.lr: the baseline a fine-tuning strategy must beat
Frozen layers get `requires_grad=False` (so the optimizer holds no state for them), and their
batch-norm layers stay in eval mode, so their running statistics do not move: `Freeze` puts them
back in eval mode at every epoch start, after the loop's `model.train()` (a common fine-tuning bug
is to freeze the weights but let the statistics drift on the new data).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from cnntricks.config import ConfigError, TransferConfig
from cnntricks.registry import Registry

STRATEGIES = Registry("transfer strategy")


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """The model's groups, top first: the head, then its stages (the MLP: its hidden layers) from the
    last to the first."""
    if hasattr(model, "stages"):
        stages = list(model.stages.children())
    else:
        stages = [m for m in getattr(model, "layers", []) if isinstance(m, nn.Linear)]
    if not stages or not hasattr(model, "head"):
        raise ConfigError(f"transfer.strategy: {type(model).__name__} has no stages and head to fine-tune by")
    return [model.head, *reversed(stages)]


@dataclass
class Plan:
    """LR scale per trainable group (by parameter id) and the frozen modules."""
    scales: dict[int, float] = field(default_factory=dict)
    frozen: list[nn.Module] = field(default_factory=list)

    def describe(self, model: nn.Module) -> str:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        return f"{trainable} of {total} parameters train"


def _scaled(groups: list[nn.Module], scales: list[float | None]) -> Plan:
    plan = Plan()
    for group, scale in zip(groups, scales):
        if scale is None:
            group.requires_grad_(False)
            plan.frozen.append(group)
        else:
            plan.scales.update({id(p): scale for p in group.parameters()})
    return plan


@STRATEGIES.register("all")
def train_all(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    return _scaled(groups, [1.0] + [cfg.lr_scale * cfg.lr_decay ** k for k in range(len(groups) - 1)])


@STRATEGIES.register("top")
def train_top(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    if not 0 <= cfg.stages <= len(groups) - 1:
        raise ConfigError(f"transfer.stages={cfg.stages}: the model has {len(groups) - 1} stages; choose 0 (the head "
                          f"alone) to {len(groups) - 1}")
    return _scaled(groups, [1.0] + [cfg.lr_scale if k < cfg.stages else None for k in range(len(groups) - 1)])


@STRATEGIES.register("scratch")
def train_scratch(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    return _scaled(groups, [1.0] * len(groups))


def plan_transfer(cfg: TransferConfig, model: nn.Module) -> Plan:
    """Freeze and scale `model` in place by cfg.strategy; returns the plan (scales for the optimizer)."""
    return STRATEGIES.get(cfg.strategy)(cfg, layer_groups(model))


class Freeze:
    """A loop plug-in: the frozen groups' batch-norm (and dropout) layers in eval mode while training."""

    def __init__(self, frozen: list[nn.Module]):
        self.frozen = frozen

    def on_epoch_start(self, trainer) -> None:
        for module in self.frozen:
            module.eval()
