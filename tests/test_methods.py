import copy
import math

import pytest
import torch
from torch import nn

from benchmark.methods import METHODS, build_method
from benchmark.methods.gain import external_loss
from benchmark.models import SplitModel, build_model


def tiny_model() -> SplitModel:
    """features = an identity 1x1 conv; head = GAP + a fixed linear layer, so every quantity has a closed form."""
    identity = nn.Conv2d(3, 3, 1, bias=False)
    linear = nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [-0.3, 0.8, 0.6]]))
        linear.bias.copy_(torch.tensor([0.1, -0.2]))
        identity.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    return SplitModel(identity, head, name="tiny", attention_layer="input", mean=(0, 0, 0), std=(1, 1, 1))


def tiny_batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    image = torch.rand(3, 3, 4, 4, generator=g)
    labels = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    mask = torch.zeros(3, 4, 4, dtype=torch.long)
    mask[0, :2, :2] = 1
    mask[0, 2:, 2:] = 2
    mask[0, 3, 0] = 255
    mask[1, 1:3, 1:3] = 2
    return {
        "image": image,
        "labels": labels,
        "mask": mask,
        "has_mask": torch.tensor([True, False, False]),
        "index": torch.arange(3),
    }


def by_hand(model, batch, sigma=0.5, omega=10.0):
    """Closed-form Grad-CAM, soft mask, L_am and L_e of the tiny model, written out without autograd."""
    W, b = model.head[-1].weight.detach(), model.head[-1].bias.detach()
    x = batch["image"]
    per_image_am, per_image_e = [], []
    for i in range(x.shape[0]):
        classes = [c for c in range(2) if batch["labels"][i, c] > 0.5]
        am, e = [], []
        for c in classes:
            cam = torch.relu(torch.einsum("k,khw->hw", W[c] / 16.0, x[i]))
            a = (cam - cam.min()) / (cam.max() - cam.min())
            t = 1.0 / (1.0 + torch.exp(-omega * (a - sigma)))
            erased = x[i] * (1 - t)
            am.append(1.0 / (1.0 + math.exp(-float(W[c] @ erased.mean((1, 2)) + b[c]))))
            valid = batch["mask"][i] != 255
            h = (batch["mask"][i] == c + 1).float()
            e.append(float(((a - h) ** 2)[valid].mean()))
        if classes:
            per_image_am.append(sum(am) / len(am))
            if batch["has_mask"][i]:
                per_image_e.append(sum(e) / len(e))
    logits = x.mean((2, 3)) @ W.T + b
    y = batch["labels"]
    cl = float((-(y * torch.log(torch.sigmoid(logits)) + (1 - y) * torch.log(1 - torch.sigmoid(logits)))).mean())
    mean = lambda v: sum(v) / len(v) if v else 0.0  # noqa: E731
    return cl, mean(per_image_am), mean(per_image_e)


def test_registry_holds_the_three_paper_methods():
    assert {"gradcam", "gain", "gain_ext"} <= set(METHODS)
    with pytest.raises(ValueError, match=r"unknown method 'nope'.*gain_ext"):
        build_method("nope")
    with pytest.raises(ValueError, match=r"unknown parameter.*alhpa.*allowed: alpha"):
        build_method("gain", alhpa=1.0)


def test_paper_defaults():
    gain = build_method("gain_ext")
    assert (gain.alpha, gain.sigma, gain.omega, gain.omega_e) == (1.0, 0.5, 10.0, 10.0)


def test_gradcam_baseline_is_plain_multilabel_soft_margin():
    model, batch = tiny_model(), tiny_batch()
    parts = build_method("gradcam").training_loss(model, batch, epoch=0)
    expected = nn.MultiLabelSoftMarginLoss()(model(batch["image"]), batch["labels"])
    torch.testing.assert_close(parts["total"], expected)
    assert set(parts) == {"total", "cl"}


def test_gain_losses_match_the_hand_computation():
    model, batch = tiny_model(), tiny_batch()
    cl, am, e = by_hand(model, batch)
    parts = build_method("gain_ext", warmup_epochs=0).training_loss(model, batch, epoch=0)
    assert float(parts["cl"].detach()) == pytest.approx(cl, rel=1e-5)
    assert float(parts["am"].detach()) == pytest.approx(am, rel=1e-5)
    assert float(parts["e"].detach()) == pytest.approx(e, rel=1e-5)
    assert float(parts["total"].detach()) == pytest.approx(cl + 1.0 * am + 10.0 * e, rel=1e-5)

    gain = build_method("gain", alpha=0.3, sigma=0.4, omega=5.0, warmup_epochs=0).training_loss(model, batch, epoch=0)
    cl, am, _ = by_hand(model, batch, sigma=0.4, omega=5.0)
    assert float(gain["total"].detach()) == pytest.approx(cl + 0.3 * am, rel=1e-5)
    assert float(gain["e"].detach()) == 0.0


def test_attention_mining_uses_ground_truth_classes_not_the_top_class():
    model, batch = tiny_model(), tiny_batch()
    batch["labels"] = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    logits = model(batch["image"])
    assert (logits[:, 0] > logits[:, 1]).all(), "class 0 must be the top class for this check to mean anything"
    _, am, _ = by_hand(model, batch)
    parts = build_method("gain", warmup_epochs=0).training_loss(model, batch, epoch=0)
    assert float(parts["am"].detach()) == pytest.approx(am, rel=1e-5)


def test_external_loss_by_hand():
    maps = torch.tensor([[[0.5, 1.0], [0.0, 0.2]]])
    mask = torch.tensor([[[1, 1], [0, 255]]])
    loss = external_loss(maps, mask, torch.tensor([0]), torch.tensor([0]), 1)
    assert float(loss) == pytest.approx((0.25 + 0.0 + 0.0) / 3)


def test_external_loss_has_no_effect_without_pixel_labels():
    model, batch = build_model("small_cnn", 2), tiny_batch()
    batch["image"] = torch.rand(3, 3, 48, 48)
    batch["mask"] = torch.zeros(3, 48, 48, dtype=torch.long)
    batch["has_mask"] = torch.zeros(3, dtype=torch.bool)
    grads = []
    for name in ("gain", "gain_ext"):
        m = copy.deepcopy(model)
        parts = build_method(name, warmup_epochs=0).training_loss(m, batch, epoch=0)
        parts["total"].backward()
        grads.append(m.features[0][0].weight.grad.clone())
        assert float(parts["e"].detach()) == 0.0
    torch.testing.assert_close(grads[0], grads[1])


def test_attention_mining_gradient_reaches_the_parameters():
    model, batch = build_model("small_cnn", 2), tiny_batch()
    batch["image"] = torch.rand(3, 3, 48, 48)
    parts = build_method("gain", warmup_epochs=0).training_loss(model, batch, epoch=0)
    parts["am"].backward()
    for p in (model.features[0][0].weight, model.features[-1][1].weight, model.head[-1].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_images_without_positive_labels_add_no_attention_mining_loss():
    model, batch = tiny_model(), tiny_batch()
    method = build_method("gain", warmup_epochs=0)
    with_empty = float(method.training_loss(model, batch, epoch=0)["am"].detach())
    first_two = {k: v[:2] for k, v in batch.items()}
    assert with_empty == pytest.approx(float(method.training_loss(model, first_two, epoch=0)["am"].detach()), rel=1e-6)
    none = {k: v[2:] for k, v in batch.items()}
    assert float(method.training_loss(model, none, epoch=0)["am"].detach()) == 0.0


def test_warmup_switches_attention_mining_on_later():
    model, batch = tiny_model(), tiny_batch()
    method = build_method("gain", warmup_epochs=2)
    assert float(method.training_loss(model, batch, epoch=1)["am"].detach()) == 0.0
    assert float(method.training_loss(model, batch, epoch=2)["am"].detach()) > 0.0


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_masked_pass_batchnorm_mode(mode):
    model = build_model("small_cnn", 2).train()
    batch = tiny_batch()
    batch["image"] = torch.rand(3, 3, 48, 48)
    reference = copy.deepcopy(model)
    reference(batch["image"])
    build_method("gain", warmup_epochs=0, masked_bn=mode).training_loss(model, batch, epoch=0)
    bn, ref_bn = model.features[0][1], reference.features[0][1]
    same = torch.allclose(bn.running_mean, ref_bn.running_mean)
    assert same == (mode == "eval")
    assert all(m.training for m in model.modules()), "the training mode must be restored after the masked pass"


def test_outside_energy_variant_by_hand():
    from benchmark.methods.gain import outside_energy_loss

    raw = torch.tensor([[[2.0, 1.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1, 0], [0, 255]], [[1, 1], [0, 0]]])
    loss = outside_energy_loss(raw, mask, torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
    assert float(loss) == pytest.approx((2.0 / 4.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="e_loss must be one of mse, outside_energy"):
        build_method("gain_ext", e_loss="l1")


def test_outside_energy_variant_is_wired_into_gain_ext():
    model, batch = tiny_model(), tiny_batch()
    mse = build_method("gain_ext", warmup_epochs=0).training_loss(model, batch, epoch=0)
    energy = build_method("gain_ext", warmup_epochs=0, e_loss="outside_energy").training_loss(model, batch, epoch=0)
    assert float(energy["am"].detach()) == pytest.approx(float(mse["am"].detach()))
    assert 0.0 < float(energy["e"].detach()) < 1.0
    assert float(energy["e"].detach()) != pytest.approx(float(mse["e"].detach()))
