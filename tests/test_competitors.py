"""The equal-budget competitors: copy-paste, object removal, RRR, and GAIN's ablations."""

import copy
import math

import pytest
import torch
from torch import nn

from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.methods import build_method
from benchmark.execute.methods.counterfactual import paste_objects, remove_objects
from benchmark.execute.methods.rrr import input_gradient_penalty
from benchmark.execute.models import SplitModel, build_model
from benchmark.execute.train import load_data, run

NEW = ("copy_paste", "object_removal", "counterfactual", "rrr", "ext_only", "am_only", "energy")
MASK_METHODS = ("copy_paste", "object_removal", "counterfactual", "rrr", "ext_only", "energy")
OBJECT = 5.0  # the object's colour: no background pixel comes near it


def scene() -> dict[str, torch.Tensor]:
    """Image 0 (pixel-labelled): class 0 in a 3x3 square of colour OBJECT, class 1 in a corner; image 1: class 1
    only; image 2: class 0 (not a paste target for it); image 3: no label, outside the budget but fully masked."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(4, 3, 8, 8, generator=g)
    mask = torch.zeros(4, 8, 8, dtype=torch.long)
    mask[0, 2:5, 2:5] = 1
    mask[0, 2:5, 5] = 255
    mask[0, 6:, 6:] = 2
    image[0, :, 2:5, 2:5] = OBJECT
    mask[1, :4] = 2
    mask[2, 4:] = 1
    mask[3] = 1
    return {
        "image": image,
        "labels": torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]),
        "mask": mask,
        "has_mask": torch.tensor([True, False, False, False]),
        "index": torch.arange(4),
    }


def small_cnn_scene(has_mask: bool = True) -> tuple[SplitModel, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("small_cnn", 2)
    batch = scene()
    batch["image"] = nn.functional.interpolate(batch["image"], size=48, mode="nearest")
    batch["mask"] = nn.functional.interpolate(batch["mask"][:, None].float(), size=48, mode="nearest")[:, 0].long()
    batch["has_mask"] = torch.tensor([has_mask, False, False, False])
    return model, batch


def test_registry_and_defaults():
    for name in MASK_METHODS:
        assert build_method(name).uses_pixel_labels, name
    assert not build_method("am_only").uses_pixel_labels, "GAIN without warm-up reads no pixel label"
    assert build_method("rrr").lam == 10.0 and build_method("rrr").HPARAMS["lam"].log
    assert build_method("copy_paste").scale_jitter is False and build_method("copy_paste").blend == "hard"
    with pytest.raises(ValueError, match="blend must be one of hard, gaussian"):
        build_method("copy_paste", blend="poisson")
    with pytest.raises(ValueError, match="fill must be one of mean, blur"):
        build_method("counterfactual", fill="zeros")
    with pytest.raises(ValueError, match=r"unknown parameter.*alpha"):
        build_method("ext_only", alpha=1.0)
    with pytest.raises(ValueError, match=r"unknown parameter.*warmup_epochs"):
        build_method("am_only", warmup_epochs=2)


def test_paste_copies_only_mask_pixels_onto_images_without_the_class_and_adds_the_label():
    batch = scene()
    images, labels = paste_objects(batch)
    # the pair (0, class 0) can only go to image 1 (image 2 has class 0, image 3 is a valid target too)
    # the pair (0, class 1) can go to image 2 or 3; image 1 has class 1
    assert images.shape[0] == 2
    for pasted, y, c in zip(images, labels, (0, 1), strict=True):
        cut = batch["mask"][0] == c + 1
        target = [j for j in range(4) if torch.equal(pasted[:, ~cut], batch["image"][j][:, ~cut])]
        assert len(target) == 1 and batch["labels"][target[0], c] == 0, "pasted onto one image without the class"
        torch.testing.assert_close(pasted[:, cut], batch["image"][0][:, cut])
        expected = batch["labels"][target[0]].clone()
        expected[c] = 1.0
        torch.testing.assert_close(y, expected)
    assert (images[0] == OBJECT).sum() == 3 * 9, "the object and nothing around it (the 255 rim stays the target's)"


def test_gaussian_blend_stays_inside_the_mask():
    batch = scene()
    torch.manual_seed(1)
    hard, _ = paste_objects(batch)
    torch.manual_seed(1)
    soft, _ = paste_objects(batch, blend="gaussian", blend_sigma=1.0)
    cut = batch["mask"][0] == 1
    torch.testing.assert_close(soft[0][:, ~cut], hard[0][:, ~cut])
    assert not torch.equal(soft[0][:, cut], hard[0][:, cut]), "the edge is feathered"


def test_scale_jitter_resizes_the_cut_out_and_its_mask_together():
    batch = scene()
    batch["labels"][0, 1] = 0.0  # paste class 0 only
    source_pixels = batch["image"][0][:, batch["mask"][0] == 1].T
    for scale, (low, high) in ((2.0, (25, 49)), (0.5, (1, 4))):
        images, _ = paste_objects(batch, scale_jitter=True, scale_low=scale, scale_high=scale)
        changed = (images[0] != batch["image"][1]).any(0) & (images[0] != batch["image"][3]).any(0)
        pixels = images[0][:, changed].T
        assert low <= pixels.shape[0] <= high, (scale, pixels.shape[0])  # 3x3 -> about 6x6 / 1.5x1.5 (nearest)
        assert all((p == source_pixels).all(1).any() for p in pixels), "every pasted pixel is a source mask pixel"
    batch["mask"][0, 3, 3] = 0  # a ring: shrunk about its centroid, nothing is left
    images, labels = paste_objects(batch, scale_jitter=True, scale_low=0.1, scale_high=0.1)
    assert images.shape[0] == labels.shape[0] == 0, "no label without a pasted pixel"


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_removal_leaves_no_object_pixel_and_drops_its_label(fill):
    batch = scene()
    images, labels = remove_objects(batch, fill=fill, dilate=0)
    assert images.shape[0] == 2, "one counterfactual per (pixel-labelled image, class)"
    erased = batch["mask"][0] == 1
    assert (images[0] < 1.0).all(), "no pixel of the object's colour is left"
    torch.testing.assert_close(images[0][:, ~erased], batch["image"][0][:, ~erased])
    if fill == "mean":
        outside = batch["image"][0][:, ~erased].mean(1)
        torch.testing.assert_close(images[0][:, erased], outside[:, None].expand(3, 9))
    torch.testing.assert_close(labels, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))


def test_removal_dilation_drops_a_class_it_swallows_and_keeps_one_it_does_not():
    batch = scene()
    batch["mask"][0, 6:, 6:] = 0
    batch["mask"][0, 5, 5] = 2  # a one-pixel class-1 object next to the class-0 square
    _, labels = remove_objects(batch, dilate=1)
    assert labels[0].tolist() == [0.0, 0.0]
    _, labels = remove_objects(batch, dilate=0)
    assert labels[0].tolist() == [0.0, 1.0]


class _SpyBatch(dict):
    """Counts how many mask pixels a method reads through `batch["mask"]`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mask_reads = 0

    def __getitem__(self, key):
        if key == "mask":
            self.mask_reads += super().__getitem__("mask").numel()
        return super().__getitem__(key)


@pytest.mark.parametrize("name", NEW)
def test_without_pixel_labelled_images_every_method_is_its_mask_free_self(name):
    model, batch = small_cnn_scene(has_mask=False)
    spy = _SpyBatch(batch)
    method = build_method(name, **({"warmup_epochs": 0} if name == "ext_only" else {}))
    reference = build_method(
        "gain" if name == "am_only" else "gradcam", **({"warmup_epochs": 0} if name == "am_only" else {})
    )
    ours, ref = copy.deepcopy(model), copy.deepcopy(model)
    parts = method.training_loss(ours, spy, epoch=0)
    expected = reference.training_loss(ref, batch, epoch=0)
    assert spy.mask_reads == 0, "no mask pixel may be read outside the budget"
    assert parts["total"].item() == expected["total"].item()
    assert all(v.item() == 0.0 for k, v in parts.items() if k not in ("total", "cl", "am", *method.DIAGNOSTICS))
    parts["total"].backward()
    expected["total"].backward()
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)


@pytest.mark.parametrize("name", MASK_METHODS)
def test_only_the_budget_masks_are_read(name):
    """The same result whatever the masks outside the budget hold; the pixels read are the budget rows' only."""
    model, batch = small_cnn_scene(has_mask=True)
    other = copy.deepcopy(batch)
    other["mask"][1:] = torch.randint(0, 3, other["mask"][1:].shape)
    results = []
    for b in (batch, other):
        torch.manual_seed(7)
        spy = _SpyBatch(b)
        m = copy.deepcopy(model)
        parts = build_method(name, **({"warmup_epochs": 0} if name == "ext_only" else {})).training_loss(
            m, spy, epoch=0
        )
        parts["total"].backward()
        results.append(({k: v.item() for k, v in parts.items()}, [p.grad.clone() for p in m.parameters()]))
        assert spy.mask_reads > 0
    assert results[0][0] == results[1][0]
    for g, h in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(g, h, rtol=0, atol=0)
    assert any(v > 0 for k, v in results[0][0].items() if k not in ("total", "cl")), "the mask part must be active"


def test_copy_paste_loss_is_l_cl_over_originals_and_pasted_images():
    model, batch = small_cnn_scene()
    torch.manual_seed(3)
    parts = build_method("counterfactual").training_loss(model, batch, epoch=0)
    torch.manual_seed(3)
    pasted, pasted_y = paste_objects(batch)
    removed, removed_y = remove_objects(batch)
    images = torch.cat([batch["image"], pasted, removed])
    labels = torch.cat([batch["labels"], pasted_y, removed_y])
    logits = model(images)
    expected = nn.functional.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(parts["total"], expected)
    n = (4, pasted.shape[0], removed.shape[0])
    assert parts["total"].item() == pytest.approx(
        (n[0] * parts["cl"].item() + n[1] * parts["paste"].item() + n[2] * parts["removal"].item()) / sum(n)
    )


class _Spatial(nn.Module):
    """Multiplies the input by a fixed spatial weight: its input gradient is zero wherever the weight is."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, x):
        return x * self.weight


def rrr_model(weight: torch.Tensor, dtype=torch.float32) -> SplitModel:
    torch.manual_seed(0)
    features = nn.Sequential(_Spatial(weight), nn.Conv2d(3, 4, 3, padding=1), nn.Tanh())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    return SplitModel(features, head, name="t", attention_layer="x", mean=(0, 0, 0), std=(1, 1, 1)).to(dtype)


def test_rrr_penalty_is_zero_when_the_input_gradient_vanishes_outside_the_mask():
    batch = scene()
    batch["image"] = batch["image"].clamp(max=1.0)
    allowed = (batch["mask"][0] > 0).float()  # image 0's class masks and its ignore rim
    zero = input_gradient_penalty(rrr_model(allowed.expand(3, 8, 8)), batch)
    assert zero.item() == 0.0
    everywhere = input_gradient_penalty(rrr_model(torch.ones(3, 8, 8)), batch)
    assert everywhere.item() > 0.0


def test_rrr_penalty_matches_finite_differences_and_is_double_backpropagated():
    batch = {k: (v.double() if v.is_floating_point() else v) for k, v in scene().items()}
    batch["image"] = batch["image"].clamp(max=1.0)
    batch["has_mask"] = torch.tensor([True, True, False, True])
    model = rrr_model(torch.ones(3, 8, 8, dtype=torch.float64), torch.float64)

    def log_p(x, y):
        return (nn.functional.logsigmoid(model(x[None]))[0] * y).sum()

    expected = 0.0
    h = 1e-6
    for b in (0, 1, 3):
        x, y = batch["image"][b], batch["labels"][b]
        grad = torch.zeros_like(x)
        for i in range(x.numel()):
            e = torch.zeros(x.numel(), dtype=x.dtype)
            e[i] = h
            e = e.view_as(x)
            grad.view(-1)[i] = (log_p(x + e, y) - log_p(x - e, y)) / (2 * h)
        m = batch["mask"][b]
        inside = (m == 255) | ((m > 0) & (m != 255) & (y[(m.clamp(1, 2) - 1)] > 0.5))
        expected += (grad * ~inside).pow(2).sum().item()
    expected /= 4
    penalty = input_gradient_penalty(model, batch)
    assert expected > 0 and penalty.item() == pytest.approx(expected, rel=1e-6)

    parts = build_method("rrr", lam=2.0).training_loss(model, batch, epoch=0)
    assert parts["total"].item() == pytest.approx(parts["cl"].item() + 2.0 * expected, rel=1e-6)
    weight = model.features[1].weight
    (analytic,) = torch.autograd.grad(penalty, weight)
    idx = (1, 2, 0, 1)
    weight.data[idx] += 1e-6
    up = input_gradient_penalty(model, batch).item()
    weight.data[idx] -= 2e-6
    down = input_gradient_penalty(model, batch).item()
    weight.data[idx] += 1e-6
    assert analytic[idx].item() == pytest.approx((up - down) / 2e-6, rel=1e-4), "double backprop reaches the weights"


def test_ext_only_is_gain_ext_with_alpha_zero_at_gradient_level():
    model, batch = small_cnn_scene()
    for epoch, warmup in ((0, 0), (0, 2), (3, 2)):
        ours, ref = copy.deepcopy(model), copy.deepcopy(model)
        parts = build_method("ext_only", warmup_epochs=warmup).training_loss(ours, batch, epoch=epoch)
        expected = build_method("gain_ext", alpha=0.0, warmup_epochs=warmup).training_loss(ref, batch, epoch=epoch)
        assert set(parts) == {"total", "cl", "e"} and (parts["e"].item() > 0) == (epoch >= warmup)
        torch.testing.assert_close(parts["total"], expected["total"], rtol=0, atol=0)
        parts["total"].backward()
        expected["total"].backward()
        for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0)


def test_am_only_has_no_warm_up():
    model, batch = small_cnn_scene()
    parts = build_method("am_only").training_loss(copy.deepcopy(model), batch, epoch=0)
    expected = build_method("gain", warmup_epochs=0).training_loss(copy.deepcopy(model), batch, epoch=0)
    assert parts["am"].item() > 0
    assert parts["total"].item() == expected["total"].item()
    assert build_method("am_only").guided(0)


SMALL = {"n_train": 64, "n_val": 10, "n_shifted": 10, "n_counterfactual": 5}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def tiny_data(tiny_root):
    return load_data(RunSpec(method="gradcam", dataset_params=SMALL), tiny_root)


@pytest.mark.parametrize("name", NEW)
def test_one_epoch_of_real_training_records_a_finite_curve(name, tmp_path, tiny_data, tiny_root):
    params = {"warmup_epochs": 0} if name == "ext_only" else {}
    spec = RunSpec(
        method=name,
        method_params=params,
        budget=0 if name == "am_only" else 9,
        dataset_params=SMALL,
        train=TrainSettings(epochs=1, batch_size=32, mask_batch=4),
    )
    record = run(spec, tmp_path, data=tiny_data, data_root=tiny_root, progress=False)  # held-out data there too
    assert record["status"] == "complete", record["error"]
    (epoch,) = record["curve"]
    parts = {k: v for k, v in epoch.items() if k not in ("epoch", "seconds", "steps_images")}
    assert {"total", "cl"} <= set(parts) and all(math.isfinite(v) for v in parts.values())
    if name != "am_only":
        assert max(v for k, v in parts.items() if k not in ("total", "cl")) > 0, "the mask part must have run"
