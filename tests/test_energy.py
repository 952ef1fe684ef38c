"""The Energy loss (Rao et al., ICCV 2023) by hand, at gradient level, and in training."""

import math

import pytest
import torch
from torch import nn

from benchmark.execute.methods import build_method
from benchmark.execute.methods.energy import energy_loss
from benchmark.execute.models import SplitModel


def linear_model(weight: list[float] | list[list[float]], dtype=torch.float32) -> SplitModel:
    """Features are the image itself; the head is GAP + linear (one row of `weight` per class, a flat list: one
    class), so Grad-CAM's weights are `W[c] / (h w)`."""
    w = torch.tensor(weight, dtype=dtype)
    w = w if w.dim() == 2 else w.unsqueeze(0)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w.shape[1], w.shape[0]))
    with torch.no_grad():
        head[2].weight.copy_(w)
        head[2].bias.zero_()
    return SplitModel(
        nn.Identity(), head.to(dtype), name="linear", attention_layer="input", mean=(0.0,) * 3, std=(1.0,) * 3
    )


def hand_batch() -> dict[str, torch.Tensor]:
    """Image 0 (pixel-labelled): channel 0 [[2,0],[1,0]], channel 1 [[0,1],[0,3]], its class on pixel (0,0), pixel
    (1,1) ignore; image 1: labelled, outside the budget."""
    image = torch.tensor([[[[2.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 3.0]]]]).repeat(2, 1, 1, 1)
    mask = torch.tensor([[[1, 0], [0, 255]], [[0, 0], [0, 0]]])
    return {
        "image": image,
        "labels": torch.tensor([[1.0], [1.0]]),
        "mask": mask,
        "has_mask": torch.tensor([True, False]),
        "index": torch.arange(2),
    }


def test_energy_loss_by_hand():
    # Grad-CAM of image 0: relu(0.25 * F0 - 0.25 * F1) = [[0.5, 0], [0.25, 0]]; the ignore pixel (1,1) is 0 anyway.
    # Inside the mask: 0.5 of 0.75 -> outside share 1/3; image 1 has no mask (adds 0); batch of 2 -> 1/6.
    model, batch = linear_model([1.0, -1.0]), hand_batch()
    features = model.features(batch["image"])
    logits = model.head(features)
    assert energy_loss(model, features, logits, batch).item() == pytest.approx(1 / 6)
    parts = build_method("energy", lam=3.0).training_loss(model, batch, epoch=0)
    cl = nn.functional.binary_cross_entropy_with_logits(torch.tensor([[-0.25], [-0.25]]), torch.ones(2, 1))
    assert parts["energy"].item() == pytest.approx(1 / 6)
    assert parts["cl"].item() == pytest.approx(cl.item())
    assert parts["total"].item() == pytest.approx(cl.item() + 3.0 * (1 / 6))


def test_energy_loss_by_hand_two_classes_and_an_ignore_pixel_that_carries_energy():
    """Image 0 holds classes 0 and 1 (mask [[1,2],[0,255]]); class 1's map puts most of its energy on the ignore
    pixel, which counts neither inside nor outside. Image 1 (class 0, no mask) adds 0."""
    model, batch = linear_model([[1.0, 0.0], [0.5, 1.0]]), hand_batch()
    batch["labels"] = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    batch["mask"][0] = torch.tensor([[1, 2], [0, 255]])
    features = model.features(batch["image"])
    # class 0: 0.25 * F0 = [[0.5, 0], [0.25, 0]]: 0.5 of 0.75 inside -> outside share 1/3.
    # class 1: 0.25 * (0.5 F0 + F1) = [[0.25, 0.25], [0.125, 0.75]]: without the ignore pixel 0.25 of 0.625 inside
    # -> 3/5 (ignore counted outside: 1.125/1.375; inside: 0.375/1.375). Image 0: (1/3 + 3/5) / 2 = 7/15; B = 2.
    loss = energy_loss(model, features, model.head(features), batch)
    assert loss.item() == pytest.approx(7 / 30)


def test_an_all_zero_map_costs_one_without_nan_and_no_mask_costs_nothing():
    model, batch = linear_model([-1.0, -1.0]), hand_batch()  # every Grad-CAM value negative: relu gives 0
    features = model.features(batch["image"])
    loss = energy_loss(model, features, model.head(features), batch)
    assert loss.item() == pytest.approx(0.5)  # 1 for image 0, over a batch of 2
    batch["has_mask"][:] = False
    loss = energy_loss(model, features, model.head(features), batch)
    assert loss.item() == 0.0 and not torch.isnan(loss)
    parts = build_method("energy").training_loss(model, batch, epoch=0)
    assert parts["total"].item() == parts["cl"].item()


def conv_model() -> SplitModel:
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1), nn.Softplus())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2))
    with torch.no_grad():  # mixed signs: each class map is positive on part of the image only
        head[2].weight.copy_(torch.tensor([[1.0, -0.5, 0.8], [0.3, 0.9, -0.4]]))
    model = SplitModel(features, head, name="tiny", attention_layer="conv2", mean=(0.0,) * 3, std=(1.0,) * 3)
    return model.double()


def conv_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    mask = torch.zeros(3, 6, 6, dtype=torch.long)
    mask[0, 1:4, 1:4] = 1
    mask[0, 4:, 4:] = 2
    mask[1, 2:, :3] = 2
    return {
        "image": torch.rand(3, 3, 6, 6, generator=g, dtype=torch.float64),
        "labels": torch.tensor([[1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64),
        "mask": mask,
        "has_mask": torch.tensor([True, True, False]),
        "index": torch.arange(3),
    }


def test_energy_gradient_matches_finite_differences_through_the_map_and_its_weights():
    """The update is the exact gradient of the total loss, Grad-CAM's channel weights included (Rao et al. optimise
    the attribution itself): central differences over every parameter of the head and a slice of the features."""
    model, batch = conv_model(), conv_batch()
    method = build_method("energy", lam=2.0)
    model.zero_grad()
    method.training_loss(model, batch, epoch=0)["total"].backward()
    checked = [model.head[2].weight, model.head[2].bias, model.features[2].weight]
    h = 1e-6
    for param in checked:
        flat = param.data.view(-1)
        for i in range(min(flat.numel(), 12)):
            old = flat[i].item()
            flat[i] = old + h
            up = method.training_loss(model, batch, epoch=0)["total"].item()
            flat[i] = old - h
            down = method.training_loss(model, batch, epoch=0)["total"].item()
            flat[i] = old
            assert param.grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


def test_a_gradient_step_moves_the_map_onto_the_mask():
    model, batch = conv_model(), conv_batch()
    method = build_method("energy", lam=1.0)

    def energy() -> torch.Tensor:
        features = model.features(batch["image"])
        return energy_loss(model, features, model.head(features), batch)

    before = energy()
    assert 0 < before.item() < 2 / 3, "some map must be neither all-zero nor all on the mask"
    before.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:  # the head's bias does not enter Grad-CAM
                p -= 0.5 * p.grad
    after = energy()
    assert 0 < before.item() < 1 and after.item() < before.item()
    assert math.isfinite(method.training_loss(model, batch, epoch=0)["total"].item())
