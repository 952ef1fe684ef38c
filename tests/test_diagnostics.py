"""Training diagnostics (benchmark.execute.diagnostics), the erased pass's BatchNorm modes and GAIN's exact gradient."""

import copy
import json
import math

import pytest
import torch
from torch import nn

from benchmark.analyse.report.figures import training_curves
from benchmark.cli import main
from benchmark.core.settings import BN_MODES
from benchmark.core.spec import RunSpec, TrainSettings
from benchmark.execute.diagnostics import (
    bn_shift,
    gradient_probe,
    optimizer_direction,
    preserved,
    probe_rows,
    probe_steps,
)
from benchmark.execute.methods import build_method
from benchmark.execute.models import batchnorm_mode, build_model
from benchmark.execute.train import run

SMALL = {"n_train": 160, "n_val": 40, "n_shifted": 20, "n_counterfactual": 20}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")


def small_batch(n: int = 6, size: int = 48, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, 2)
    labels[:, 0] = 1.0
    labels[::2, 1] = 1.0
    mask = torch.zeros(n, size, size, dtype=torch.long)
    mask[:, 10:30, 10:30] = 1
    mask[:, 30:, 30:] = 2
    return {
        "image": torch.rand(n, 3, size, size, generator=g),
        "labels": labels,
        "mask": mask,
        "has_mask": torch.ones(n, dtype=torch.bool),
        "index": torch.arange(n),
    }


# ------------------------------------------------------------------------------------------------- BatchNorm modes


def test_batch_mode_uses_batch_statistics_and_leaves_every_buffer_alone():
    model = build_model("small_cnn", 2).train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean += 1.0  # running statistics far from the batch's: eval mode would differ
    x = torch.rand(8, 3, 48, 48)
    before = copy.deepcopy(model.state_dict())
    trained = copy.deepcopy(model)
    with batchnorm_mode(model, "batch"):
        y_batch = model(x)
    with batchnorm_mode(trained, "train"):
        y_train = trained(x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "batch mode must update nothing"
    evaluated = copy.deepcopy(model)
    with batchnorm_mode(evaluated, "eval"):
        y_eval = evaluated(x)
    assert not all(torch.equal(before[k], v) for k, v in trained.state_dict().items()), "train mode updates"
    torch.testing.assert_close(y_batch, y_train)
    assert not torch.allclose(y_batch, y_eval, atol=1e-3)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.training and m.track_running_stats for m in norms), "the modules' flags must be restored"


def test_unknown_batchnorm_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match="masked_bn must be one of eval, train, batch"):
        build_method("gain", masked_bn="frozen")
    assert set(BN_MODES) == {"eval", "train", "batch"}


def test_gain_batch_mode_leaves_the_running_statistics_as_the_natural_images_left_them():
    model = build_model("small_cnn", 2).train()
    batch = small_batch()
    reference = copy.deepcopy(model)
    reference(batch["image"])  # the classification pass alone
    build_method("gain", warmup_epochs=0, masked_bn="batch").training_loss(model, batch, epoch=0)
    for bn, ref in zip(
        (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)),
        (m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)),
        strict=True,
    ):
        torch.testing.assert_close(bn.running_mean, ref.running_mean)
        torch.testing.assert_close(bn.running_var, ref.running_var)


# ------------------------------------------------------------------------------------------------- exact gradient


def _double_model(attention_layer: str = "block4") -> nn.Module:
    """The small CNN in float64 with BatchNorm's momentum 0: a training step otherwise moves the running statistics
    that a later pass of the same step reads ("eval" erased pass; the head's BatchNorm at `block3`) from the batch,
    a dependency on the weights that no formulation differentiates (buffers change outside autograd)."""
    torch.manual_seed(0)
    model = build_model("small_cnn", 2, attention_layer=attention_layer).double()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0
    return model


@pytest.mark.parametrize(
    ("attention_layer", "masked_bn"), [("block4", "eval"), ("block4", "batch"), ("block3", "eval")]
)
def test_exact_gradient_matches_finite_differences_and_the_default_does_not(attention_layer, masked_bn):
    """The exact variant's gradient is the derivative of its total loss (central differences along random
    directions, float64, BatchNorm state restored between evaluations); the paper's formulation (constant Grad-CAM
    weights) is measurably off it."""
    model = _double_model(attention_layer).train()
    batch = small_batch(n=4, size=32)
    batch["image"], batch["labels"] = batch["image"].double(), batch["labels"].double()
    params = [p for p in model.parameters() if p.requires_grad]
    exact = build_method("gain_ext", warmup_epochs=0, exact_gradient=True, masked_bn=masked_bn)
    default = build_method("gain_ext", warmup_epochs=0, masked_bn=masked_bn)

    def loss(method) -> torch.Tensor:
        with preserved(model):
            return method.training_loss(model, batch, epoch=0)["total"]

    def gradient(method) -> list[torch.Tensor]:
        with preserved(model):
            total = method.training_loss(model, batch, epoch=0)["total"]
            return list(torch.autograd.grad(total, params, allow_unused=True))

    g_exact, g_default = gradient(exact), gradient(default)
    for g in g_exact:
        assert g is not None
    worst_exact = worst_default = 0.0
    gen = torch.Generator().manual_seed(5)
    for _ in range(3):
        direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
        h = 1e-8  # the loss has kinks (ReLU, min-max) close by: larger steps straddle them
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        up = float(loss(exact).detach())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.sub_(2 * h * d)
        down = float(loss(exact).detach())
        with torch.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(h * d)
        numeric = (up - down) / (2 * h)
        analytic = sum(float((g * d).sum()) for g, d in zip(g_exact, direction, strict=True))
        default_dir = sum(float((g * d).sum()) for g, d in zip(g_default, direction, strict=True) if g is not None)
        worst_exact = max(worst_exact, abs(analytic - numeric) / max(abs(numeric), 1e-8))
        worst_default = max(worst_default, abs(default_dir - numeric) / max(abs(numeric), 1e-8))
    assert worst_exact < 1e-5
    assert worst_default > 1e-3, "the constant-weight gradient should differ from the exact one"


def test_exact_variant_update_has_cosine_one_with_the_exact_gradient():
    model = build_model("small_cnn", 2).train()
    batch = small_batch()
    exact = build_method("gain", warmup_epochs=0, exact_gradient=True)
    assert exact.exact_variant() is None
    assert gradient_probe(model, exact, batch, epoch=0)["grad_cos_exact"] == pytest.approx(1.0, abs=1e-6)
    default = build_method("gain", warmup_epochs=0)
    assert default.exact_variant().exact_gradient is True
    cos = gradient_probe(model, default, batch, epoch=0)["grad_cos_exact"]
    assert -1.0 <= cos < 1.0 - 1e-6


def test_exact_gradient_is_part_of_the_config_hash():
    a = RunSpec(method="gain")
    b = RunSpec(method="gain", method_params={"exact_gradient": True})
    c = RunSpec(method="gain", method_params={"exact_gradient": False})
    assert a.config_hash != b.config_hash and a.config_hash == c.config_hash


# ------------------------------------------------------------------------------------------------- the probe


def test_a_mask_that_erases_everything_reads_one_and_one_that_erases_nothing_zero():
    model = build_model("small_cnn", 2).train()
    batch = small_batch()
    everything = build_method("gain", warmup_epochs=0, sigma=-10.0)
    nothing = build_method("gain", warmup_epochs=0, sigma=10.0)
    assert float(everything.training_loss(model, batch, epoch=0)["mask_share"]) == pytest.approx(1.0)
    assert float(nothing.training_loss(model, batch, epoch=0)["mask_share"]) == pytest.approx(0.0, abs=1e-6)
    erased = everything.erased_images(model, batch, epoch=0)
    assert erased.shape[0] == int(batch["labels"].sum()) and float(erased.abs().max()) < 1e-6


def test_the_probe_changes_neither_weights_nor_buffers_nor_gradients_nor_the_random_stream():
    model = build_model("small_cnn", 2).train()
    batch = small_batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    method = build_method("gain_ext", warmup_epochs=0, masked_bn="train")  # the mode that writes buffers
    before = copy.deepcopy(model.state_dict())
    torch.manual_seed(7)
    out = gradient_probe(model, method, batch, epoch=0, optimizer=optimizer)
    after_draw = torch.rand(1)
    torch.manual_seed(7)
    assert torch.equal(after_draw, torch.rand(1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert {"grad_norm_cl", "grad_norm_am", "grad_norm_e", "grad_norm_total", "grad_cos_exact"} <= set(out)
    assert {"step_cos_exact", "bn_shift_natural", "bn_shift_erased", "bn_scale_natural", "bn_scale_erased"} <= set(out)
    assert {"cl_batch", "cl_running", "erased_score_batch", "erased_score_running"} <= set(out)
    assert out["grad_norm_am"] > 0 and out["grad_norm_e"] > 0


@pytest.mark.parametrize("kind", ["adam", "adam_wd", "sgd"])
def test_optimizer_direction_is_the_step_the_optimizer_takes(kind):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    params = list(model.parameters())
    if kind == "sgd":
        optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    else:
        optimizer = torch.optim.Adam(params, lr=0.1, weight_decay=0.01 if kind == "adam_wd" else 0.0)
    for _ in range(3):  # some optimiser state first
        optimizer.zero_grad()
        model(torch.randn(5, 4)).pow(2).sum().backward()
        optimizer.step()
    gradient = torch.randn(sum(p.numel() for p in params))
    predicted = optimizer_direction(optimizer, params, gradient)
    old = torch.cat([p.detach().reshape(-1).clone() for p in params])
    offset = 0
    for p in params:
        p.grad = gradient[offset : offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    optimizer.step()
    moved = torch.cat([p.detach().reshape(-1) for p in params]) - old
    torch.testing.assert_close(-moved, 0.1 * predicted, rtol=1e-4, atol=1e-7)


def test_bn_shift_is_zero_at_the_batch_statistics_and_counts_standard_deviations():
    model = build_model("small_cnn", 2).train()
    x = torch.rand(16, 3, 48, 48)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    first = norms[0]
    with torch.no_grad():  # make the first layer's running statistics its batch statistics exactly
        y = model.features[0][0](x)
        first.running_mean.copy_(y.mean((0, 2, 3)))
        first.running_var.copy_(y.var((0, 2, 3), unbiased=False))
    single = nn.Sequential(model.features[0][0], first)
    assert bn_shift(single, x, "eval") == pytest.approx((0.0, 0.0), abs=1e-5)
    with torch.no_grad():
        first.running_mean -= 2.0 * (first.running_var + first.eps).sqrt()
    assert bn_shift(single, x, "eval") == pytest.approx((2.0, 0.0), rel=1e-4, abs=1e-5)
    with torch.no_grad():
        first.running_var.mul_(math.e**2).add_(first.eps * (math.e**2 - 1))  # sigma_running = e sigma_batch
        first.running_mean.copy_(y.mean((0, 2, 3)))
    assert bn_shift(single, x, "eval") == pytest.approx((0.0, 1.0), rel=1e-4, abs=1e-5)
    assert all(map(math.isnan, bn_shift(nn.Sequential(nn.Conv2d(3, 3, 1)), x, "eval"))), "no BatchNorm: no figure"


def test_probe_rows_are_fixed_and_include_pixel_labelled_rows():
    budget = torch.tensor([3, 500, 700, 900])
    rows = probe_rows(1000, budget, 64, seed=2)
    assert torch.equal(rows, probe_rows(1000, budget, 64, seed=2))
    assert rows.numel() == len(set(rows.tolist())) and bool(torch.isin(budget, rows).all())
    assert probe_steps(50) == {0, 25} and probe_steps(1) == {0}


# ------------------------------------------------------------------------------------------------- in a run


def test_a_runs_curve_records_the_diagnostics_and_they_change_no_result(tmp_path, data_root, capsys):
    settings = {"epochs": 2, "batch_size": 32}
    on = RunSpec(
        method="gain_ext",
        budget=9,
        method_params={"warmup_epochs": 1},
        dataset_params=SMALL,
        train=TrainSettings(**settings),
    )
    off = RunSpec(
        method="gain_ext",
        budget=9,
        method_params={"warmup_epochs": 1},
        dataset_params=SMALL,
        train=TrainSettings(**settings, diagnostics=False),
    )
    assert on.run_id == off.run_id and on.label == off.label and "diagnostics" not in on.to_dict()["train"]
    assert off.to_dict()["train"]["diagnostics"] is False
    a = run(on, tmp_path / "on", data_root=data_root, progress=False)
    b = run(off, tmp_path / "off", data_root=data_root, progress=False)
    assert a["metrics"] == b["metrics"]
    for with_, without in zip(a["curve"], b["curve"], strict=True):
        for key in ("cl", "am", "e", "total"):
            assert with_[key] == without[key]
    first, second = a["curve"]
    assert "mask_share" not in first and 0.0 < second["mask_share"] < 1.0, "mask share only once mining is on"
    for key in (
        "grad_norm_cl",
        "grad_cos_exact",
        "step_cos_exact",
        "bn_shift_natural",
        "heldout_val_map",
        "heldout_class_without_context",
        "heldout_context_without_class",
        "heldout_shifted_auroc",
        "lr",
    ):
        assert key in first and key in second, key
    assert "bn_shift_erased" in second and second["grad_norm_am"] > 0 and first["grad_norm_am"] == 0
    assert "grad_norm_cl" not in b["curve"][0] and "heldout_val_map" not in b["curve"][0]
    assert a["timings"]["diagnostics_seconds"] > 0 and b["timings"]["diagnostics_seconds"] == 0
    on_disk = json.loads((tmp_path / "on" / "runs" / on.run_id / "record.json").read_text())
    assert on_disk["curve"] == a["curve"]
    assert training_curves([on_disk], diagnostics=True).startswith("data:image/png;base64,")
    losses_only = on_disk | {"curve": [{k: e[k] for k in ("epoch", "cl", "am", "e", "total")} for e in a["curve"]]}
    assert training_curves([losses_only], diagnostics=True) is None, "no diagnostics: no figure"

    capsys.readouterr()
    assert main(["curves", str(tmp_path / "on"), "--keys", "cl,mask_share", "--spread"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-4:] == ["ep", "1", "ep", "2"] and len(lines) == 3, "epochs counted from 1"
    mask_line = next(line for line in lines if " mask_share " in line)
    assert "gain_ext-9 warmup_epochs=1 (n=1)" in mask_line and mask_line.split()[-4] == "-"
    assert f"{second['mask_share']:.3f} [{second['mask_share']:.3f}, {second['mask_share']:.3f}]" in mask_line
    assert main(["compare", str(tmp_path / "on"), str(tmp_path / "off")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("gain_ext-9"))
    figures = [token.strip("()") for token in row.split() if "." in token]
    assert len(figures) == 14 and set(figures) == {"0.000"}, "the same run made twice: no difference"
    assert main(["compare", str(tmp_path / "on"), str(tmp_path)]) == 2
    assert main(["curves", str(tmp_path / "on"), "--keys", "cl,loss"]) == 2
    assert "unknown curve key(s) loss; allowed: total, cl" in capsys.readouterr().err


def test_the_report_names_configurations_whose_losses_rose():
    from benchmark.analyse.losses import rising_losses

    def record(method: str, seed: int, totals: list[float], gap: float | None = None, cl=None) -> dict:
        curve = [
            {"epoch": i, "total": t} | ({"cl_batch": 0.1, "cl_running": 0.1 + gap} if gap else {})
            for i, t in enumerate(totals)
        ]
        return {"spec": RunSpec(method=method, seed=seed).to_dict(), "status": "complete", "curve": curve}

    switched_on = [{"epoch": i, "total": t, "cl": c} for i, (t, c) in enumerate([(0.1, 0.1), (0.3, 0.1), (0.25, 0.1)])]
    records = [
        {"spec": RunSpec(method="gain_ext", budget=9).to_dict(), "status": "complete", "curve": switched_on},
        record("gain", 0, [0.3, 0.1, 0.2], gap=0.5),
        record("gain", 1, [0.3, 0.1, 0.2], gap=1.0),
        record("gradcam", 0, [0.3, 0.2, 0.1]),
        record("rrr", 0, [0.300, 0.200, 0.205]),  # 2.5% up: noise, not a rise
    ]
    rose = rising_losses(records)
    assert [r["config"] for r in rose] == ["gain"], "an attention loss switched on is not a rise"
    assert rose[0] | {"lowest": round(rose[0]["lowest"], 6), "mode_gap": round(rose[0]["mode_gap"], 6)} == {
        "config": "gain",
        "lowest": 0.1,
        "lowest_epoch": 2,
        "last": 0.2,
        "epochs": 3,
        "mode_gap": 0.75,
    }


def test_train_and_batch_modes_learn_the_same_weights_and_differ_only_in_running_statistics(tmp_path, data_root):
    """Training never reads the running statistics when the erased pass uses batch statistics (the classification
    pass does not either), so `masked_bn = "train"` and `"batch"` train bit-identical weights; "train" only blends
    the erased images into the statistics every evaluation then uses."""
    specs = [
        RunSpec(
            method="gain",
            method_params={"warmup_epochs": 1, "masked_bn": mode},
            dataset_params=SMALL,
            train=TrainSettings(epochs=2, batch_size=32, diagnostics=False),
        )
        for mode in ("batch", "train")
    ]
    states = []
    for spec in specs:
        run(spec, tmp_path, data_root=data_root, progress=False)
        states.append(torch.load(tmp_path / "runs" / spec.run_id / "model.pt", weights_only=True))
    weights = [k for k in states[0] if "running_" not in k and "num_batches" not in k]
    assert all(torch.equal(states[0][k], states[1][k]) for k in weights)
    assert not torch.equal(states[0]["features.0.1.running_mean"], states[1]["features.0.1.running_mean"])
