import copy

import pytest
import torch
from torch import nn

from benchmark.execute.methods import METHODS, build_method
from benchmark.execute.methods.gain import external_loss
from benchmark.execute.models import SplitModel, build_model


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


def by_hand(model, batch, sigma=0.5, omega=10.0, alpha=1.0, omega_e=10.0):
    """The paper's losses (docs/methods.md) written out for the tiny model, per image as with batch 1, then averaged
    over the batch.

    The Grad-CAM weights are the closed form `W[c] / (h w)` (constants); everything else is differentiable in the
    model's parameters, so the gradients of the result can be compared with the method's.
    """
    conv, linear = model.features, model.head[-1]
    W, b = linear.weight, linear.bias
    x = batch["image"]
    B = x.shape[0]
    features = conv(x)
    logits = features.mean((2, 3)) @ W.T + b
    y = batch["labels"]
    p = torch.sigmoid(logits)
    cl = (-(y * torch.log(p) + (1 - y) * torch.log(1 - p))).mean()
    am_sum, e_sum = x.new_zeros(()), x.new_zeros(())
    for i in range(B):
        classes = [c for c in range(2) if y[i, c] > 0.5]
        am_i, e_i = [], []
        for c in classes:
            cam = torch.relu(torch.einsum("k,khw->hw", W[c].detach() / 16.0, features[i]))
            a = (cam - cam.min()) / (cam.max() - cam.min())
            t = 1.0 / (1.0 + torch.exp(-omega * (a - sigma)))
            erased = x[i] * (1 - t)
            score = conv(erased.unsqueeze(0)).mean((2, 3))[0] @ W[c] + b[c]
            am_i.append(torch.sigmoid(score))
            valid = batch["mask"][i] != 255
            h = (batch["mask"][i] == c + 1).float()
            e_i.append(((a - h) ** 2)[valid].mean())
        if classes:
            am_sum = am_sum + sum(am_i) / len(am_i)
            if batch["has_mask"][i]:
                e_sum = e_sum + sum(e_i) / len(e_i)
    am, e = am_sum / B, e_sum / B
    return {"cl": cl, "am": am, "e": e, "total": cl + alpha * am + omega_e * e}


def test_registry_holds_the_three_paper_methods():
    assert {"gradcam", "gain", "gain_ext"} <= set(METHODS)
    with pytest.raises(ValueError, match=r"unknown method 'nope'.*gain_ext"):
        build_method("nope")
    with pytest.raises(ValueError, match=r"unknown parameter.*alhpa.*allowed: alpha"):
        build_method("gain", alhpa=1.0)


def test_paper_defaults():
    gain = build_method("gain_ext")
    assert (gain.alpha, gain.sigma, gain.omega, gain.omega_e) == (1.0, 0.5, 10.0, 10.0)
    assert (gain.masked_bn, gain.e_loss, gain.warmup_epochs, gain.norm_eps) == ("eval", "mse", 2, 1e-12)


def test_gradcam_baseline_is_plain_multilabel_soft_margin():
    model, batch = tiny_model(), tiny_batch()
    parts = build_method("gradcam").training_loss(model, batch, epoch=0)
    expected = nn.MultiLabelSoftMarginLoss()(model(batch["image"]), batch["labels"])
    torch.testing.assert_close(parts["total"], expected)
    assert set(parts) == {"total", "cl"}


def test_gain_losses_match_the_hand_computation():
    model, batch = tiny_model(), tiny_batch()
    expected = {k: float(v.detach()) for k, v in by_hand(model, batch).items()}
    parts = build_method("gain_ext", warmup_epochs=0).training_loss(model, batch, epoch=0)
    for key in ("cl", "am", "e", "total"):
        assert float(parts[key].detach()) == pytest.approx(expected[key], rel=1e-5), key
    assert expected["e"] > 0 and expected["am"] > 0

    gain = build_method("gain", alpha=0.3, sigma=0.4, omega=5.0, warmup_epochs=0).training_loss(model, batch, epoch=0)
    expected = by_hand(model, batch, sigma=0.4, omega=5.0, alpha=0.3, omega_e=0.0)
    assert float(gain["total"].detach()) == pytest.approx(float(expected["total"].detach()), rel=1e-5)
    assert float(gain["e"].detach()) == 0.0


def test_gain_ext_gradients_match_the_hand_computation():
    """Same parameter gradients as the paper's losses (docs/methods.md): constant Grad-CAM weights, the map
    differentiable through the features, L_am's gradient through both the soft mask and the erased-image pass, L_e's
    through the map."""
    batch = tiny_batch()
    ours, ref = tiny_model(), tiny_model()
    build_method("gain_ext", warmup_epochs=0).training_loss(ours, batch, epoch=0)["total"].backward()
    by_hand(ref, batch)["total"].backward()
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_pixel_labelled_images_weigh_one_over_the_batch_size():
    model, batch = tiny_model(), tiny_batch()
    method = build_method("gain_ext", warmup_epochs=0)
    full = float(method.training_loss(model, batch, epoch=0)["e"].detach())
    first = {k: v[:1] for k, v in batch.items()}
    second = {k: v[1:2] for k, v in batch.items()}
    alone = [float(method.training_loss(model, b, epoch=0)["e"].detach()) for b in (first, second)]
    assert full == pytest.approx(sum(alone) / 3, rel=1e-5)
    assert alone[0] != pytest.approx(alone[1])


def test_attention_mining_uses_ground_truth_classes_not_the_top_class():
    model, batch = tiny_model(), tiny_batch()
    batch["labels"] = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    logits = model(batch["image"])
    assert (logits[:, 0] > logits[:, 1]).all(), "class 0 must be the top class for this check to mean anything"
    expected = float(by_hand(model, batch)["am"].detach())
    parts = build_method("gain", warmup_epochs=0).training_loss(model, batch, epoch=0)
    assert float(parts["am"].detach()) == pytest.approx(expected, rel=1e-5)


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


def test_an_empty_mask_charges_the_whole_map_and_omega_e_zero_is_gains_step():
    """The two arms that tell L_e apart from its target: under an empty mask (`mask_control = "empty"`) L_e is the
    mean squared normalised map, the paper's MSE against H = 0; with `omega_e = 0`, GAIN_ext on pixel-labelled
    images takes exactly GAIN's step (what is left is the budget's sampling)."""
    maps = torch.tensor([[[0.5, 1.0], [0.0, 0.2]], [[1.0, 0.0], [0.3, 0.0]]])
    empty = torch.tensor([[[0, 0], [0, 255]], [[0, 0], [0, 0]]])
    loss = external_loss(maps, empty, torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
    assert float(loss) == pytest.approx(((0.25 + 1.0) / 3 + (1.0 + 0.09) / 4) / 2)
    model, batch = build_model("small_cnn", 2), tiny_batch()
    batch["image"] = torch.rand(3, 3, 48, 48)
    batch["mask"] = torch.zeros(3, 48, 48, dtype=torch.long)
    batch["has_mask"] = torch.ones(3, dtype=torch.bool)
    grads = []
    for name, params in (("gain", {}), ("gain_ext", {"omega_e": 0.0}), ("gain_ext", {})):
        m = copy.deepcopy(model)
        parts = build_method(name, warmup_epochs=0, **params).training_loss(m, batch, epoch=0)
        parts["total"].backward()
        grads.append(m.features[0][0].weight.grad.clone())
    assert float(parts["e"].detach()) > 0, "an empty mask is charged"
    torch.testing.assert_close(grads[0], grads[1])
    assert not torch.allclose(grads[0], grads[2]), "L_e moves the step"


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
    without = float(method.training_loss(model, first_two, epoch=0)["am"].detach())
    assert 3 * with_empty == pytest.approx(2 * without, rel=1e-6), "the unlabelled image must add 0 to the batch sum"
    none = {k: v[2:] for k, v in batch.items()}
    assert float(method.training_loss(model, none, epoch=0)["am"].detach()) == 0.0


def test_warmup_is_plain_classification_then_both_attention_losses_start():
    model, batch = tiny_model(), tiny_batch()
    method = build_method("gain_ext", warmup_epochs=2)
    during = method.training_loss(model, batch, epoch=1)
    assert float(during["am"].detach()) == 0.0 and float(during["e"].detach()) == 0.0
    assert float(during["total"].detach()) == pytest.approx(float(during["cl"].detach()))
    after = method.training_loss(model, batch, epoch=2)
    assert float(after["am"].detach()) > 0.0 and float(after["e"].detach()) > 0.0


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


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_masked_pass_uses_running_statistics_only_in_eval_mode(mode):
    batch = tiny_batch()
    batch["image"] = torch.rand(3, 3, 48, 48)
    model = build_model("small_cnn", 2).train()
    shifted = copy.deepcopy(model)
    for m in shifted.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean += 3.0
    method = build_method("gain", warmup_epochs=0, masked_bn=mode)
    am = [float(method.training_loss(m, batch, epoch=0)["am"].detach()) for m in (model, shifted)]
    assert (am[0] != pytest.approx(am[1], rel=1e-4)) == (mode == "eval")


def test_outside_energy_variant_by_hand():
    from benchmark.execute.methods.gain import outside_energy_loss

    raw = torch.tensor([[[2.0, 1.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[[1, 0], [0, 255]], [[1, 1], [0, 0]]])
    loss = outside_energy_loss(raw, mask, torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
    assert float(loss) == pytest.approx((2.0 / 4.0 + 1.0) / 2), "an all-zero map must cost 1, not 0"
    with pytest.raises(ValueError, match="e_loss must be one of mse, outside_energy"):
        build_method("gain_ext", e_loss="l1")


def test_outside_energy_variant_is_wired_into_gain_ext():
    model, batch = tiny_model(), tiny_batch()
    mse = build_method("gain_ext", warmup_epochs=0).training_loss(model, batch, epoch=0)
    energy = build_method("gain_ext", warmup_epochs=0, e_loss="outside_energy").training_loss(model, batch, epoch=0)
    assert float(energy["am"].detach()) == pytest.approx(float(mse["am"].detach()))
    assert 0.0 < float(energy["e"].detach()) < 1.0
    assert float(energy["e"].detach()) != pytest.approx(float(mse["e"].detach()))
