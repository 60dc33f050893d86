"""Configuration: one typed dataclass per stage, YAML in and out, `section.key=value` overrides.

Every default carries its unit and its source in a trailing comment; `cnntricks config` reads
those comments back (`describe`), so the help a user sees is the line a developer maintains.
Unknown keys and bad values are errors that name the key, the allowed values and the closest
match.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from cnntricks.registry import closest


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message says which and why."""


@dataclass
class DataConfig:
    source: Literal["fashion-mnist", "image-folder", "npz", "digits", "synthetic", "letters"] = "fashion-mnist"  # where the images come from
    root: str | None = None  # folder (fashion-mnist, image-folder), .npz file, or folder of font files (letters); None = the source's default place
    image_size: int | None = None  # pixels per side after resizing (centre crop to square, then bilinear); None = the source's own size
    channels: int | None = None  # 1 (gray) or 3 (RGB); None = what the source has (image-folder: RGB)
    val_fraction: float = 0.1  # share of the training split held out (stratified, seeded) for every decision
    test_fraction: float = 0.2  # share carved out as the test split when the source has none (digits, one-level image folders, npz without x_test)
    folds: int | None = None  # k-fold cross-validation: the training split dealt into k stratified folds (seeded like the validation split), fold data.fold validates and the rest trains; data.val_fraction is then unused; None = one validation split of data.val_fraction
    fold: int = 0  # which of data.folds validates (0 to folds - 1)
    split_seed: int | None = None  # seeds the validation split, data.subset and data.imbalance; None = train.seed (an ensemble's members share one: cnntricks ensemble --train sets it)
    subset: int | None = None  # keep N training images (stratified) for quick runs; None = all
    imbalance: float | None = None  # long-tailed training split: the largest class keeps ρ times the images of the smallest (Cui et al. 2019; 100 = CIFAR-10-LT's hardest); validation and test stay as they were; None = as the source gives it
    imbalance_profile: Literal["exp", "step"] = "exp"  # exp: class i keeps n·ρ^(-i/(C-1)) images; step: the first half of the classes n, the rest n/ρ (Cao et al. 2019)
    storage: Literal["auto", "memory", "disk"] = "auto"  # where the decoded training images live: memory (one uint8 tensor, the fast default), disk (image-folder at a data.image_size: a file in the cache read a batch at a time by a background thread; for data larger than memory; built once by `cnntricks cache` or the first run), auto = disk when an image folder's decoded images would take over half the available memory, else memory
    strict: bool = False  # corrupt or unreadable image files are an error instead of skipped with a count
    download: bool = True  # fetch missing fashion-mnist files and check their SHA-256
    cache_dir: str | None = None  # downloads and decoded images are cached here; None = $XDG_CACHE_HOME/cnntricks or ~/.cache/cnntricks


@dataclass
class AugmentConfig:
    policy: Literal["none", "flip", "standard", "seed", "heavy"] = "flip"  # preset (seed §1): none; flip; standard = flip + crop; seed = the seed's random mix of every operation; heavy = more of it, plus erasing and cutmix. flip measured best for the short default run (README)
    # Every key below left at null takes the policy's value; a value set here overrides it.
    p_flip: float | None = None  # probability of a horizontal flip (flip, standard, seed: 0.5)
    crop_padding: int | None = None  # random crop after zero padding by this many pixels (standard: 2)
    translate: float | None = None  # max shift, as a fraction of the image size (seed: 0.1)
    p_translate: float | None = None  # probability of a translation (seed: 0.5)
    rotate: float | None = None  # max rotation in degrees (seed: 15)
    p_rotate: float | None = None  # probability of a rotation (seed: 0.5)
    scale: float | None = None  # zoom in [1-s, 1+s], a random-scale crop (seed: 0.1)
    p_scale: float | None = None  # probability of a zoom (seed: 0.5)
    stretch: float | None = None  # max log ratio of the x and y scales (seed: 0.1)
    p_stretch: float | None = None  # probability of a stretch (seed: 0.3)
    shear: float | None = None  # max shear in degrees (seed: 10)
    p_shear: float | None = None  # probability of a shear (seed: 0.3)
    lens: float | None = None  # max |k| of radial lens distortion r(1 + k·r²), barrel or pincushion (seed: 0.05)
    p_lens: float | None = None  # probability of a lens distortion (seed: 0.3)
    fill: Literal["zeros", "reflect", "edge"] = "zeros"  # what warps show outside the image
    p_hsv: float | None = None  # probability of Wei's HSV recipe: S,V to a power in [0.25,4], x[0.7,1.4], +[-0.1,0.1]; H +[-0.1,0.1] (seed: 0.5; RGB only)
    p_jitter: float | None = None  # probability of brightness/contrast/saturation/hue jitter (heavy: 0.5; RGB only)
    jitter: float | None = None  # jitter strength: factors in [1-j, 1+j], hue shift up to j/4 (heavy: 0.4)
    fancy_pca: float | None = None  # std of AlexNet's fancy-PCA alphas (seed §1: 0.1; 0 = off; RGB only)
    p_erase: float | None = None  # probability of random erasing, one rectangle of 2-33% of the image (heavy: 0.5)
    mixup: float | None = None  # mixup Beta(α, α); 0 = off (beyond the seed)
    cutmix: float | None = None  # cutmix Beta(α, α); 0 = off (heavy: 1.0; beyond the seed)


@dataclass
class PreprocessConfig:
    normalize: Literal["none", "center", "standardize", "minmax"] = "standardize"  # per-channel statistics fitted on the training split only (seed §2); minmax maps the training min/max to -1/1
    whiten: Literal["none", "pca", "zca", "patch"] = "none"  # after normalizing: pca = the seed's Xrot / sqrt(S + eps) on the top `components` (vectors: model.name=mlp); zca = dense ZCA of the whole image (C·H·W <= 8192); patch = ZCA of patches as a frozen convolution, any size (seed §2)
    components: int | None = None  # pca: keep the top k components (seed §2's reduction); None = all C·H·W
    eps: float = 1e-5  # seed §2: "Xwhite = Xrot / np.sqrt(S + 1e-5)"; larger values damp the noise whitening amplifies
    patch_size: int = 3  # patch whitening: side of the patches (odd)


@dataclass
class ModelConfig:
    name: Literal["fastnet", "vgg", "resnet", "mlp", "resnet18", "resnet34", "resnet50"] = "fastnet"  # model zoo entry; all share forward_features / forward_head / reset_head; resnet18/34/50 are torchvision's ImageNet ResNets (their keys, for their published weights: model.pretrained=resnet18; width and depth do not apply)
    width: int = 16  # channels of the first stage, doubled per stage (conv nets); mlp: width·8 units per hidden layer
    depth: int = 3  # stages of the conv nets (each halves the resolution) or hidden layers of the mlp
    activation: Literal["relu", "leaky_relu", "prelu", "rrelu", "maxout", "elu", "gelu", "silu", "tanh", "sigmoid"] = "relu"  # non-linearity after each conv / linear layer (seed §5); rrelu as the seed defines it (slope 1/U(3, 8) in training, 2/11 in evaluation); maxout = max of model.maxout_pieces linear pieces (slides)
    init: Literal["auto", "zeros", "constant", "small_normal", "small_uniform", "calibrated", "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "orthogonal", "lsuv"] = "auto"  # weight initialization (seed §3); auto = he_normal for the ReLU family, calibrated (1/sqrt(n)) for tanh, sigmoid and maxout; the classifier layer always starts at 0.001·N(0,1)
    negative_slope: float = 0.01  # leaky_relu's slope for x < 0; the seed's table writes a = 1/slope: a = 100 is 0.01, a = 5.5 is 0.18
    prelu: Literal["channel", "shared"] = "channel"  # prelu: one learned slope per channel, or one per layer (both start at 0.25)
    maxout_pieces: int = 2  # maxout: linear pieces per unit (each layer computes pieces x its width)
    norm: Literal["batch", "none"] = "batch"  # normalization after each conv
    dropout: float = 0.0  # inverted dropout before the classifier (and between the mlp's hidden layers); the seed's fully connected default is 0.5 (§6)
    spatial_dropout: float = 0.0  # conv nets: drop whole feature maps (Dropout2d) after each stage
    pretrained: str | None = None  # weights to start from (seed §4, fine-tuning): a cnntricks run directory, a .safetensors file, a .pth/.pt state dict, or a published name (resnet18, resnet34, resnet50: ImageNet weights, downloaded once into the cache); the head is new


@dataclass
class OptimConfig:
    name: Literal["sgd", "adamw"] = "sgd"  # sgd = SGD with momentum; adamw = Adam with decoupled weight decay
    lr: float = 0.1  # seed §4: "a typical value of LR in the beginning of your training is 0.1"
    momentum: float = 0.9  # SGD momentum (AdamW: beta1)
    nesterov: bool = True  # Nesterov momentum for SGD
    weight_decay: float = 5e-4  # weight decay of conv / linear weights (not biases or norm layers, unless regularize.penalize=all); see decay
    decay: Literal["auto", "coupled", "decoupled"] = "auto"  # coupled = λ·w added to the gradient (torch's SGD: L2's gradient, through momentum); decoupled = w ← w - lr·λ·w after each step (Loshchilov & Hutter; AdamW); auto = coupled for sgd, decoupled for adamw
    batch_size: int = 128  # images per step; the loss is a mean over the batch (seed §4, Sutskever)
    label_smoothing: float = 0.1  # cross-entropy target smoothing; 0 = plain one-hot targets


@dataclass
class ScheduleConfig:
    name: Literal["onecycle", "plateau", "step", "cosine", "constant", "snapshot"] = "cosine"  # learning-rate schedule; cosine reached 93% on Fashion-MNIST fastest here (README); snapshot = cosine restarted schedule.cycles times, the model kept at each cycle's end (seed §8: a snapshot ensemble)
    warmup_epochs: float = 1.0  # linear warm-up from 0 over this many epochs (plateau, step, cosine, constant)
    peak_fraction: float = 0.25  # onecycle: share of training spent rising linearly to the peak LR
    final_fraction: float = 0.0  # onecycle / cosine: LR at the end as a share of the peak
    plateau_divide: float = 2.0  # seed §4: "divide the LR by 2 (or by 5)" when validation stops improving
    plateau_patience: int = 2  # epochs without validation improvement before dividing
    min_lr: float = 1e-5  # plateau: never divide below this
    cycles: int = 5  # snapshot: cosine cycles in train.epochs (a multiple of it); one snapshot per cycle (Huang et al. 2017: M = 5 or 6)
    step_epochs: int = 10  # step: divide every this many epochs
    step_divide: float = 10.0  # step: divide the LR by this


@dataclass
class RegularizeConfig:
    l2: float = 0.0  # penalty ½·λ·‖w‖² added to the loss (seed §6); its gradient is λ·w
    l1: float = 0.0  # penalty λ·‖w‖₁ added to the loss (seed §6); l1 and l2 together = elastic net
    l1_start: float = 0.0  # share of training (0-1) before l1 switches on; 0.8 = "L2 + L1 towards the end of training" (slides)
    max_norm: float | None = None  # project each unit's incoming weights to ‖w‖₂ <= c after every step; seed §6: c of 3 or 4
    penalize: Literal["weights", "all"] = "weights"  # what l1, l2 and weight decay act on: conv / linear weights only, or biases and norm parameters too


DEFAULT_EPOCHS = 12  # train.epochs unset: the default recipe's epochs (measured on Fashion-MNIST's 54,000 images)


@dataclass
class TrainConfig:
    epochs: int | None = None  # passes over the training split; None = planned: 12 (the default recipe's, measured on Fashion-MNIST), or more where a small training split would give fewer than train.min_steps steps
    min_steps: int = 1000  # train.epochs unset: the run takes at least this many steps, so a small data set trains as long as it needs (README: measured on four data sets); the warm-up stays its share of the run
    time_budget: float | None = None  # seconds of training (the loop: steps, validation, checkpoints): the speed is measured on the first steps and the schedule planned to end on time, finished; None = train.epochs
    seed: int = 0  # seeds the model, the shuffling, the augmentation and the split
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto = CUDA when present, else CPU
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"  # auto = bf16 autocast on CUDA or a CPU with AMX/AVX-512-BF16, else fp32
    channels_last: bool = True  # memory format for conv nets (faster with oneDNN and cuDNN)
    threads: int | None = None  # CPU threads for torch; None = torch's default
    processes: int = 1  # data-parallel processes on this machine (PyTorch DDP: gloo on CPU, NCCL on CUDA), started by cnntricks under torch.distributed.run; optim.batch_size stays the global batch. Under torchrun this is ignored: torchrun's --nproc_per_node (and --nnodes) say how many
    sync_batchnorm: bool = False  # with several processes: BatchNorm statistics over the whole global batch (SyncBatchNorm, CUDA only) instead of each process's share
    target_accuracy: float | None = None  # stop once validation accuracy reaches this (0-1)
    patience: int | None = None  # early stopping: stop once validation accuracy has not improved for this many epochs; None = never
    tensorboard: bool = False  # also write TensorBoard event files in the run directory (batch and epoch scalars, weight and activation histograms, hyper-parameters, the report's figures): tensorboard --logdir runs/
    keep: Literal["last", "best", "both"] = "last"  # the model a run ends with: last = the last epoch's; best = the best validation epoch's (kept in best/, scored on the test split, the default of evaluate and predict); both = best/ kept beside the last, which is scored
    tta: bool = True  # flip test-time augmentation: average logits of the image and its mirror
    eval_batch_size: int = 1024  # images per step when evaluating
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always writes one)
    keep_checkpoints: int = 2  # complete checkpoints kept, the newest; 0 = every one (checkpoints of one run as an ensemble: cnntricks ensemble --checkpoints RUN)
    log_every: int = 1  # steps between per-batch lines in history.jsonl
    name: str = "run"  # run name, used in the default run directory runs/<timestamp>-<name>
    monitor: str = "every:50"  # layer statistics into stats.jsonl (activations, dead units, saturation, gradients, updates): off, or every:N steps


@dataclass
class DoctorConfig:
    mode: Literal["off", "warn", "fix", "stop"] = "warn"  # off; warn = report findings; fix = apply remedies; stop = end the run on a fault


@dataclass
class TransferConfig:
    strict: bool = True  # model.pretrained: every weight must fit the model (false: load what fits, say what was skipped)
    strategy: Literal["auto", "all", "top", "linear", "lp-ft", "gradual", "scratch"] = "all"  # which layers train (seed §4's table); also linear@stageK. all = every layer, the lower stages at smaller LRs; top = the head and the transfer.stages top stages, the rest frozen; linear = a logistic regression on the frozen top features (no epochs); linear@stageK = the same on stage K's features (0 = nearest the image); lp-ft = linear, then all; gradual = all, one more stage unfrozen per epoch from the top; scratch = the weights not loaded: the same run from random weights, every layer at the full LR (the baseline); auto = the advisor measures data size and similarity and picks (README)
    race: bool = True  # auto: also train the table's strategy and scratch on two thirds of the training split and take the one better on the held-out third (about 1.3 runs of extra training; measured to find when scratch wins, which the probes cannot); false = the probes and the table alone
    stages: int = 1  # top: how many of the model's top stages train beside the head
    lr_scale: float = 0.1  # the top stage's LR as a share of optim.lr (the head has the full LR); seed §4: fine-tune "with a small learning rate"
    lr_decay: float = 0.38  # all: each lower stage's LR is the one above's x this (Howard & Ruder 2018, ULMFiT: divided by 2.6)
    normalization: Literal["source", "own"] = "source"  # model.pretrained from a run: feed the images as the source run did (its preprocess.json, and its whitening when the images have its shape); own = fit the preprocessing on this run's training split


@dataclass
class ImbalanceConfig:
    loss: Literal["ce", "class_balanced", "focal", "ldam", "ldam_drw", "logit_adjusted"] = "ce"  # the training loss (README, Class imbalance): ce = cross-entropy; class_balanced = weighted by Cui et al.'s effective numbers; focal = Lin et al.; ldam / ldam_drw = Cao et al.'s margins (with deferred re-weighting); logit_adjusted = Menon et al. (τ = 1: balanced softmax)
    beta: float = 0.9999  # class_balanced, ldam_drw: the effective-number β (Cui et al.; Cao et al.'s DRW)
    gamma: float = 2.0  # focal: the focusing γ (Lin et al.)
    max_margin: float = 0.5  # ldam: the largest class margin, the rarest class's (Cao et al.)
    drw_start: float = 0.8  # ldam_drw: the share of training after which the class weights apply (Cao et al.: epoch 160 of 200)
    tau: float = 1.0  # logit_adjusted: τ in logits + τ log π (Menon et al.)
    minority_crops: int = 0  # the seed's extra crops for the classes with few images: K more augmented copies per epoch of each of their images (a cropping augment.policy makes each another crop); 0 = off
    minority_below: int | None = None  # minority_crops: the classes with fewer training images than this; None = fewer than the median class
    two_stage: bool = False  # the seed's two-stage fine-tuning: first the head classes (imbalance.head_min images or more), then the tail classes with a share of the head's replayed; train.epochs is both stages
    head_min: int | None = None  # two_stage: the head classes have at least this many training images; None = at least the median class's
    stage2_epochs: int | None = None  # two_stage: epochs of the second stage (the tail); None = half of train.epochs
    stage2_lr: float = 1.0  # two_stage: the second stage's peak LR as a share of optim.lr, its schedule started again without warm-up (the seed §4 fine-tuning's 0.1 left the rarest classes at 0% recall: README, Class imbalance)
    stage2_passes: int | None = None  # two_stage: passes over the tail (with its replayed head share) in one second-stage epoch; None = as many as make it about as long as a first-stage epoch
    replay: float = 0.1  # two_stage: the share of each head class's images trained again beside the tail in the second stage, redrawn each epoch
    keep_head_rows: bool = True  # two_stage: the head classes' classifier rows stay as the first stage left them
    sampler: Literal["none", "oversample", "undersample", "class_balanced", "sqrt", "progressive"] = "none"  # the order of the training images (seed, Misc: up- and down-sampling): none = a permutation; oversample = every class repeated up to the largest's count; undersample = every class cut to the smallest's, redrawn each epoch; class_balanced = each class equally likely; sqrt = ∝ √count; progressive = from as-is to class_balanced over training


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    regularize: RegularizeConfig = field(default_factory=RegularizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    doctor: DoctorConfig = field(default_factory=DoctorConfig)
    transfer: TransferConfig = field(default_factory=TransferConfig)
    imbalance: ImbalanceConfig = field(default_factory=ImbalanceConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(Config)}
SECTIONS = {name: globals()[tp] if isinstance(tp, str) else tp for name, tp in SECTIONS.items()}

# 4096 pixels per side: 48 MiB per RGB image as uint8; 10,000 of them already fill 480 GiB.
# Anything larger is a typo (data.image_size=100000 asked for 10 TB), not a setting.
MAX_IMAGE_SIZE = 4096

# Values a Literal accepts beyond its names: key -> (pattern, how to write it).
_PATTERNS: dict[str, tuple[str, str]] = {
    "transfer.strategy": (r"linear@stage\d+", "linear@stageK (K = a stage number, 0 nearest the image)"),
}

# Value ranges that types alone cannot say: key -> (check, what the value must be).
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.val_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "data.test_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "data.subset": (lambda v: v is None or v > 0, "a positive count"),
    "data.imbalance": (lambda v: v is None or v >= 1, ">= 1 (the largest class over the smallest: 10, 100)"),
    "data.image_size": (lambda v: v is None or 4 <= v <= MAX_IMAGE_SIZE, f"between 4 and {MAX_IMAGE_SIZE} pixels"),
    "data.channels": (lambda v: v in (None, 1, 3), "1 or 3"),
    "augment.crop_padding": (lambda v: v is None or v >= 0, ">= 0"),
    **{f"augment.p_{op}": (lambda v: v is None or 0 <= v <= 1, "a probability in [0, 1]")
       for op in ("flip", "translate", "rotate", "scale", "stretch", "shear", "lens", "hsv", "jitter", "erase")},
    **{f"augment.{key}": (lambda v: v is None or v >= 0, ">= 0")
       for key in ("translate", "rotate", "stretch", "shear", "lens", "jitter", "fancy_pca", "mixup", "cutmix")},
    "augment.scale": (lambda v: v is None or 0 <= v < 1, "in [0, 1)"),
    "preprocess.eps": (lambda v: v > 0, "> 0"),
    "preprocess.components": (lambda v: v is None or v >= 1, ">= 1"),
    "preprocess.patch_size": (lambda v: v >= 1 and v % 2 == 1, "an odd number of pixels >= 1"),
    "model.width": (lambda v: v >= 1, ">= 1"),
    "model.depth": (lambda v: v >= 1, ">= 1"),
    "model.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.spatial_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "model.negative_slope": (lambda v: 0 <= v < 1, "in [0, 1) (the seed's a = 1/slope: a = 100 is 0.01)"),
    "model.maxout_pieces": (lambda v: v >= 2, ">= 2"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.batch_size": (lambda v: v >= 1, ">= 1"),
    "optim.label_smoothing": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "schedule.plateau_divide": (lambda v: v > 1, "> 1 (it divides the LR)"),
    "schedule.step_divide": (lambda v: v > 1, "> 1 (it divides the LR)"),
    "schedule.peak_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
    "schedule.plateau_patience": (lambda v: v >= 0, ">= 0"),
    "schedule.step_epochs": (lambda v: v >= 1, ">= 1"),
    "regularize.l1": (lambda v: v >= 0, ">= 0"),
    "regularize.l2": (lambda v: v >= 0, ">= 0"),
    "regularize.max_norm": (lambda v: v is None or v > 0, "> 0"),
    "regularize.l1_start": (lambda v: 0 <= v < 1, "in [0, 1) (a share of training)"),
    "train.monitor": (lambda v: v == "off" or (isinstance(v, str) and v.startswith("every:")
                                               and v[6:].isdigit() and int(v[6:]) >= 1),
                      "off or every:N with N >= 1 steps (every:50)"),
    "train.epochs": (lambda v: v is None or v >= 1, ">= 1 (or null: planned)"),
    "train.min_steps": (lambda v: v >= 0, ">= 0"),
    "train.time_budget": (lambda v: v is None or v > 0, "> 0 seconds"),
    "train.target_accuracy": (lambda v: v is None or 0 < v <= 1, "in (0, 1] (a fraction, not a percent)"),
    "train.checkpoint_every": (lambda v: v >= 1, ">= 1"),
    "train.patience": (lambda v: v is None or v >= 1, ">= 1 (or null: no early stopping)"),
    "train.keep_checkpoints": (lambda v: v == 0 or v >= 2, "0 (every checkpoint) or >= 2 (the doctor's rollback "
                               "may need the one before the newest)"),
    "train.log_every": (lambda v: v >= 1, ">= 1"),
    "train.eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "train.threads": (lambda v: v is None or v >= 1, ">= 1"),
    "train.processes": (lambda v: v >= 1, ">= 1"),
    "imbalance.beta": (lambda v: 0 <= v < 1, "in [0, 1) (0.9999: Cui et al.)"),
    "imbalance.gamma": (lambda v: v >= 0, ">= 0"),
    "imbalance.max_margin": (lambda v: v > 0, "> 0"),
    "imbalance.drw_start": (lambda v: 0 <= v <= 1, "in [0, 1] (a share of training)"),
    "imbalance.tau": (lambda v: v >= 0, ">= 0"),
    "imbalance.minority_crops": (lambda v: v >= 0, ">= 0 (extra copies per epoch)"),
    "imbalance.head_min": (lambda v: v is None or v >= 1, ">= 1 training images"),
    "imbalance.stage2_epochs": (lambda v: v is None or v >= 1, ">= 1"),
    "imbalance.stage2_lr": (lambda v: v > 0, "> 0 (a share of optim.lr)"),
    "data.folds": (lambda v: v is None or v >= 2, ">= 2 (or null: one validation split)"),
    "data.fold": (lambda v: v >= 0, ">= 0 (and below data.folds)"),
    "schedule.cycles": (lambda v: v >= 2, ">= 2 (one cycle is the cosine schedule)"),
    "imbalance.stage2_passes": (lambda v: v is None or v >= 1, ">= 1"),
    "imbalance.replay": (lambda v: 0 <= v <= 1, "in [0, 1] (a share of each head class)"),
    "imbalance.minority_below": (lambda v: v is None or v >= 1, ">= 1 training images"),
}


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp) -> Any:
    """Check `value` against the annotation `tp`, converting where it is unambiguous (int -> float)."""
    origin = typing.get_origin(tp)
    if isinstance(value, bool) and (tp is str or origin is Literal):
        value = "on" if value else "off"  # YAML 1.1 reads a bare off / on as a boolean
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value in allowed:
            return value
        pattern, written = _PATTERNS.get(key, (None, ""))
        if pattern and isinstance(value, str) and re.fullmatch(pattern, value):
            return value
        raise ConfigError(f"{key}: '{value}' is not allowed; choose one of {', '.join(map(str, allowed))}"
                          f"{' or ' + written if written else ''}{closest(value, allowed)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # inf passed every "> 0" range check; nan failed them by accident
                raise ConfigError(f"{key}: {value!r} is not a finite number; give a number such as "
                                  f"0.1 or 1e-3")
            return number
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


@functools.cache  # get_type_hints evaluates every annotation: 80% of loading a config (the doctor loads one per epoch)
def _section_fields(section: str) -> dict[str, Any]:
    """{key: its type} for a section (read only: the dict is shared)."""
    hints = typing.get_type_hints(SECTIONS[section])
    return {f.name: hints[f.name] for f in dataclasses.fields(SECTIONS[section])}


def _check_key(section: str, key: str | None = None) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"unknown section '{section}'{closest(section, SECTIONS)}; "
                          f"sections: {', '.join(SECTIONS)}")
    if key is not None and key not in _section_fields(section):
        known = _section_fields(section)
        raise ConfigError(f"unknown key '{section}.{key}'{closest(key, known)}; "
                          f"keys of {section}: {', '.join(known)}")


def from_dict(values: dict[str, Any] | None) -> Config:
    """Build a validated Config from nested dicts; missing keys keep their defaults."""
    cfg = Config()
    for section, entries in (values or {}).items():
        _check_key(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise ConfigError(f"{section}: expected a mapping of keys, got {entries!r}")
        for key, value in entries.items():
            set_value(cfg, f"{section}.{key}", value)
    return cfg


def set_value(cfg: Config, dotted: str, value: Any) -> None:
    """Set `section.key` on `cfg` after checking the key, the type and the range."""
    if dotted.count(".") != 1:
        raise ConfigError(f"'{dotted}': keys are written section.key, for example optim.lr")
    section, key = dotted.split(".")
    _check_key(section, key)
    value = _coerce(dotted, value, _section_fields(section)[key])
    if dotted in _RANGES:
        ok, must = _RANGES[dotted]
        if not ok(value):
            raise ConfigError(f"{dotted}: {value!r} is out of range; it must be {must}")
    setattr(getattr(cfg, section), key, value)


class DuplicateKeyError(yaml.YAMLError):
    """A key written twice in one YAML mapping (PyYAML would silently keep the last one)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice, at any depth."""

    def construct_mapping(self, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` then overriding a key is allowed
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: SafeLoader's own error says so
                continue
            if first is not None:
                raise DuplicateKeyError(f"key '{key}' appears twice in one mapping (lines {first} and {line}); "
                                        f"keep one of them")
            lines[key] = line
        return super().construct_mapping(node, deep)


def _read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `section.key=value` strings; values are read as YAML scalars (0.1, true, null)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"'{item}': overrides are written section.key=value, for example optim.lr=0.05")
        dotted, raw = item.split("=", 1)
        try:
            value = _read_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        set_value(cfg, dotted.strip(), value)
    return cfg


def load(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The default config, updated by a YAML file and then by overrides, in that order."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at byte position {err.start}); "
                              f"save the file as UTF-8") from None
        try:
            values = _read_yaml(text)
        except DuplicateKeyError as err:
            raise ConfigError(f"{path}: {err}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if values is None:  # an empty file (or only comments): the defaults
            values = {}
        if not isinstance(values, dict):
            found = "a list" if isinstance(values, list) else f"the value {str(values)[:40]!r}"
            raise ConfigError(f"{path}: the top level is {found}, not a mapping; write sections such as "
                              f"'optim:' with their keys indented below")
    cfg = from_dict(values)
    return apply_overrides(cfg, overrides or [])


def dump(cfg: Config) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(dump(cfg))


def describe() -> list[tuple[str, str, str, str]]:
    """(key, default, allowed type, meaning) for every key; the meaning is the trailing comment."""
    rows = []
    defaults = Config()
    for section, cls in SECTIONS.items():
        comments = dict(re.findall(r"^\s+(\w+)\s*:.*?#\s*(.*)$", inspect.getsource(cls), re.M))
        for key, tp in _section_fields(section).items():
            default = getattr(getattr(defaults, section), key)
            rows.append((f"{section}.{key}", yaml.safe_dump(default).strip().removesuffix("..."
                         ).strip(), _type_name(tp), comments.get(key, "")))
    return rows
