"""torchvision's ImageNet ResNets (He et al. 2016): resnet18, resnet34, resnet50 ("V1.5": the stride on
the 3x3 conv), as `Classifier`s of the zoo whose state-dict keys and shapes are exactly torchvision's
(tests/transfer/torchvision_resnets.json, written from the real torchvision by
scripts/torchvision_manifest.py), so the published ImageNet weights load unchanged
(`model.pretrained=resnet18`, transfer/hub.py). model.width and model.depth do not apply.
Registered when cnntricks.nn is imported.
"""
from __future__ import annotations

import torch
from torch import nn

from cnntricks.config import ModelConfig
from cnntricks.nn.models import MODELS, Classifier, conv3x3, create_norm, with_spatial_dropout


def projection(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Sequential | None:
    """torchvision's `downsample`: a strided 1x1 conv and a norm where the shortcut changes shape, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=norm == "none"),
                         create_norm(norm, out_channels))


class ImageNetBasicBlock(nn.Module):
    """torchvision's BasicBlock (resnet18/34) with its module names: conv1 -> bn1 -> act1 -> conv2 ->
    bn2, plus the shortcut (`downsample` where the shape changes), then act2. As the zoo's BasicBlock,
    each conv before an activation outputs `width_factor` (maxout's k) x its channels."""
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, make_activation, norm: str, width_factor: int = 1):
        super().__init__()
        k, bias = width_factor, norm == "none"
        self.conv1 = conv3x3(in_channels, k * planes, stride, bias=bias)
        self.bn1 = create_norm(norm, k * planes)
        self.act1 = make_activation(planes)
        self.conv2 = conv3x3(planes, k * planes, bias=bias)
        self.bn2 = create_norm(norm, k * planes)
        self.act2 = make_activation(planes)
        self.downsample = projection(in_channels, k * planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(residual + (x if self.downsample is None else self.downsample(x)))


class ImageNetBottleneck(nn.Module):
    """torchvision's Bottleneck (resnet50), V1.5: 1x1 conv -> 3x3 conv (strided) -> 1x1 conv to 4x
    the planes, each with its norm and (but the last) activation, plus the shortcut, then act3."""
    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, make_activation, norm: str, width_factor: int = 1):
        super().__init__()
        k, bias, out = width_factor, norm == "none", planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, k * planes, 1, bias=bias)
        self.bn1 = create_norm(norm, k * planes)
        self.act1 = make_activation(planes)
        # V1.5: the stride on the 3x3 conv, not the first 1x1 (which would skip 3/4 of the pixels)
        self.conv2 = conv3x3(planes, k * planes, stride, bias=bias)
        self.bn2 = create_norm(norm, k * planes)
        self.act2 = make_activation(planes)
        self.conv3 = nn.Conv2d(planes, k * out, 1, bias=bias)
        self.bn3 = create_norm(norm, k * out)
        self.act3 = make_activation(out)
        self.downsample = projection(in_channels, k * out, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))))
        residual = self.bn3(self.conv3(residual))
        return self.act3(residual + (x if self.downsample is None else self.downsample(x)))


class ImageNetResNet(Classifier):
    """torchvision's ImageNet ResNet: stem conv7x7/2 -> bn1 -> act -> maxpool 3x3/2, four layers of
    blocks (64, 128, 256, 512 planes; stride 2 from layer2 on), global average pool, `fc`.

    The attributes are torchvision's (conv1, bn1, layer1..layer4, fc), so the state dict is, key for
    key, the published weights'. The zoo's interface sits on top without a second key per weight:
    `head` is `fc` under the zoo's name, and `stages` ([stem, layer1, ..., layer4]) is a Sequential
    kept outside the registered modules. model.width and model.depth do not apply (the widths and
    depths are the published ones). The other ModelConfig keys do: activation (torchvision: ReLU; a
    PReLU adds its slopes, maxout widens the convs: then the weights fit no longer), norm
    (none: no bn, convs with bias), dropout before `fc`, spatial_dropout after layer1..layer4.
    model.init=auto with ReLU initializes as torchvision (He with fan_out for convs, norms 1 and 0);
    any other init or activation as the zoo's models (nn/init.py); the head as every head; and the
    last norm of each block at scale 0 (torchvision's zero_init_residual=True).
    """
    block: type[nn.Module] = ImageNetBasicBlock
    blocks: tuple[int, int, int, int] = (2, 2, 2, 2)
    STEM = ("conv1", "bn1", "act", "maxpool")
    LAYERS = ("layer1", "layer2", "layer3", "layer4")

    def __init__(self, cfg: ModelConfig, in_channels: int, num_classes: int,
                 image_size: tuple[int, int] = (224, 224)):
        super().__init__(cfg)
        k, norm = self.width_factor, cfg.norm
        self.conv1 = nn.Conv2d(in_channels, k * 64, 7, stride=2, padding=3, bias=norm == "none")
        self.bn1 = create_norm(norm, k * 64)
        self.act = self.make_activation(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)  # a 1-pixel side stays 1: any image size works
        channels = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), self.blocks)):
            blocks = []
            for position in range(count):
                stride = 2 if index > 0 and position == 0 else 1
                blocks.append(self.block(channels, planes, stride, self.make_activation, norm, k))
                channels = planes * self.block.expansion
            # a Dropout2d appended to the layer has no weights: the keys stay torchvision's
            setattr(self, self.LAYERS[index], with_spatial_dropout(nn.Sequential(*blocks), cfg.spatial_dropout))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.attach_head(channels, num_classes, cfg.dropout)  # `self.head = ...` lands in `fc`
        self.initialize_weights()

    @property
    def head(self) -> nn.Module:
        """The classifier: torchvision's `fc` (the published weights' key) under the zoo's name."""
        return self.fc

    @head.setter
    def head(self, module: nn.Module) -> None:
        self.fc = module

    def __setattr__(self, name: str, value) -> None:
        if name == "head":  # nn.Module.__setattr__ would register a second module "head", past the property
            object.__setattr__(self, name, value)  # the setter: the classifier stays `fc`, registered once
        else:
            super().__setattr__(name, value)

    @property
    def stages(self) -> nn.Sequential:
        """[stem (conv1, bn1, act, maxpool), layer1, ..., layer4], bottom first, for fine-tuning and probes.

        Kept in `__dict__`, not registered (that would give every weight a second key), and rebuilt
        when one of those modules was replaced (`model.conv1 = ...`, strategy.cut_above_stage), so the
        forward pass always runs the groups it returns and their hooks fire.
        """
        modules = [getattr(self, name) for name in (*self.STEM, *self.LAYERS)]
        groups = self.__dict__.get("_stage_groups")
        if groups is None or any(a is not b for a, b in zip([*groups[0], *groups[1:]], modules)):
            groups = nn.Sequential(nn.Sequential(*modules[:4]), *modules[4:])
            object.__setattr__(self, "_stage_groups", groups)
        return groups

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.stages(x)).flatten(1)  # (N, C, H, W) -> (N, C)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        if self.init_name != "auto" or self.activation_name != "relu":
            super().initialize_weights()
        else:  # torchvision's ResNet.__init__
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                elif isinstance(module, nn.BatchNorm2d):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
            self._initialize_head(self.head)
        # torchvision's zero_init_residual=True (Goyal et al. 2017, "Accurate, large minibatch SGD"):
        # the last norm of each block starts at scale 0, so every block starts as its shortcut and a
        # fresh net is as easy to train as a shallow one. With torchvision's default (scale 1) one
        # SGD step at lr 0.01 raised resnet50's loss on a 16-image batch (2 seeds of 3).
        for layer in self.LAYERS:
            for block in getattr(self, layer).children():
                last_norm = getattr(block, "bn3", getattr(block, "bn2", None))  # None: a Dropout2d
                if isinstance(last_norm, nn.BatchNorm2d):
                    last_norm.weight.zero_()


@MODELS.register("resnet18")
class ResNet18(ImageNetResNet):
    """torchvision's resnet18: BasicBlocks, 2-2-2-2; 11.7M parameters with 1000 classes."""
    block, blocks = ImageNetBasicBlock, (2, 2, 2, 2)


@MODELS.register("resnet34")
class ResNet34(ImageNetResNet):
    """torchvision's resnet34: BasicBlocks, 3-4-6-3; 21.8M parameters with 1000 classes."""
    block, blocks = ImageNetBasicBlock, (3, 4, 6, 3)


@MODELS.register("resnet50")
class ResNet50(ImageNetResNet):
    """torchvision's resnet50 (V1.5): Bottlenecks, 3-4-6-3; 25.6M parameters with 1000 classes."""
    block, blocks = ImageNetBottleneck, (3, 4, 6, 3)
