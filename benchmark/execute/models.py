"""Backbones wrapped as `features` (image -> the feature map attention is taken from) and `head` (-> logits).

`model(x) == model.head(model.features(x))`, so Grad-CAM needs no hooks: it differentiates the logits with respect
to the output of `features` (docs/layout.md, "Contracts").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from benchmark.core.registry import MODELS, register_model
from benchmark.core.settings import BN_MODES
from benchmark.core.spec import architecture_params, build_model_params

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SYNTHETIC_MEAN = (0.5, 0.5, 0.5)
SYNTHETIC_STD = (0.25, 0.25, 0.25)


class SplitModel(nn.Module):
    """A classifier split at its attention layer; `features` and `head` are ordinary sub-modules."""

    def __init__(
        self,
        features: nn.Module,
        head: nn.Module,
        *,
        name: str,
        attention_layer: str,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.features = features
        self.head = head
        self.name = name
        self.attention_layer = attention_layer
        self.mean = mean
        self.std = std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


SMALL_CNN_LAYERS = ("block1", "block2", "block3", "block4")


def small_cnn(
    num_classes: int, *, attention_layer: str = "block4", widths: tuple[int, ...] = (16, 32, 64, 64)
) -> SplitModel:
    """Conv-BN-ReLU blocks, each after the first opening with a 2x max-pool.

    48 px in -> a 6x6 map at `block4` (the default), 12x12 at `block3`.
    """
    _check_layer("small_cnn", attention_layer, SMALL_CNN_LAYERS)
    if len(widths) != len(SMALL_CNN_LAYERS) or not all(isinstance(w, int) and w >= 1 for w in widths):
        raise ValueError(f"small_cnn widths = {list(widths)}: allowed: {len(SMALL_CNN_LAYERS)} integers >= 1, the "
                         f"channels of {', '.join(SMALL_CNN_LAYERS)}")
    blocks, c_in = [], 3
    for i, width in enumerate(widths):
        blocks.append(_conv_block(c_in, width, pool=i > 0))
        c_in = width
    cut = SMALL_CNN_LAYERS.index(attention_layer) + 1
    features = nn.Sequential(*blocks[:cut])
    head = nn.Sequential(*blocks[cut:], nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))
    return SplitModel(
        features, head, name="small_cnn", attention_layer=attention_layer, mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD
    )


RESNET_LAYERS = ("layer1", "layer2", "layer3", "layer4")


def _resnet(arch: str, num_classes: int, attention_layer: str, weights: str | None) -> SplitModel:
    from torchvision import models as tvm

    _check_layer(arch, attention_layer, RESNET_LAYERS)
    net = getattr(tvm, arch)(weights=None)
    if weights is not None:
        net.load_state_dict(load_imagenet_state_dict(arch, weights))
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    cut = RESNET_LAYERS.index(attention_layer) + 1
    stem = [net.conv1, net.bn1, net.relu, net.maxpool]
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    features = nn.Sequential(*stem, *layers[:cut])
    head = nn.Sequential(*layers[cut:], net.avgpool, nn.Flatten(), net.fc)
    return SplitModel(features, head, name=arch, attention_layer=attention_layer, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# Index one past the ReLU that closes each VGG-16 block's last convolution in `vgg16().features`.
VGG16_LAYERS = {"conv3_3": 16, "conv4_3": 23, "conv5_3": 30}


def vgg16(num_classes: int, *, attention_layer: str = "conv5_3", weights: str | None = None) -> SplitModel:
    """VGG-16 (the paper's backbone); attention at the last ReLU of block 5 by default, as in Grad-CAM."""
    from torchvision import models as tvm

    _check_layer("vgg16", attention_layer, tuple(VGG16_LAYERS))
    net = tvm.vgg16(weights=None)
    if weights is not None:
        net.load_state_dict(load_imagenet_state_dict("vgg16", weights))
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, num_classes)
    cut = VGG16_LAYERS[attention_layer]
    features = net.features[:cut]
    head = nn.Sequential(net.features[cut:], net.avgpool, nn.Flatten(), net.classifier)
    return SplitModel(
        features, head, name="vgg16", attention_layer=attention_layer, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )


def resnet18(num_classes: int, *, attention_layer: str = "layer4", weights: str | None = None) -> SplitModel:
    return _resnet("resnet18", num_classes, attention_layer, weights)


def resnet50(num_classes: int, *, attention_layer: str = "layer4", weights: str | None = None) -> SplitModel:
    return _resnet("resnet50", num_classes, attention_layer, weights)


for _factory in (small_cnn, resnet18, resnet50, vgg16):
    register_model(_factory)


def build_model(name: str, num_classes: int, **params: object) -> SplitModel:
    """`MODELS[name](num_classes, **params)` with an error that lists the known models or keys; `init` and
    `pretrain` are read by the training run, not by the architecture."""
    params = architecture_params(build_model_params(name, params))  # first: its error lists the known models
    return MODELS[name](num_classes, **params)


def _check_layer(model: str, layer: str, allowed: tuple[str, ...]) -> None:
    if layer not in allowed:
        raise ValueError(f"{model}: unknown attention_layer {layer!r}; allowed: {', '.join(allowed)}")


def imagenet_weights_path(arch: str, weights: str) -> Path:
    """Where the local torch cache keeps `arch`'s ImageNet `weights` ("imagenet" = torchvision's default, or an enum
    name such as "IMAGENET1K_V1"); an unknown name is a ValueError listing the known ones."""
    from torchvision.models import get_model_weights

    enum = get_model_weights(arch)
    name = "DEFAULT" if weights == "imagenet" else weights
    try:
        entry = enum[name]
    except KeyError:
        allowed = ", ".join(["imagenet", *enum.__members__])
        raise ValueError(f"{arch}: unknown weights {weights!r}; allowed: {allowed}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(entry.url).name


def load_imagenet_state_dict(arch: str, weights: str) -> dict[str, torch.Tensor]:
    """ImageNet weights from the local torch hub cache only; never downloads.

    `weights` is "imagenet" (the torchvision default weights) or a torchvision enum name such as "IMAGENET1K_V1".
    """
    path = imagenet_weights_path(arch, weights)
    name = "DEFAULT" if weights == "imagenet" else weights
    if not path.is_file():
        raise FileNotFoundError(
            f"{arch} ImageNet weights {path.name} are not in the local torch cache: expected {path}. "
            f"gain-bench never downloads weights; fetch them once on a machine with internet access "
            f"(e.g. `python -c \"import torchvision; torchvision.models.{arch}(weights='{name}')\"`) and copy the "
            f"file there, or set TORCH_HOME to the cache that holds it."
        )
    return torch.load(path, map_location="cpu", weights_only=True)


@contextmanager
def batchnorm_mode(model: nn.Module, mode: str) -> Iterator[None]:
    """Run a pass with BatchNorm in `mode` (`BN_MODES`). "eval" and "batch" leave every buffer as it was; "train"
    blends the pass's statistics into the running ones (momentum), so later evaluations see them too. Modules that
    are in eval mode already stay so in every mode."""
    if mode not in BN_MODES:
        raise ValueError(f"BatchNorm mode must be one of {', '.join(BN_MODES)}, got {mode!r}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.train(mode != "eval" and m.training)
        if mode == "batch" and m.training:  # batch statistics, and forward() then passes no buffer to update
            m.track_running_stats = False
    try:
        yield
    finally:
        for m, (was, tracked) in zip(norms, saved, strict=True):
            m.train(was)
            m.track_running_stats = tracked


def has_training_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in module.modules())


def has_hooks(modules: Iterable[nn.Module]) -> bool:
    """Whether any of `modules` has forward, forward-pre or backward hooks, or global module hooks are set: code that
    computes what the modules compute without calling them (`benchmark.execute.folding`, `attention.gap_linear`) would
    bypass them."""
    from torch.nn.modules import module as module_globals

    if module_globals._global_forward_hooks or module_globals._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules)
