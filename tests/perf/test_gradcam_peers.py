"""Grad-CAM maps on ResNet-18, 224 px, batch 16: gain-bench vs pytorch-grad-cam vs captum (group "gradcam-resnet18").

Each produces the same output (normalised maps at image size, checked by tests/test_attention.py); compare the rows
of the group with `pytest tests/perf --benchmark-only`.
"""

import pytest
import torch
import torch.nn.functional as F

from benchmark.attention import grad_cam, minmax_normalise
from benchmark.models import build_model

BATCH, SIZE, CLASSES = 16, 224, 20


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model("resnet18", CLASSES).eval()
    images = torch.randn(BATCH, 3, SIZE, SIZE)
    classes = torch.arange(BATCH) % CLASSES
    return model, images, classes


def _ours(model, images, classes):
    return grad_cam(model, images, classes).detach()


def _pytorch_grad_cam(model, images, classes):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.features[-1]]) as cam:
        return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes]))


def _captum(model, images, classes):
    from captum.attr import LayerGradCam

    attr = LayerGradCam(model, model.features[-1]).attribute(images, target=classes, relu_attributions=True)
    attr = F.interpolate(attr, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return minmax_normalise(attr.detach())


@pytest.mark.benchmark(group="gradcam-resnet18")
@pytest.mark.parametrize("impl", [_ours, _pytorch_grad_cam, _captum], ids=["gain-bench", "pytorch-grad-cam", "captum"])
def test_gradcam_throughput(benchmark, setup, impl):
    model, images, classes = setup
    maps = benchmark.pedantic(impl, args=(model, images, classes), rounds=5, warmup_rounds=1, iterations=1)
    assert maps.shape == (BATCH, SIZE, SIZE)
