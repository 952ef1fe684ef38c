"""Grad-CAM maps on ResNet-18, 224 px, batch 16: gain-bench vs pytorch-grad-cam vs captum (group "gradcam-resnet18").

Every row gets the same model (as built, contiguous) and input and returns the same output: normalised maps at image
size (checked against captum's here and by tests/test_attention.py). "gain-bench" is inference, `grad_cam` under
`torch.no_grad()` (no graph for the features, a cached BatchNorm-folded channels_last copy; the copy is built in the
untimed warm-up round). "gain-bench-differentiable" is `grad_cam` with gradients on, the path GAIN trains through.
Compare the rows with `pytest tests/perf --benchmark`.
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


@pytest.fixture(scope="module")
def reference(setup):
    return _captum(*setup)


def _ours(model, images, classes):
    with torch.no_grad():
        return grad_cam(model, images, classes)


def _ours_differentiable(model, images, classes):
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
@pytest.mark.parametrize(
    "impl",
    [_ours, _ours_differentiable, _pytorch_grad_cam, _captum],
    ids=["gain-bench", "gain-bench-differentiable", "pytorch-grad-cam", "captum"],
)
def test_gradcam_throughput(benchmark, setup, reference, impl):
    model, images, classes = setup
    maps = benchmark.pedantic(impl, args=(model, images, classes), rounds=7, warmup_rounds=1, iterations=1)
    assert maps.shape == (BATCH, SIZE, SIZE)
    torch.testing.assert_close(maps.float(), reference, atol=1e-4, rtol=0)
