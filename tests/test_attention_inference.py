"""`grad_cam` under `torch.no_grad()`: no graph for the features, the same maps."""

import pytest
import torch
from numerics import randomise_batchnorm

from benchmark.execute.attention import grad_cam
from benchmark.execute.models import build_model


def _pytorch_grad_cam(model, images, classes):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.features[-1]]) as cam:
        return torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes]))


@pytest.mark.parametrize(("name", "size"), [("small_cnn", 48), ("resnet18", 64), ("vgg16", 32)])
def test_no_grad_maps_equal_the_differentiable_ones_and_the_reference(name, size):
    model = randomise_batchnorm(build_model(name, 5)).eval()  # so that folding the statistics would show if wrong
    images = torch.randn(4, 3, size, size)
    classes = torch.tensor([0, 3, 2, 4])
    expected = grad_cam(model, images, classes)
    assert expected.requires_grad
    with torch.no_grad():
        fast = grad_cam(model, images, classes)
    assert not fast.requires_grad
    torch.testing.assert_close(fast, expected.detach(), atol=1e-4, rtol=0)
    if name != "vgg16":
        torch.testing.assert_close(fast, _pytorch_grad_cam(model, images, classes), atol=1e-4, rtol=0)
    with torch.inference_mode():
        torch.testing.assert_close(grad_cam(model, images, classes), fast)


def test_training_mode_features_stay_in_training_mode():
    model = build_model("small_cnn", 5).train()
    images = torch.randn(4, 3, 48, 48)
    classes = torch.tensor([0, 1, 2, 3])
    before = model.features[0][1].running_mean.clone()
    with torch.no_grad():
        fast = grad_cam(model, images, classes)
    assert not torch.equal(before, model.features[0][1].running_mean), "batch statistics, as with gradients on"
    assert all(m.training for m in model.modules())
    assert fast.shape == (4, 48, 48) and float(fast.amax()) == pytest.approx(1.0, abs=1e-5)
