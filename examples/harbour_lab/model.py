"""A torchvision backbone split at a layer of our choice: ShuffleNetV2 (x0.5), attention after stage 2 or 3."""

from torch import nn
from torchvision.models import shufflenet_v2_x0_5

from benchmark.api import SYNTHETIC_MEAN, SYNTHETIC_STD, SplitModel, register_model

LAYERS = ("stage2", "stage3")


@register_model(name="shufflenet_small")
def shufflenet_small(num_classes: int, *, attention_layer: str = "stage2") -> SplitModel:
    if attention_layer not in LAYERS:
        raise ValueError(f"model.attention_layer = {attention_layer!r}: allowed: {', '.join(LAYERS)}")
    net = shufflenet_v2_x0_5(weights=None, num_classes=num_classes)
    stages = [net.stage2, net.stage3, net.stage4]
    cut = LAYERS.index(attention_layer) + 1
    features = nn.Sequential(net.conv1, net.maxpool, *stages[:cut])
    head = nn.Sequential(*stages[cut:], net.conv5, nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.fc)
    return SplitModel(features, head, name="shufflenet_small", attention_layer=attention_layer,
                      mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD)
