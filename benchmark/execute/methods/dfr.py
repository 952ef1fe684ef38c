"""Deep Feature Reweighting at the label budget: the trained baseline's last layer refit on N group-balanced images.

Kirichenko, Izmailov, Wilson, "Last Layer Re-Training is Sufficient for Robustness to Spurious Correlations",
ICLR 2023. The network is trained exactly as the `gradcam` baseline of the same seed (the budget never reaches the
training loop: `budget_in_training = False`); then `after_training` freezes everything but the audited class's row
of the last linear layer and refits that row (weight and bias) by L2-regularised logistic regression on the frozen
penultimate features of N images:

- `dfr`: N group-labelled images (no masks) drawn, balanced over the four (audited class x context) groups, from a
  held-out labelled pool generated from a seed of its own (`DFR_SEED_OFFSET`): disjoint from every test split and
  from the selection data (`benchmark.execute.heldout`);
- `dfr_counterfactual`: the N pixel-labelled budget images of the training split, each with its object pasted onto a
  land image of the training split (no audited class, no audited context) and with its object removed
  (`counterfactual.paste_objects` and `remove_objects`), and those land images (`backgrounds`, on by default):
  audited-class labels 1, 1, 0, 0; masks and group labels at the same budget.

The fit, on standardised features (each feature's mean and std over the fit images; a constant feature keeps std 1),
minimises `J(w, b) = 1/2 ||w||^2 + C sum_i log(1 + exp(-s_i (w . x_i + b)))`, `s_i = +1/-1` (scikit-learn's
`LogisticRegression(penalty="l2", C=C)`, the bias unpenalised), to L-BFGS's tolerance; the solution is mapped back
into the layer (`w / std`, `b - (w / std) . mean`). `C` is chosen from DFR's grid `C_GRID` by the worst-group
accuracy on a held-out half of the N images after a fit on the other half (ties: the smallest C, the strongest
regularisation), then the row is refit on all N with it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.optimize
import torch
from scipy.special import expit
from torch import nn

from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.methods.base import BUDGET_GROUP, BUDGET_PIXEL, CUTS_OUT, WHOLE_OBJECT, HParam
from benchmark.execute.methods.counterfactual import budget_objects, paste_objects, remove_objects
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.execute.metrics import GROUPS
from benchmark.execute.models import SplitModel

if TYPE_CHECKING:
    from benchmark.core.spec import RunSpec

DFR_SEED_OFFSET = 3_000_017  # the DFR pool's generator seed = the evaluation data's seed + this
DRAW_SALT = 0xDF12  # keeps the balanced draw's generator apart from every other one seeded by the run's seed
C_GRID: tuple[float, ...] = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)  # DFR's Waterbirds grid (`C_OPTIONS`)
# The order the groups take the images left over when N is not a multiple of 4 (N = 9: 3, 2, 2, 2): the two groups
# the bias makes rare first. The names are `metrics.GROUPS`' (the four groups the worst-group accuracy reads).
DRAW_ORDER: tuple[str, ...] = ("class_without_context", "context_without_class", "class_with_context", "neither")
assert set(DRAW_ORDER) == set(GROUPS)
POOL_ROLES = ("val", "class_without_context", "context_without_class")


# ---- the logistic regression -----------------------------------------------------------------------------------


def objective(params: np.ndarray, x: np.ndarray, y: np.ndarray, c: float) -> tuple[float, np.ndarray]:
    """`J(w, b) = 1/2 ||w||^2 + C sum_i softplus(-s_i z_i)`, `z = x w + b`, `s = 2 y - 1`, and its gradient
    `(w + C x^T (sigmoid(z) - y), C sum_i (sigmoid(z_i) - y_i))`; `params = [w..., b]`, `y` in {0, 1}."""
    w, b = params[:-1], params[-1]
    z = x @ w + b
    value = 0.5 * float(w @ w) + c * float(np.logaddexp(0.0, -(2.0 * y - 1.0) * z).sum())
    r = c * (expit(z) - y)
    return value, np.concatenate([w + x.T @ r, [r.sum()]])


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """`argmin J` (`objective`) from zero by L-BFGS, in float64: deterministic for given inputs."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(np.unique(y)) < 2:
        raise ValueError(f"the logistic regression needs images of both labels, got only label {int(y[0])}")
    start = np.zeros(x.shape[1] + 1)
    options = {"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-9}  # to float64's precision, not scipy's default 2e-9
    done = scipy.optimize.minimize(objective, start, args=(x, y, c), jac=True, method="L-BFGS-B", options=options)
    return done.x[:-1], float(done.x[-1])


def fit_standardised(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """`fit_logistic` on the features standardised over `x` (std 1 where a feature is constant), mapped back onto
    the raw features: `(w / std, b - (w / std) . mean)`, so `x @ w' + b'` is the standardised fit's logit."""
    x = np.asarray(x, np.float64)
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 0, std, 1.0)
    w, b = fit_logistic((x - mean) / std, y, c)
    w = w / std
    return w, b - float(w @ mean)


def worst_group_accuracy(logits: np.ndarray, y: np.ndarray, groups: np.ndarray, threshold: float) -> float:
    """The lowest accuracy over the groups present, the decision being `sigmoid(logit) >= threshold`."""
    right = (expit(logits) >= threshold) == (y > 0.5)
    return min(float(right[groups == g].mean()) for g in np.unique(groups))


def choose_c(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, fit_half: np.ndarray, threshold: float
) -> tuple[float, dict[str, float]]:
    """DFR's rule: fit on `fit_half` for every C of `C_GRID`, score the worst-group accuracy on the other images,
    keep the best C (ties: the smallest, the strongest regularisation). Returns C and the score per C."""
    held = ~fit_half
    scores = {}
    for c in C_GRID:
        w, b = fit_standardised(x[fit_half], y[fit_half], c)
        scores[f"{c:g}"] = worst_group_accuracy(x[held] @ w + b, y[held], groups[held], threshold)
    best = max(scores.values())
    return min(c for c in C_GRID if scores[f"{c:g}"] == best), scores


# ---- the layer and its features --------------------------------------------------------------------------------


def last_linear(model: SplitModel) -> tuple[nn.Module, nn.Linear]:
    """`(before, linear)`: the head's last `nn.Linear` (the logits) and everything of the head before it, so that
    `model(x) == linear(before(model.features(x)))`. Follows the last module of nested `nn.Sequential`s (small CNN
    and ResNet: `head[-1]`; VGG-16: `head[-1][-1]`)."""
    before: list[nn.Module] = []
    module: nn.Module = model.head
    while isinstance(module, nn.Sequential) and len(module):
        before += list(module)[:-1]
        module = module[-1]
    if not isinstance(module, nn.Linear) or module.bias is None:
        raise ValueError(f"{model.name}: the head does not end in an nn.Linear with a bias; DFR refits that layer")
    return nn.Sequential(*before), module


def penultimate(model: SplitModel, images: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    """The inputs of the last linear layer for normalised `images` (float64 `[N,D]`), in eval mode: BatchNorm's
    running statistics, nothing updated."""
    before, _ = last_linear(model)
    was_training = model.training
    model.eval()
    chunks = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            chunks.append(before(model.features(x)).float().cpu())
    model.train(was_training)
    return torch.cat(chunks).double().numpy()


def refit_row(
    linear: nn.Linear,
    row: int,
    features: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit_half: np.ndarray,
    threshold: float,
) -> dict[str, Any]:
    """Choose C (`choose_c`), refit on every image with it and write the solution into `linear`'s row `row` (weight
    and bias); the other rows are not touched. Returns what the record says about it."""
    started = time.perf_counter()
    c, scores = choose_c(features, y, groups, fit_half, threshold)
    w, b = fit_standardised(features, y, c)
    with torch.no_grad():
        linear.weight[row] = torch.from_numpy(w).to(linear.weight)
        linear.bias[row] = b
    return {
        "C": c,
        "c_grid": list(C_GRID),
        "held_out_worst_group_accuracy": scores,
        "fit_images": int(fit_half.sum()),
        "held_out_images": int((~fit_half).sum()),
        "images": len(y),
        "positives": int((y > 0.5).sum()),
        "group_counts": {g: int((groups == g).sum()) for g in GROUPS},
        "fit_seconds": time.perf_counter() - started,
    }


def first_half(sources: np.ndarray) -> np.ndarray:
    """Per source (a group, or a counterfactual's original image) in draw order: True for its first `ceil(n/2)`
    images, the C rule's fit half; the rest are its held-out half."""
    out = np.zeros(len(sources), bool)
    for s in np.unique(sources):
        rows = np.flatnonzero(sources == s)
        out[rows[: math.ceil(len(rows) / 2)]] = True
    return out


# ---- the held-out pool and its balanced draw -------------------------------------------------------------------


def pool_config(config: synthetic.SyntheticConfig) -> synthetic.SyntheticConfig:
    """The DFR pool: the run's generator settings from the seed `config.seed + DFR_SEED_OFFSET` (no image is a test,
    `val` or selection image), with `n_train // 2` in-distribution (`val`) and `n_train // 4` images per shifted
    group: a pool as large as the training set, whose every group holds a budget of 1464 (366 per group) under the
    default bias; its train and counterfactual splits are not used (one image each)."""
    return dataclasses.replace(
        config,
        seed=config.seed + DFR_SEED_OFFSET,
        n_train=1,
        n_counterfactual=1,
        n_val=max(1, config.n_train // 2),
        n_shifted=max(1, config.n_train // 4),
    )


def _concat(splits: list[TensorSplit]) -> TensorSplit:
    def cat(key: str) -> torch.Tensor:
        return torch.cat([getattr(s, key) for s in splits])

    return TensorSplit(
        name="dfr_pool",
        images=cat("images"),
        labels=cat("labels"),
        masks=cat("masks"),
        context=cat("context"),
        has_context=cat("has_context"),
        ids=[i for s in splits for i in s.ids],
        classes=splits[0].classes,
        pair=cat("pair"),
    )


@functools.lru_cache(maxsize=2)
def _pool(dataset: str, params_json: str, data_root: str | None) -> tuple[TensorSplit, int]:
    config = pool_config(synthetic.data_config(dataset, json.loads(params_json)))
    folder = synthetic.ensure_generated(config, Path(data_root) if data_root else None)
    return _concat([synthetic.load_split(folder, synthetic.ROLES[role]) for role in POOL_ROLES]), config.seed


def load_pool(spec: RunSpec, data_root: Path | None = None) -> tuple[TensorSplit, np.ndarray, int]:
    """The pool (its `val` and shifted splits as one split), each image's group name (`metrics.GROUPS`; `val`'s
    few minority-group images are left out, "", as the test groups leave them out) and the pool's seed."""
    if spec.dataset != synthetic.NAME:
        raise ValueError(f"dfr draws its group-labelled images from a held-out pool of the built-in data "
                         f"({synthetic.NAME}); dataset {spec.dataset!r} has none (dfr_counterfactual needs none)")
    params = json.dumps(spec.dataset_params, sort_keys=True)
    pool, seed = _pool(spec.dataset, params, str(data_root) if data_root else None)
    cls = pool.classes.index(spec.audited_class)
    label, context = (pool.labels[:, cls] > 0.5).numpy(), pool.has_context.numpy()
    is_val = np.array([i.startswith(synthetic.ROLES["val"] + "_") for i in pool.ids])
    groups = np.full(len(pool), "", dtype=object)
    groups[is_val & label & context] = "class_with_context"
    groups[is_val & ~label & ~context] = "neither"
    groups[~is_val & label] = "class_without_context"
    groups[~is_val & ~label] = "context_without_class"
    return pool, groups, seed


def group_sizes(n: int) -> dict[str, int]:
    """N split over the four groups as evenly as possible, the remainder to the first of `DRAW_ORDER`."""
    return {g: n // 4 + (i < n % 4) for i, g in enumerate(DRAW_ORDER)}


def balanced_draw(groups: np.ndarray, n: int, seed: int) -> np.ndarray:
    """`group_sizes(n)` rows of each group, group by group in `DRAW_ORDER`, each group's rows the first of one
    seeded permutation of that group (`default_rng([seed, DRAW_SALT, group])`): a smaller N is a prefix of a larger
    one within every group (nested budgets). Raises ValueError where a group is too small."""
    out = []
    for index, (g, size) in enumerate(group_sizes(n).items()):
        rows = np.flatnonzero(groups == g)
        if size > len(rows):
            raise ValueError(f"dfr: budget {n} needs {size} {g} images; the held-out pool has {len(rows)}")
        out.append(rows[np.random.default_rng([seed, DRAW_SALT, index]).permutation(len(rows))[:size]])
    return np.concatenate(out)


# ---- the methods -------------------------------------------------------------------------------------------------


def _class_index(train: Any, spec: RunSpec) -> int:
    return train.classes.index(spec.audited_class)


class DFR(GradCAMBaseline):
    """The `gradcam` baseline, then its audited row of the last layer refit on N group-balanced held-out images."""

    name = "dfr"
    uses_pixel_labels = False
    budget_labels = BUDGET_GROUP
    budget_in_training = False
    min_budget = 8  # two images per group: one to fit, one to choose C on
    HPARAMS = {}

    def after_training(
        self,
        model: SplitModel,
        train: Any,
        budget_rows: torch.Tensor,
        spec: RunSpec,
        *,
        data_root: Path | None = None,
        device: str = "cpu",
    ) -> dict[str, Any] | None:
        pool, groups, pool_seed = load_pool(spec, data_root)
        rows = balanced_draw(groups, spec.budget, spec.seed)
        images = pool.batch(torch.from_numpy(rows), mean=model.mean, std=model.std)["image"]
        features = penultimate(model, images, spec.train.eval_batch_size, device)
        y = pool.labels[rows, _class_index(train, spec)].double().numpy()
        chosen = groups[rows]
        _, linear = last_linear(model)
        row = _class_index(train, spec)
        fit = refit_row(linear, row, features, y, chosen, first_half(chosen), spec.train.threshold)
        return fit | {
            "method": self.name,
            "pool": {"seed": pool_seed, "images": int((groups != "").sum()), "draw_seed": spec.seed},
            "ids": [pool.ids[int(r)] for r in rows],
        }


class DFRCounterfactual(DFR):
    """DFR's refit on the N pixel-labelled budget images, their objects pasted onto land and removed."""

    name = "dfr_counterfactual"
    uses_pixel_labels = True
    annotations = WHOLE_OBJECT
    annotation_refusal = CUTS_OUT
    budget_labels = BUDGET_PIXEL
    min_budget = 2  # one original to fit on, one to choose C on
    HPARAMS = {
        "backgrounds": HParam(
            True,
            doc="also fit on the land images the objects were pasted onto (label 0); without them no image lacks both "
            "class and context, and the refit learns 'land => class'",
        ),
    }

    def after_training(
        self,
        model: SplitModel,
        train: Any,
        budget_rows: torch.Tensor,
        spec: RunSpec,
        *,
        data_root: Path | None = None,
        device: str = "cpu",
    ) -> dict[str, Any] | None:
        cls = _class_index(train, spec)
        rng = np.random.default_rng([spec.seed, DRAW_SALT])
        sources = budget_rows[torch.from_numpy(rng.permutation(budget_rows.numel()))]
        land = ((train.labels[:, cls] < 0.5) & ~train.has_context.cpu()).nonzero().squeeze(1)
        if land.numel() == 0:
            raise ValueError("dfr_counterfactual: the training split has no image without the class and its context")
        n = sources.numel()
        targets = land[torch.from_numpy(rng.choice(land.numel(), n, replace=land.numel() < n))]
        parts: dict[str, list[Any]] = {"features": [], "y": [], "groups": [], "source": []}
        counts = {"original": 0, "pasted": 0, "removed": 0} | ({"background": 0} if self.backgrounds else {})
        step = spec.train.eval_batch_size
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed + DRAW_SALT)  # paste_objects draws its targets from torch's generator
            for start in range(0, n, step):
                chunk = slice(start, start + step)
                made = counterfactual_images(train, sources[chunk], targets[chunk], cls, model)
                for kind, (images, y, with_context, source) in made.items():
                    if kind not in counts:
                        continue
                    counts[kind] += len(y)
                    parts["features"].append(penultimate(model, images, step, device))
                    parts["y"].append(y)
                    parts["groups"].append(_groups(y, with_context))
                    parts["source"].append(source + start)
        features = np.concatenate(parts["features"])
        y, groups, source = (np.concatenate(parts[k]) for k in ("y", "groups", "source"))
        fit_half = source < math.ceil(n / 2)  # split by original image: its counterfactuals go with it
        _, linear = last_linear(model)
        fit = refit_row(linear, cls, features, y, groups, fit_half, spec.train.threshold)
        ids = [train.ids[int(r)] for r in sources]  # in the seeded order: the first ceil(N/2) are the fit half
        return fit | {"method": self.name, "made": counts, "draw_seed": spec.seed, "ids": ids}


def _groups(y: np.ndarray, with_context: np.ndarray) -> np.ndarray:
    names = np.array([["neither", "context_without_class"], ["class_without_context", "class_with_context"]])
    return names[(y > 0.5).astype(int), with_context.astype(int)].astype(object)


def counterfactual_images(
    train: Any, sources: torch.Tensor, targets: torch.Tensor, class_index: int, model: SplitModel
) -> dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]]:
    """The budget images `sources` as they are ("original"), their audited objects pasted onto the land images
    `targets` ("pasted", each onto one of them drawn by torch's generator) and removed ("removed"), by
    `counterfactual.paste_objects` and `remove_objects` at their default settings, on the CPU, and the land images
    themselves ("background"): per kind the normalised images, the audited class's labels (1, 1, 0, 0), whether the
    audited context is in the image and each image's source (its position in `sources`; a background's: its own
    position in `targets`). Only the audited class's masks are cut out: the other classes' labels are hidden from
    the two functions."""
    rows = torch.cat([sources, targets])
    has_mask = torch.arange(rows.numel()) < sources.numel()
    batch = train.batch(rows, has_mask=has_mask, mean=model.mean, std=model.std)
    labels = torch.zeros_like(batch["labels"])
    labels[:, class_index] = batch["labels"][:, class_index]
    batch["labels"] = labels
    source = budget_objects(batch)[0].numpy()  # the pairs both functions make, in their order
    context = train.has_context.cpu()[sources].numpy()
    pasted, pasted_labels = paste_objects(batch)
    removed, removed_labels = remove_objects(batch)
    assert pasted.shape[0] == removed.shape[0] == len(source)
    n = sources.numel()
    return {
        "original": (batch["image"][:n], labels[:n, class_index].double().numpy(), context, np.arange(n)),
        "pasted": (pasted, pasted_labels[:, class_index].double().numpy(), np.zeros(len(source), bool), source),
        "removed": (removed, removed_labels[:, class_index].double().numpy(), context[source], source),
        "background": (batch["image"][n:], labels[n:, class_index].double().numpy(),
                       train.has_context.cpu()[targets].numpy(), np.arange(targets.numel())),
    }
