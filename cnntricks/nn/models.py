"""Model zoo: fastnet, vgg, resnet, mlp behind one interface (seed §4, "Filters and pooling size").

Every model is a `Classifier` (timm's interface): `forward_features(x)` gives (N, num_features),
`forward_head(features)` maps them to logits through dropout and one linear layer, and
`reset_head(num_classes)` swaps that layer, so fine-tuning, linear probes and ensembles need
nothing model-specific. The conv nets keep their stages in `model.stages` (an nn.Sequential whose
`children()` are the stages, bottom first).

The conv nets follow seed §4: 3×3 filters, stride 1, zero padding 1 (the map keeps its size),
2×2 max pooling. Seed §4 also says "the size of input images prefers to be power-of-2";
`create_model` warns (`ImageSizeWarning`) when a side is not, but every model takes any size:
the conv nets end in a global pooling and skip pools once a side is down to one pixel.

Every model is built from one `ModelConfig` (as nanoGPT's GPT(config)) and honours all its keys:
`activation` with its options (`negative_slope`, `prelu`, `maxout_pieces`: see nn/activations.py),
`init`, `norm`, `dropout` and `spatial_dropout`. Maxout keeps the max of each k channels, so the
layer before every activation (and its norm) outputs k times the width. With the default config
(relu, auto init, no dropout) the layout and the state-dict keys are those of earlier versions,
so their checkpoints load.

resnet18, resnet34 and resnet50, torchvision's ImageNet ResNets with its state-dict keys (for the
published weights), are in nn/imagenet_resnets.py.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn.activations import (activation_options, create_activation, negative_slope,
                                      width_factor)
from cnntricks.nn.init import initialize, resolve_scheme
from cnntricks.registry import Registry

MODELS = Registry("model")


class ImageSizeWarning(UserWarning):
    """An image side that is not a power of 2 (seed §4).

    Silence it with `warnings.simplefilter("ignore", ImageSizeWarning)`.
    """


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    # seed §4: small 3x3 filters, stride 1 and zero padding 1, which preserves the map's size
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=bias)


def create_norm(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"model.norm: unknown normalization '{norm}'; choose 'batch' or 'none'")


def max_pool_2x2(size: tuple[int, int]) -> tuple[nn.Module, tuple[int, int]]:
    """Seed §4's 2x2 max pooling for a (height, width) map, and the map's size after it.

    A side already down to 1 pixel is not pooled (a 2-pixel window would not fit), so deep nets
    still take small inputs such as 8x8 digits; with both sides at 1 the pool is an Identity.
    """
    height, width = size
    kernel = (2 if height > 1 else 1, 2 if width > 1 else 1)
    if kernel == (1, 1):
        return nn.Identity(), size
    return nn.MaxPool2d(2 if kernel == (2, 2) else kernel), (height // kernel[0], width // kernel[1])


def with_spatial_dropout(stage: nn.Sequential, p: float) -> nn.Sequential:
    """`stage` followed by Dropout2d(p), which zeroes whole feature maps (Tompson et al. 2015):
    neighbouring pixels of a map are correlated, so dropping single pixels hardly regularizes.
    Added only for p > 0, at the end, so the default model's state-dict keys do not move."""
    if p > 0:
        stage.append(nn.Dropout2d(p))
    return stage


class Classifier(nn.Module):
    """Base of every model: features (N, num_features), then dropout and one linear layer.

    A subclass builds its feature layers, calling `make_activation(channels)` for each
    non-linearity and making the layer before it output `width_factor` x channels (maxout's k),
    then calls `attach_head` (so the head comes last in `children()` and the state dict) and
    `initialize_weights`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.activation_name = cfg.activation
        self.activation_options = activation_options(cfg)  # negative_slope, mode, pieces
        self.width_factor = width_factor(cfg.activation, **self.activation_options)
        self.init_name = cfg.init

    def make_activation(self, channels: int) -> nn.Module:
        """A fresh activation whose output has `channels` channels (PReLU: one slope per channel)."""
        return create_activation(self.activation_name, channels=channels, **self.activation_options)

    def attach_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        self.num_features = num_features
        # Kept as a module even at p=0 so a remedy can raise `model.dropout.p` during training.
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The conv nets' features: their `stages`, then a global `pool` (the MLP overrides this)."""
        return self.pool(self.stages(x)).flatten(1)  # (N, C, H, W) -> (N, C)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))  # (N, F) -> (N, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def initialize_weights(self) -> None:
        """`model.init` for this model's activation (nn/init.py); "lsuv" does its orthogonal step
        only, the training loop rescales with a batch (`lsuv_`)."""
        activation, init = self.activation_name, self.init_name
        if init == "auto" and activation == "maxout":
            # The seed's calibrated 1/n: max(X, Y)² + min(X, Y)² = X² + Y², and for iid symmetric
            # X, Y max² and min² have one distribution, so E[max(X, Y)²] = E[X²] (k = 2).
            init = "calibrated"
        # Only leaky_relu's slope is configurable; passing a slope for others would also give
        # orthogonal init a rectifier's gain.
        slope = negative_slope(activation, **self.activation_options) if activation == "leaky_relu" else None
        initialize(self, resolve_scheme(init, activation), activation, negative_slope=slope)
        self._initialize_head(self.head)

    @staticmethod
    def _initialize_head(head: nn.Linear) -> nn.Linear:
        # The classifier starts with the seed's "small random numbers", 0.001·N(0,1) (§3), not He:
        # its logits are then near zero, so the first loss is ln(classes), as a healthy run's
        # should be (He's variance gave 3.9 against ln 10 = 2.3 on Fashion-MNIST). The same
        # accuracy, measured (README).
        with torch.no_grad():
            head.weight.normal_(0.0, 0.001)
            head.bias.zero_()
        return head

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier with a fresh one for `num_classes` (zero bias), same device and dtype."""
        old = self.head.weight
        self.head = self._initialize_head(
            nn.Linear(self.num_features, num_classes, device=old.device, dtype=old.dtype))


@MODELS.register("fastnet")
class FastNet(Classifier):
    """The speed default, airbench-style (Keller Jordan's CIFAR-10 speed runs); layout measured.

    stem: conv3x3 -> pool -> norm -> act; each further stage doubles the width:
    conv3x3 -> norm -> act -> conv3x3 -> pool -> norm -> act; then a global max pool.
    Pooling comes before norm and activation on purpose: BN and the activation see 4x fewer
    elements (measured 30% faster on CPU), and max-pooling commutes with a monotone activation
    (and with maxout, itself a max).
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int] = (32, 32)):
        super().__init__(cfg)
        k, norm, bias = self.width_factor, cfg.norm, cfg.norm == "none"  # a norm's shift makes a conv bias redundant
        width = cfg.width
        pool, size = max_pool_2x2(image_size)
        stages = [nn.Sequential(conv3x3(in_channels, k * width, bias=bias), pool,
                                create_norm(norm, k * width), self.make_activation(width))]
        channels = width
        for stage in range(1, cfg.depth):
            out = width * 2**stage
            pool, size = max_pool_2x2(size)
            stages.append(nn.Sequential(
                conv3x3(channels, k * out, bias=bias), create_norm(norm, k * out), self.make_activation(out),
                conv3x3(out, k * out, bias=bias), pool, create_norm(norm, k * out), self.make_activation(out)))
            channels = out
        self.stages = nn.Sequential(*(with_spatial_dropout(stage, cfg.spatial_dropout) for stage in stages))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.attach_head(channels, num_classes, cfg.dropout)
        self.initialize_weights()


@MODELS.register("vgg")
class VGG(Classifier):
    """Seed §4 literally (Simonyan & Zisserman 2015): per stage two 3x3 stride-1 zero-padded convs,
    each followed by norm and activation, then 2x2 max pooling; global average pool at the end."""

    def __init__(self, cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int] = (32, 32)):
        super().__init__(cfg)
        k, norm, bias = self.width_factor, cfg.norm, cfg.norm == "none"
        stages, channels, size = [], in_channels, image_size
        for stage in range(cfg.depth):
            out = cfg.width * 2**stage
            pool, size = max_pool_2x2(size)
            stages.append(nn.Sequential(
                conv3x3(channels, k * out, bias=bias), create_norm(norm, k * out), self.make_activation(out),
                conv3x3(out, k * out, bias=bias), create_norm(norm, k * out), self.make_activation(out), pool))
            channels = out
        self.stages = nn.Sequential(*(with_spatial_dropout(stage, cfg.spatial_dropout) for stage in stages))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.attach_head(channels, num_classes, cfg.dropout)
        self.initialize_weights()


class BasicBlock(nn.Module):
    """He et al. 2016's residual block: conv3x3 -> norm -> act -> conv3x3 -> norm, plus the
    shortcut, then act (and Dropout2d when `spatial_dropout` > 0).

    `make_activation(channels)` builds each activation; `width_factor` (maxout's k) is how many
    channels each one takes per channel it outputs. act2 comes after the sum, so the residual and
    the shortcut both produce k·out channels: the shortcut is the identity only when the input
    already has that shape (stride 1 and in = k·out), else a 1x1 conv (strided where the map
    shrinks) with norm. With maxout (k >= 2) every block therefore projects.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, make_activation, norm: str,
                 width_factor: int = 1, spatial_dropout: float = 0.0):
        super().__init__()
        bias = norm == "none"
        wide = width_factor * out_channels  # what conv1, conv2 and the shortcut output
        self.conv1 = conv3x3(in_channels, wide, stride, bias=bias)
        self.norm1 = create_norm(norm, wide)
        self.act1 = make_activation(out_channels)
        self.conv2 = conv3x3(out_channels, wide, bias=bias)
        self.norm2 = create_norm(norm, wide)
        self.act2 = make_activation(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != wide:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, wide, 1, stride=stride, bias=bias), create_norm(norm, wide))
        # No module at p = 0: the default block's layout and state dict stay as they were.
        self.spatial_dropout = nn.Dropout2d(spatial_dropout) if spatial_dropout > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        out = self.act2(residual + self.shortcut(x))
        return out if self.spatial_dropout is None else self.spatial_dropout(out)


@MODELS.register("resnet")
class ResNet(Classifier):
    """A small ResNet (He et al. 2016): stem conv3x3 -> norm -> act, one BasicBlock per stage
    (stride 2 from the second stage on, width doubling), global average pool."""

    def __init__(self, cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int] = (32, 32)):
        super().__init__(cfg)
        k, norm, width = self.width_factor, cfg.norm, cfg.width
        # A stride-2 conv with padding 1 maps a 1-pixel side to 1 pixel: any image size works.
        stem = nn.Sequential(conv3x3(in_channels, k * width, bias=norm == "none"),
                             create_norm(norm, k * width), self.make_activation(width))
        stages: list[nn.Module] = [with_spatial_dropout(stem, cfg.spatial_dropout)]
        channels = width
        for stage in range(cfg.depth):
            out = width * 2**stage
            stages.append(BasicBlock(channels, out, 1 if stage == 0 else 2, self.make_activation, norm,
                                     k, cfg.spatial_dropout))
            channels = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.attach_head(channels, num_classes, cfg.dropout)
        self.initialize_weights()


@MODELS.register("mlp")
class MLP(Classifier):
    """Fully connected baseline: flatten -> `depth` x (linear -> act), dropout between hidden layers
    (seed §6 applies dropout to fully connected layers); the head drops before the last layer.

    Hidden layers have 8 x width units, so width 32 gives 256 (the default width 16 gives 128);
    with maxout each linear layer outputs k x that many. No normalization and no spatial dropout
    (`norm` and `spatial_dropout` apply to conv feature maps; `dropout` is the MLP's).
    Built for one image size: the input layer's size depends on it.
    """

    def __init__(self, cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int] = (32, 32)):
        super().__init__(cfg)
        hidden = 8 * cfg.width
        self.input_shape = (in_channels, *image_size)
        layers: list[nn.Module] = [nn.Flatten()]
        inputs = in_channels * image_size[0] * image_size[1]
        for layer in range(cfg.depth):
            if layer > 0:
                layers.append(nn.Dropout(cfg.dropout))
            layers += [nn.Linear(inputs, self.width_factor * hidden), self.make_activation(hidden)]
            inputs = hidden
        self.layers = nn.Sequential(*layers)
        self.attach_head(hidden, num_classes, cfg.dropout)
        self.initialize_weights()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"mlp: built for images of shape {self.input_shape} (C, H, W), got "
                             f"{tuple(x.shape[1:])}; create the model with this image size")
        return self.layers(x)  # (N, C, H, W) -> (N, hidden)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def create_model(cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int]) -> Classifier:
    """The model `cfg.name`, initialized for `cfg.activation`, for (in_channels, *image_size) images.

    Warns with `ImageSizeWarning` when a side of `image_size` is not a power of 2 (seed §4).
    """
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"image_size: expected (height, width) in pixels, got {image_size!r}")
    if in_channels < 1 or num_classes < 1:
        raise ValueError(f"create_model: in_channels ({in_channels}) and num_classes ({num_classes}) "
                         "must be at least 1; are the data's shape and labels read correctly?")
    if not all(is_power_of_two(side) for side in image_size):
        height, width = image_size
        suggested = "x".join(str(1 << (side - 1).bit_length()) for side in image_size)
        warnings.warn(f"image size {height}x{width}: seed §4 says 'the size of input images prefers to "
                      f"be power-of-2' (32, 64, ...); the model works anyway, or resize to {suggested} "
                      f"(data.image_size={1 << (max(image_size) - 1).bit_length()})",
                      ImageSizeWarning, stacklevel=2)
    return MODELS.create(cfg.name, cfg, in_channels, num_classes, tuple(image_size))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in `model` (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
