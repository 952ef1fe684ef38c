import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.execute.attention import (
    gap_linear,
    grad_cam,
    grad_cam_from,
    inference_cam,
    minmax_normalise,
    upsample_bilinear,
)
from benchmark.execute.models import SplitModel, build_model


def _reference_pytorch_grad_cam(model, images, classes):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with GradCAM(model=model, target_layers=[model.features[-1]]) as cam:
        out = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return torch.from_numpy(out)


def _reference_captum(model, images, classes):
    from captum.attr import LayerGradCam

    attr = LayerGradCam(model, model.features[-1]).attribute(images, target=classes, relu_attributions=True)
    attr = F.interpolate(attr, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = attr.flatten(1).amin(1).view(-1, 1, 1)
    hi = attr.flatten(1).amax(1).view(-1, 1, 1)
    return (attr - lo) / (hi - lo)


@pytest.mark.parametrize(("name", "size"), [("small_cnn", 48), ("resnet18", 64)])
def test_matches_reference_implementations(name, size):
    model = build_model(name, 5).eval()
    images = torch.randn(4, 3, size, size)
    classes = torch.tensor([0, 3, 2, 4])
    ours = grad_cam(model, images, classes)
    assert ours.shape == (4, size, size)
    torch.testing.assert_close(ours, _reference_pytorch_grad_cam(model, images, classes), atol=1e-4, rtol=0)
    torch.testing.assert_close(ours, _reference_captum(model, images, classes), atol=1e-4, rtol=0)


def test_maps_are_normalised_per_image_not_per_batch():
    model = build_model("small_cnn", 5).eval()
    with torch.no_grad():
        model.head[-1].weight.abs_()
    features = torch.rand(3, 64, 6, 6)
    features.requires_grad_()
    features = features * torch.tensor([1.0, 1000.0, 1.0]).view(3, 1, 1, 1)
    logits = model.head(features)
    maps = grad_cam_from(features, logits, torch.tensor([0, 0, 0]), size=(48, 48))
    flat = maps.flatten(1)
    assert torch.allclose(flat.amax(1), torch.ones(3), atol=1e-5)
    assert torch.allclose(flat.amin(1), torch.zeros(3), atol=1e-6)
    raw = grad_cam_from(features, logits, torch.tensor([0, 0, 0]), size=(48, 48), normalise=False)
    assert raw[1].max() > 100 * raw[0].max()


def test_batched_equals_one_image_at_a_time():
    model = build_model("small_cnn", 5).eval()
    images = torch.randn(4, 3, 48, 48)
    classes = torch.tensor([1, 0, 4, 2])
    batched = grad_cam(model, images, classes)
    single = torch.cat([grad_cam(model, images[i : i + 1], classes[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


def test_several_classes_per_image():
    model = build_model("small_cnn", 5).eval()
    images = torch.randn(2, 3, 48, 48)
    image_index = torch.tensor([0, 0, 1, 0])
    classes = torch.tensor([1, 3, 1, 4])
    maps = grad_cam(model, images, classes, image_index=image_index)
    for p in range(4):
        alone = grad_cam(model, images[image_index[p]].unsqueeze(0), classes[p : p + 1])
        torch.testing.assert_close(maps[p : p + 1], alone, atol=1e-5, rtol=0)
    assert not torch.allclose(maps[0], maps[1])


def test_all_zero_map_stays_zero():
    model = SplitModel(
        nn.ReLU(),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)),
        name="t",
        attention_layer="relu",
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )
    images = -torch.rand(2, 3, 8, 8) - 0.1
    maps = grad_cam(model, images.requires_grad_(), torch.tensor([0, 1]))
    assert torch.isfinite(maps).all()
    assert (maps == 0).all()
    assert (minmax_normalise(torch.zeros(1, 4, 4)) == 0).all()


def test_map_is_differentiable_through_features_with_constant_weights():
    model = build_model("small_cnn", 5)
    images = torch.randn(2, 3, 48, 48)
    maps = grad_cam(model, images, torch.tensor([0, 2]))
    maps.sum().backward()
    conv = model.features[0][0].weight
    assert conv.grad is not None and conv.grad.abs().sum() > 0
    head_linear = model.head[-1].weight
    assert head_linear.grad is None, "the gradient weights must be constants unless create_graph=True"

    model.zero_grad(set_to_none=True)
    grad_cam(model, images, torch.tensor([0, 2]), create_graph=True).sum().backward()
    assert head_linear.grad is not None and head_linear.grad.abs().sum() > 0


def test_grad_cam_from_reuses_a_forward_pass_and_upsamples_bilinearly():
    model = build_model("small_cnn", 5).eval()
    images = torch.randn(2, 3, 48, 48)
    features = model.features(images)
    logits = model.head(features)
    raw = grad_cam_from(features, logits, torch.tensor([0, 1]), normalise=False)
    assert raw.shape == (2, 6, 6)
    up = grad_cam_from(features, logits, torch.tensor([0, 1]), size=(48, 48))
    expected = minmax_normalise(
        F.interpolate(raw.unsqueeze(1), size=(48, 48), mode="bilinear", align_corners=False).squeeze(1)
    )
    torch.testing.assert_close(up, expected)


def test_training_mode_batchnorm_in_the_head_does_not_couple_images():
    """Attention at block3 leaves BatchNorm in the head; each map must still be its own image's Grad-CAM."""
    model = build_model("small_cnn", 5, attention_layer="block3").train()
    images = torch.randn(4, 3, 48, 48)
    classes = torch.tensor([0, 1, 1, 3])
    maps = grad_cam(model, images, classes)
    features = model.features(images)
    model.head.eval()
    for i in range(4):
        logit = model.head(features[i : i + 1])[0, classes[i]]
        (grad,) = torch.autograd.grad(logit, features)
        cam = torch.relu((grad[i].mean((1, 2)).view(-1, 1, 1) * features[i]).sum(0))
        cam = F.interpolate(cam[None, None], size=(48, 48), mode="bilinear", align_corners=False)[0, 0]
        expected = (cam - cam.min()) / (cam.max() - cam.min())
        torch.testing.assert_close(maps[i], expected, atol=1e-4, rtol=0)
    model.head.train()
    assert all(m.training for m in model.modules())


def test_channels_last_model_gives_the_same_maps():
    model = build_model("small_cnn", 5).eval()
    images = torch.randn(6, 3, 48, 48)
    classes = torch.tensor([0, 1, 2, 3, 4, 0])
    expected = grad_cam(model, images, classes)
    model = model.to(memory_format=torch.channels_last)
    assert model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(grad_cam(model, images, classes), expected, atol=1e-5, rtol=1e-4)


# Mutation-testing survivors (tox -e mutation): a tiny hand-made model, every map checked against Grad-CAM computed
# pair by pair with autograd, on non-square features and images (so a swapped height and width shows).


def _tiny(gap: bool = True) -> SplitModel:
    """Conv features `[N,4,3,5]` of `[N,3,6,10]` images; a GAP-linear head (Grad-CAM weights read off the linear
    layer) or an equivalent head that is not one (weights by backward)."""
    torch.manual_seed(1)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    if not gap:
        head = nn.Sequential(head[0], head[1], head[2], nn.Identity())
    return SplitModel(features, head, name="tiny", attention_layer="x", mean=(0, 0, 0), std=(1, 1, 1)).eval()


def _reference(model, images, classes, image_index, eps=1e-12, size=None, normalise=True):
    out = []
    for cls, img in zip(classes.tolist(), image_index.tolist(), strict=True):
        features = model.features(images).detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.head(features)[img, cls], features)
        cam = torch.relu((grad[img].mean((1, 2)).view(-1, 1, 1) * features[img]).sum(0)).detach()
        if size is not None:
            cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        out.append((cam - cam.min()) / (cam.max() - cam.min() + eps) if normalise else cam)
    return torch.stack(out)


IMAGES = torch.randn(3, 3, 6, 10, generator=torch.Generator().manual_seed(2))
CLASSES = torch.tensor([2, 0, 1, 0])
INDEX = torch.tensor([1, 0, 1, 2])  # two classes of image 1, out of image order


@pytest.mark.parametrize("gap", [True, False])
def test_grad_cam_matches_the_pairwise_definition_with_and_without_gradients(gap):
    model = _tiny(gap)
    assert (gap_linear(model.head) is not None) == gap
    expected = _reference(model, IMAGES, CLASSES, INDEX, eps=0.5, size=(6, 10))
    torch.testing.assert_close(grad_cam(model, IMAGES, CLASSES, image_index=INDEX, eps=0.5), expected)
    with torch.no_grad():
        torch.testing.assert_close(grad_cam(model, IMAGES, CLASSES, image_index=INDEX, eps=0.5), expected)
    with torch.inference_mode():
        features, logits, maps = inference_cam(model, IMAGES, CLASSES, image_index=INDEX, eps=0.5)
    torch.testing.assert_close(maps, expected)
    torch.testing.assert_close(logits, model(IMAGES).detach())
    again = grad_cam_from(features, logits, CLASSES, image_index=INDEX, size=(6, 10), eps=0.5, head=model.head)
    torch.testing.assert_close(again, expected, msg="more maps can be taken from inference_cam's logits")
    one = grad_cam(model, IMAGES[:1], CLASSES[1:2])
    torch.testing.assert_close(one, _reference(model, IMAGES[:1], CLASSES[1:2], torch.tensor([0]), size=(6, 10)))


@pytest.mark.parametrize("gap", [True, False])
def test_raw_maps_are_unscaled_grad_cam_at_feature_and_image_size(gap):
    model = _tiny(gap)
    features = model.features(IMAGES)
    logits = model.head(features)
    raw = grad_cam_from(features, logits, CLASSES, image_index=INDEX, normalise=False, head=model.head)
    assert raw.shape == (4, 3, 5)
    torch.testing.assert_close(raw, _reference(model, IMAGES, CLASSES, INDEX, normalise=False))
    up = grad_cam_from(features, logits, CLASSES, image_index=INDEX, size=(4, 7), normalise=False, head=model.head)
    torch.testing.assert_close(up, _reference(model, IMAGES, CLASSES, INDEX, size=(4, 7), normalise=False))
    empty = grad_cam_from(features, logits, CLASSES[:0], image_index=INDEX[:0], normalise=False, head=model.head)
    assert empty.shape == (0, 3, 5)


def test_gap_linear_head_needs_no_backward_and_keeps_its_weights_constant():
    model = _tiny(gap=True)
    with torch.no_grad():
        features = model.features(IMAGES)
        logits = model.head(features)
        maps = grad_cam_from(features, logits, CLASSES, image_index=INDEX, size=(6, 10), head=model.head)
    torch.testing.assert_close(maps, _reference(model, IMAGES, CLASSES, INDEX, size=(6, 10)))
    features = model.features(IMAGES)
    grad_cam_from(features, model.head(features), CLASSES, image_index=INDEX, head=model.head).sum().backward()
    assert model.head[2].weight.grad is None, "the weights are constants unless create_graph=True"


@pytest.mark.parametrize("gap", [True, False])
def test_create_graph_puts_the_weights_in_the_graph(gap):
    model = _tiny(gap)
    grad_cam(model, IMAGES, CLASSES, image_index=INDEX, create_graph=True).sum().backward()
    assert model.head[2].weight.grad is not None and model.head[2].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    grad_cam(model, IMAGES, CLASSES, image_index=INDEX).sum().backward()
    assert model.head[2].weight.grad is None


def test_gap_linear_recognises_exactly_pool_flatten_linear():
    fc = nn.Linear(4, 3)
    assert gap_linear(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)) is fc
    assert gap_linear(nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1, -1), fc)) is fc
    not_gap = [
        None,
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d((2, 1)), nn.Flatten(), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), fc),
        nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Identity(), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(2), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1, 2), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1, -2), fc),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Identity()),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3), nn.Identity()),
    ]
    for head in not_gap:
        assert gap_linear(head) is None, head
    hooked = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    hooked[2].register_forward_hook(lambda *_: None)
    assert gap_linear(hooked) is None


def test_minmax_normalise_divides_by_range_plus_eps():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out = minmax_normalise(maps, eps=1.0)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 2 / 3], [1 / 3, 0.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))


def test_upsample_bilinear_non_square():
    maps = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(0))
    for size in ((7, 4), (3, 5), (6, 10)):
        expected = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        torch.testing.assert_close(upsample_bilinear(maps, size), expected)


def test_inference_path_default_eps_and_training_batchnorm_head():
    model = _tiny(gap=False)
    with torch.no_grad():
        maps = grad_cam(model, IMAGES, CLASSES, image_index=INDEX)
    torch.testing.assert_close(maps, _reference(model, IMAGES, CLASSES, INDEX, size=(6, 10)))
    model = build_model("small_cnn", 3, attention_layer="block3").train()
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    classes = torch.tensor([0, 2, 1])
    twin = copy.deepcopy(model)  # a training-mode forward updates the running statistics: one call each
    expected = grad_cam(model, images, classes)
    with torch.no_grad():
        torch.testing.assert_close(grad_cam(twin, images, classes), expected, atol=1e-5, rtol=1e-4)
    assert all(m.training for m in twin.modules()), "the head's BatchNorm is back in training mode"


def test_inference_cam_default_eps():
    model = _tiny(gap=True)
    maps = inference_cam(model, IMAGES, CLASSES, image_index=INDEX)[2]
    torch.testing.assert_close(maps, _reference(model, IMAGES, CLASSES, INDEX, size=(6, 10)))
