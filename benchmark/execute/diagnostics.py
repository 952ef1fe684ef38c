"""Training diagnostics: what a run records per epoch beside its losses, to tell an optimiser that follows its
objective from one that does not.

A *probe* takes a fixed batch of training images (the same rows all run long: `probe_rows`) a few times per epoch
and measures, without changing the run (BatchNorm buffers and the random number generators are restored after it,
and no `.grad` is written, so the run's numbers are the same with the diagnostics on or off):

- `grad_norm_<part>`: the L2 norm of each loss part's gradient over all parameters (`grad_norm_total` the method's
  update direction before the optimiser);
- `grad_cos_exact`: the cosine between the gradient the method back-propagates and the exact gradient of its total
  loss (`Method.exact_variant`: GAIN with Grad-CAM's channel weights kept in the graph); 1 for a method whose update
  is already exact;
- `step_cos_exact`: the cosine between the step the optimiser would take from the probe's gradient (Adam's bias-
  corrected, preconditioned moments, or SGD's momentum buffer, from the optimiser's current state) and the exact
  gradient's descent direction; at or below 0, the step does not lower the total loss to first order;
- `bn_shift_natural`, `bn_shift_erased` (`bn_scale_*`): how far the mean (the standard deviation) of the inputs of
  every BatchNorm layer lies from the running statistics the layer would normalise them with, `mean |mu_batch -
  mu_running| / sigma_running` (`mean |log(sigma_batch / sigma_running)|`) over channels and layers; for the probe's
  images and, for a method with a second pass (GAIN), its erased images. With `masked_bn = "eval"` the erased pass
  is normalised with the running statistics, so the erased figures are the mismatch that pass runs under;
- `cl_batch`, `cl_running`: `L_cl` of the probe's images with BatchNorm on batch statistics (as in training) and on
  running statistics (as in every evaluation); `erased_score_batch`, `erased_score_running`: the score left for each
  class once its attended region is erased (what `L_am` reads) under each. A gap says the network computes a
  different function under the two normalisations, which a loss evaluated under one of them can exploit.

Per epoch the run also scores the held-out selection splits (`heldout.evaluate`: in-distribution mAP and accuracy,
both shifted groups and their AUROC), never the test splits, so a report can show whether robustness peaks early.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from benchmark.core.spec import RunSpec
from benchmark.execute.datasets import synthetic
from benchmark.execute.methods import Method
from benchmark.execute.methods.base import classification_loss
from benchmark.execute.models import SplitModel, batchnorm_mode

PROBES_PER_EPOCH = 2  # at the start of an epoch and halfway through it
PROBE_SEED = 0x9B0BE  # offset of the probe batch's row draw from the run's seed
PROBE_BUDGET_ROWS = 8  # pixel-labelled rows added to the probe batch, so GAIN_ext's L_e has a gradient there
HELDOUT_KEYS = {
    ("in-distribution-val", "val_map"): "heldout_val_map",
    ("in-distribution-val", "val_accuracy"): "heldout_val_accuracy",
    ("oracle", "class_without_context"): "heldout_class_without_context",
    ("oracle", "context_without_class"): "heldout_context_without_class",
    ("oracle", "shifted_auroc"): "heldout_shifted_auroc",
}


def heldout_scored(spec: RunSpec) -> bool:
    """Whether a run scores the held-out selection splits after every epoch: with `train.diagnostics`, on the
    built-in data (whose generator draws them; a real dataset has no second held-out split to spare)."""
    return spec.train.diagnostics and spec.dataset == synthetic.NAME


def probe_rows(n_train: int, budget_rows: torch.Tensor, batch_size: int, seed: int) -> torch.Tensor:
    """The probe batch's training rows: `batch_size` rows drawn once from the run's seed, plus up to
    `PROBE_BUDGET_ROWS` pixel-labelled rows not among them."""
    generator = torch.Generator().manual_seed(seed + PROBE_SEED)
    rows = torch.randperm(n_train, generator=generator)[:batch_size]
    extra = budget_rows[~torch.isin(budget_rows, rows)][:PROBE_BUDGET_ROWS]
    return torch.cat([rows, extra])


def probe_batch(
    model: SplitModel, train: Any, budget_rows: torch.Tensor, batch_size: int, seed: int, device: str
) -> dict[str, torch.Tensor]:
    """The probe batch of a run (`probe_rows`), pixel labels marked as in training, augmented (file-based data) from
    a generator of its own, so the run's batches do not depend on it."""
    rows = probe_rows(len(train), budget_rows, batch_size, seed)
    generator = torch.Generator().manual_seed(seed + PROBE_SEED)
    return train.batch(
        rows,
        has_mask=torch.isin(rows, budget_rows),
        device=device,
        mean=model.mean,
        std=model.std,
        generator=generator,
    )


def probe_steps(steps_per_epoch: int) -> set[int]:
    """The steps of an epoch before which the probe runs."""
    return {(i * steps_per_epoch) // PROBES_PER_EPOCH for i in range(PROBES_PER_EPOCH)}


@contextlib.contextmanager
def preserved(model: nn.Module) -> Iterator[None]:
    """Leave the model's buffers (BatchNorm's running statistics) and torch's CPU random state as they were."""
    buffers = [b.detach().clone() for b in model.buffers()]
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            with torch.no_grad():
                for b, saved in zip(model.buffers(), buffers, strict=True):
                    b.copy_(saved)


def gradient_probe(
    model: SplitModel,
    method: Method,
    batch: dict[str, torch.Tensor],
    *,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, float]:
    """The probe's gradient measurements on `batch` (see the module); the model's state is left as it was."""
    params = [p for p in model.parameters() if p.requires_grad]
    out: dict[str, float] = {}
    with preserved(model):
        with preserved(model):  # restored after the backward passes, which read the buffers the forward saw
            parts = method.training_loss(model, batch, epoch=epoch)
            losses = [k for k in parts if k not in method.DIAGNOSTICS]
            grads = {k: _flat_grad(parts[k], params, retain=True) for k in losses}
            del parts
        update = grads["total"]
        out.update({f"grad_norm_{k}": float(g.norm()) for k, g in grads.items()})
        exact_method = method.exact_variant()
        if exact_method is None:
            exact = update
        else:  # from the same running statistics as the method's own pass
            exact = _flat_grad(exact_method.training_loss(model, batch, epoch=epoch)["total"], params, retain=False)
        out["grad_cos_exact"] = _cosine(update, exact)
        if optimizer is not None:
            out["step_cos_exact"] = _cosine(optimizer_direction(optimizer, params, update), exact)
        out["bn_shift_natural"], out["bn_scale_natural"] = bn_shift(model, batch["image"], "batch")
        pair_image, pair_class = (batch["labels"] > 0.5).nonzero(as_tuple=True)
        out |= mode_scores(model, batch["image"], pair_image, pair_class, "cl", batch["labels"])
        erased = method.erased_images(model, batch, epoch=epoch)
        if erased is not None:
            out["bn_shift_erased"], out["bn_scale_erased"] = bn_shift(
                model, erased, getattr(method, "masked_bn", "eval")
            )
            out |= mode_scores(model, erased, torch.arange(len(erased)), pair_class, "erased_score")
    return {k: v for k, v in out.items() if v == v}  # NaN: no BatchNorm layer, or a zero gradient


def optimizer_direction(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], gradient: torch.Tensor
) -> torch.Tensor:
    """The direction of the step `optimizer` would take (the negative of its parameter change, up to the learning
    rate) if its next gradient were `gradient` (flat, in `params`' order), from its current state. Adam (L2 weight
    decay, no amsgrad) and SGD with momentum, as `benchmark.execute.train` builds them; any other optimiser:
    `gradient`."""
    group = optimizer.param_groups[0]
    chunks = []
    offset = 0
    for p in params:
        g = gradient[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
        if group.get("weight_decay", 0.0):
            g = g + group["weight_decay"] * p.detach()
        state = optimizer.state.get(p, {})
        if isinstance(optimizer, torch.optim.Adam) and not group.get("amsgrad", False):
            beta1, beta2 = group["betas"]
            step = float(state["step"]) + 1 if "step" in state else 1.0
            m = beta1 * state["exp_avg"] + (1 - beta1) * g if "exp_avg" in state else (1 - beta1) * g
            v = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g if "exp_avg_sq" in state else (1 - beta2) * g * g
            direction = (m / (1 - beta1**step)) / ((v / (1 - beta2**step)).sqrt() + group["eps"])
        elif isinstance(optimizer, torch.optim.SGD) and group.get("momentum", 0.0):
            buf = state.get("momentum_buffer")
            direction = g if buf is None else group["momentum"] * buf + (1 - group.get("dampening", 0.0)) * g
        else:
            direction = g
        chunks.append(direction.reshape(-1))
    return torch.cat(chunks)


def mode_scores(
    model: SplitModel,
    images: torch.Tensor,
    pair_image: torch.Tensor,
    pair_class: torch.Tensor,
    name: str,
    labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """The same images through the model with BatchNorm on batch statistics and on running statistics, nothing
    updated: with `labels`, `L_cl` under each (`<name>_batch`, `<name>_running`); without, the mean sigmoid score of
    each pair's class (`erased_score_*`: what `L_am` reads). A gap between the two says the network computes a
    different function under the two normalisations, which a loss evaluated under one of them can exploit."""
    out = {}
    for mode, suffix in (("batch", "batch"), ("eval", "running")):
        with torch.no_grad(), batchnorm_mode(model, mode):
            logits = model(images).float()
        if labels is not None:
            value = classification_loss(logits, labels.to(logits.dtype))
        else:
            value = torch.sigmoid(logits[pair_image, pair_class]).mean()
        out[f"{name}_{suffix}"] = float(value)
    return out


def bn_shift(model: SplitModel, images: torch.Tensor, mode: str) -> tuple[float, float]:
    """`(mean |mu_batch - mu_running| / sigma_running, mean |log(sigma_batch / sigma_running)|)` over the channels
    of every BatchNorm layer, of the layer's inputs when `images` run through the model with BatchNorm in `mode`
    ("train" is run as "batch": nothing is updated), `sigma_running = sqrt(var_running + eps)`; NaN for a model
    without BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norms = [m for m in norms if m.running_mean is not None and m.running_var is not None]
    shifts: list[torch.Tensor] = []
    scales: list[torch.Tensor] = []

    def record(module: nn.modules.batchnorm._BatchNorm, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().float()
        dims = [d for d in range(x.dim()) if d != 1]
        scale = (module.running_var.float() + module.eps).sqrt()
        shifts.append(((x.mean(dims) - module.running_mean.float()).abs() / scale).mean())
        batch_scale = (x.var(dims, unbiased=False) + module.eps).sqrt()
        scales.append((batch_scale / scale).log().abs().mean())

    handles = [m.register_forward_pre_hook(record) for m in norms]
    try:
        with torch.no_grad(), batchnorm_mode(model, "batch" if mode == "train" else mode):
            model(images)
    finally:
        for h in handles:
            h.remove()
    if not shifts:
        return float("nan"), float("nan")
    return float(torch.stack(shifts).mean()), float(torch.stack(scales).mean())


def heldout_scores(selection: dict[str, dict[str, Any]]) -> dict[str, float]:
    """`heldout.evaluate`'s output as flat per-epoch keys (`HELDOUT_KEYS`)."""
    return {
        key: float(selection[rule][metric])
        for (rule, metric), key in HELDOUT_KEYS.items()
        if rule in selection and metric in selection[rule]
    }


def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor], *, retain: bool) -> torch.Tensor:
    """d loss / d params, flattened; zeros for a loss that does not depend on them."""
    if not loss.requires_grad:
        return torch.cat([torch.zeros_like(p).reshape(-1) for p in params])
    grads = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    flat = [(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params, strict=True)]
    return torch.cat(flat)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    norm = float(a.norm() * b.norm())
    return float(a @ b) / norm if norm > 0 else float("nan")
