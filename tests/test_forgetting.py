"""The forgetting controls do what they say (the probe trains the last linear layer alone, L2-SP pulls toward the
start), and GAIN's attention placebo erases exactly the area T(A) would, elsewhere."""

import pytest
import torch

from benchmark.core.spec import RunSpec
from benchmark.execute.methods import build_method
from benchmark.execute.methods.forgetting import last_linear
from benchmark.execute.methods.gain import random_shift
from benchmark.execute.models import build_model


def _batch(n=8, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, 2, generator=g) > 0.5).float()
    labels[0, 0] = 1.0
    return {"image": torch.randn(n, 3, size, size, generator=g), "labels": labels,
            "has_mask": torch.zeros(n, dtype=torch.bool)}  # fmt: skip


def _steps(method, model, steps=3):
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        parts = method.training_loss(model, _batch(seed=step), epoch=5)
        optimiser.zero_grad(set_to_none=True)
        parts["total"].backward()
        optimiser.step()
    return parts


def test_the_linear_probe_trains_the_last_linear_layer_alone():
    torch.manual_seed(0)
    model = build_model("small_cnn", 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _steps(build_method("linear_probe"), model)
    last = len(model.head) - 1  # attention at block4: the head is pooling, flattening and the linear layer
    probe = {f"head.{last}.weight", f"head.{last}.bias"}
    assert last_linear(model) is model.head[last] and isinstance(model.head[last], torch.nn.Linear)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == probe, "no other weight, and no BatchNorm statistic, moved"
    assert all(p.requires_grad for p in model.parameters()), "the model is left trainable for whatever reads it"


def test_l2sp_pulls_toward_the_start():
    torch.manual_seed(0)
    model = build_model("small_cnn", 2)
    method = build_method("l2sp", alpha=0.5)
    parts = method.training_loss(model, _batch(), epoch=0)
    assert parts["sp"].item() == 0.0 and torch.equal(parts["total"], parts["cl"]), "at the start, L_cl alone"
    with torch.no_grad():
        model.head[-1].weight.add_(0.1)
    parts = method.training_loss(model, _batch(), epoch=0)
    expected = 0.01 * model.head[-1].weight.numel()
    assert parts["sp"].item() == pytest.approx(expected, rel=1e-4)
    assert parts["total"].item() == pytest.approx(parts["cl"].item() + 0.25 * expected, rel=1e-4)
    weak, strong = (build_model("small_cnn", 2) for _ in range(2))
    strong.load_state_dict(weak.state_dict())
    start = {k: v.clone() for k, v in weak.state_dict().items()}

    def moved(model):
        return sum((model.state_dict()[k].float() - v.float()).pow(2).sum().item() for k, v in start.items()
                   if "running" not in k and "num_batches" not in k)  # fmt: skip

    torch.manual_seed(1)
    _steps(build_method("l2sp", alpha=1e-4), weak, steps=5)
    torch.manual_seed(1)
    _steps(build_method("l2sp", alpha=10.0), strong, steps=5)
    assert moved(strong) < moved(weak), "a heavier pull keeps the weights nearer the start"


def test_before_finetuning_takes_no_step():
    method = build_method("no_finetune")
    assert not method.fine_tunes and build_method("gradcam").fine_tunes
    with pytest.raises(RuntimeError, match="takes no training step"):
        method.training_loss(build_model("small_cnn", 2), _batch(), epoch=0)


def test_the_random_placebo_moves_the_soft_mask_and_keeps_its_area_and_shape():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 1, 12, 12, generator=g)
    masks[:, :, :4, :4] += 3.0
    shifted = random_shift(masks, torch.Generator().manual_seed(1))
    assert shifted.shape == masks.shape
    assert torch.allclose(shifted.sum((1, 2, 3)), masks.sum((1, 2, 3))), "exactly the area T(A) would erase"
    for m, s in zip(masks, shifted, strict=True):
        assert torch.equal(torch.sort(m.flatten()).values, torch.sort(s.flatten()).values), "the same values"
        rolled = [torch.roll(m, (dy, dx), (1, 2)) for dy in range(12) for dx in range(12)]
        assert any(torch.equal(s, r) for r in rolled), "a circular shift of its own map"
    assert not torch.equal(shifted, masks), "somewhere else"


def test_gain_erases_its_attended_region_or_the_placebo_with_everything_else_equal():
    soft = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    attended = build_method("gain", masked_bn="batch")
    inverted = build_method("gain", masked_bn="batch", attention_control="inverted")
    random = build_method("gain", masked_bn="batch", attention_control="random")
    assert torch.equal(attended.erase_mask(soft), soft)
    assert torch.equal(inverted.erase_mask(soft), 1.0 - soft)
    torch.manual_seed(3)
    placed = random.erase_mask(soft)
    assert torch.allclose(placed.sum((1, 2, 3)), soft.sum((1, 2, 3))) and not torch.equal(placed, soft)
    torch.manual_seed(0)
    model = build_model("small_cnn", 2)
    losses = {}
    for name, method in (("attended", attended), ("inverted", inverted)):
        losses[name] = method.training_loss(model, _batch(), epoch=5)
    assert torch.equal(losses["attended"]["cl"], losses["inverted"]["cl"]), "the classification pass is the same"
    assert not torch.equal(losses["attended"]["am"], losses["inverted"]["am"]), "another region erased"
    with pytest.raises(ValueError, match="attention_control must be one of attended, random, inverted"):
        build_method("gain", attention_control="shuffled")


def test_the_placebo_key_leaves_every_earlier_gain_run_its_hash():
    plain = RunSpec(method="gain", method_params={"masked_bn": "batch"})
    spelled = RunSpec(method="gain", method_params={"masked_bn": "batch", "attention_control": "attended"})
    placebo = RunSpec(method="gain", method_params={"masked_bn": "batch", "attention_control": "random"})
    assert "attention_control" not in build_method("gain").params, "absent at its default"
    assert plain.config_hash == spelled.config_hash != placebo.config_hash
    assert "attention_control" not in build_method("ext_only").params and build_method("ext_only").alpha == 0.0
