"""Which layers a fine-tuned model trains, and how fast (seed §4's table; `transfer.strategy`).

The groups come from the model's own stages (every conv net of the zoo keeps them in
`model.stages`; the MLP's hidden layers likewise), never from a hand-written splitter: the head
is the top group, then the stages from the last to the first.
  all      every layer trains; the head at optim.lr, the top stage at lr_scale x that, each lower
           stage at lr_decay x the one above (discriminative LRs: lower layers hold the general
           features and should move least; Yosinski et al. 2014, Howard & Ruder 2018)
  top      the head at optim.lr and the `stages` top stages at lr_scale x it; the rest frozen
           (seed: similar data, "fine-tune a few top layers ... with a small learning rate")
  linear   the network frozen; the head is a logistic regression fitted once on the training
           images' features (computed once, no augmentation, no epochs: seconds); seed: similar
           and small data, "train a linear classifier on the CNN codes"
  linear@stageK  the same on the pooled features of stage K (0 = nearest the image, as `cnntricks
           probe` numbers them): the stages above K are removed from the model; seed: different and
           small data, "train the SVM classifier on activations/features from somewhere earlier"
  lp-ft    linear, then every layer as `all` (Kumar et al. 2022: a fitted head does not distort the
           features the way a random head's large gradients do)
  gradual  as `all`, but only the head trains in the first epoch, and each further epoch one more
           stage from the top (Howard & Ruder 2018, ULMFiT's gradual unfreezing)
  scratch  the weights are not loaded: the model starts at random and every layer trains at optim.lr,
           with the rest of the run as it is (the source's input normalization too): the baseline a
           fine-tuning strategy must beat
Frozen layers get `requires_grad=False` (so the optimizer holds no state for them), and their
batch-norm layers stay in eval mode, so their running statistics do not move: `Freeze` puts them
back in eval mode at every epoch start, after the loop's `model.train()` (a common fine-tuning bug
is to freeze the weights but let the statistics drift on the new data). `auto` is not a strategy
but the advisor's choice of one (transfer/advisor.py), made before the model is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
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
    """LR scale per trainable group (by parameter id), the frozen modules, and what the head starts as."""
    scales: dict[int, float] = field(default_factory=dict)
    frozen: list[nn.Module] = field(default_factory=list)  # frozen for the whole run
    unfreeze: list[nn.Module] = field(default_factory=list)  # gradual: frozen until epoch k + 1 (k = index; top first)
    load: bool = True          # copy the source's weights (scratch: no, the random start is the baseline)
    fit_head: bool = False     # the head starts as a linear classifier fitted on the frozen features
    head_only: bool = False    # ... and that classifier is the whole training (linear, linear@stageK)

    def describe(self, model: nn.Module) -> str:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        text = f"{trainable} of {total} parameters train"
        if self.unfreeze:
            text = f"the head trains first, one more stage each epoch ({len(self.unfreeze)} stages)"
        if self.fit_head:
            text += "; the head starts as a logistic regression on the frozen features" + \
                    (", and stays so (no epochs)" if self.head_only else "")
        return text

    def frozen_at(self, epoch: int) -> list[nn.Module]:
        """The modules frozen while epoch `epoch` (0-based) trains."""
        return self.frozen + self.unfreeze[epoch:]


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
    plan = _scaled(groups, [1.0] * len(groups))
    plan.load = False
    return plan


@STRATEGIES.register("linear")
def train_linear(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    """The head alone, fitted once (linear@stageK: the model is cut above stage K first)."""
    plan = _scaled(groups, [1.0] + [None] * (len(groups) - 1))
    plan.fit_head = plan.head_only = True
    return plan


@STRATEGIES.register("lp-ft")
def train_lp_ft(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    plan = train_all(cfg, groups)
    plan.fit_head = True
    return plan


@STRATEGIES.register("gradual")
def train_gradual(cfg: TransferConfig, groups: list[nn.Module]) -> Plan:
    plan = train_all(cfg, groups)  # every group in the optimizer from the start; Freeze switches them on
    plan.unfreeze = groups[1:]
    return plan


LINEAR_AT = re.compile(r"linear@stage(\d+)")


def parse_strategy(strategy: str) -> tuple[str, int | None]:
    """("linear", K) for "linear@stageK", else (strategy, None)."""
    match = LINEAR_AT.fullmatch(strategy)
    return ("linear", int(match.group(1))) if match else (strategy, None)


def plan_transfer(cfg: TransferConfig, model: nn.Module) -> Plan:
    """Freeze and scale `model` in place by cfg.strategy; returns the plan (scales for the optimizer)."""
    name, _ = parse_strategy(cfg.strategy)
    if name == "auto":
        raise ConfigError("transfer.strategy=auto is resolved by the advisor before the model is built "
                          "(transfer.advisor.advise); pass the strategy it chose")
    return STRATEGIES.get(name)(cfg, layer_groups(model))


def stage_count(model: nn.Module) -> int:
    return len(layer_groups(model)) - 1


def _replace(model: nn.Module, old: nn.Module, new: nn.Module) -> str:
    """Put `new` where `old` is in `model`; returns old's name."""
    name = next(n for n, m in model.named_modules() if m is old)
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return name


@torch.no_grad()
def cut_above_stage(model: nn.Module, stage: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """linear@stageK: the stages above `stage` become identities and the head reads stage K's pooled
    features; `model.cut_away` lists the state-dict prefixes removed (weights files still hold them)."""
    stages = list(reversed(layer_groups(model)[1:]))  # bottom first
    if not hasattr(model, "reset_head") or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        raise ConfigError(f"transfer.strategy=linear@stage{stage}: {type(model).__name__} has no conv stages "
                          f"to cut; use transfer.strategy=linear")
    if not 0 <= stage < len(stages):
        raise ConfigError(f"transfer.strategy=linear@stage{stage}: the model has stages 0 to {len(stages) - 1}")
    model.cut_away = [_replace(model, above, nn.Identity()) + "." for above in stages[stage + 1:]]
    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    features = model.forward_features(torch.zeros(1, *input_shape, device=parameter.device, dtype=parameter.dtype))
    model.train(was_training)
    model.num_features = features.shape[1]
    model.reset_head(model.head.out_features)
    return model


class Freeze:
    """A loop plug-in: the frozen groups' batch-norm (and dropout) layers in eval mode while training;
    with gradual unfreezing, which groups are frozen changes at each epoch start."""

    every_rank = True  # it changes the model: every process of a torchrun run applies it (plugins.py)

    def __init__(self, plan: Plan):
        self.plan = plan

    def on_epoch_start(self, trainer) -> None:
        frozen = self.plan.frozen_at(trainer.state.epoch)
        for module in self.plan.unfreeze:  # trainable from its epoch on (requires_grad: its grads exist)
            module.requires_grad_(not any(module is f for f in frozen))
        for module in frozen:
            module.eval()
