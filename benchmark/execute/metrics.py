"""Classification, bias and attention metrics for the audited class and context, from per-image arrays.

Names follow the paper's Table 4 but stay generic: with class "boat" and context "water",
`class_without_context` is "boat without water" (share predicted boat) and `context_without_class` is "water without
boat" (share predicted not boat).

The attention-localisation metrics are batched torch functions over maps `[N,H,W]` in [0, 1] and boolean masks of the
same shape, so `prediction.predict` computes them on the device beside the maps; `valid` (optional) marks the pixels
that count (e.g. not 255 = ignore in a VOC mask). Every one scores an all-zero map (a map that points nowhere) as a
failure (0), never as a success and never as "undefined"; NaN means there is no object to localise (empty mask).
Which of them a run computes, and under which column, is `metric_defs` (`localise` computes them).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable

import numpy as np
import torch

from benchmark.core.metric_defs import Metric, computed, localisation


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve: P(score_pos > score_neg) + P(tie) / 2 (Mann-Whitney U / (n_pos n_neg))."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if positive.size == 0 or negative.size == 0:
        return float("nan")
    scores = np.concatenate([positive, negative])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    u = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2.0
    return float(u / (positive.size * negative.size))


def region_share(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's energy inside `region` (`[N,H,W]` each); NaN for an all-zero map (it points nowhere)."""
    total = maps.flatten(1).sum(1)
    inside = (maps * region.to(maps.dtype)).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, float("nan")))


IOU_TAU = 0.5
"""Threshold of the attention map for `attention_iou`; recorded with the results as `attention_iou_tau`."""
CAM_BG_THRESHOLD = 0.2
"""Constant background score of the CAM segmentation (`cam_segmentation`); recorded as `cam_bg_threshold`."""


def _valid(region: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(region, dtype=torch.bool) if valid is None else valid.to(torch.bool)


@functools.cache  # resolved once per definition, not at every evaluation batch
def per_image(metric: Metric) -> Callable[..., torch.Tensor]:
    """A localisation metric's per-image function (`Metric.per_image`: the function, or where a built-in's lives)."""
    fn = metric.per_image
    if isinstance(fn, str):
        module, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise TypeError(f"metric {metric.name!r} has no per-image function")
    return fn


def localise(maps: torch.Tensor, region: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every localisation metric's column for a batch of maps, `[N]` each (`metric_defs.computed()`, a plugin's
    included): what `prediction.predict` writes per image. A metric whose function fails fails the run, naming it."""
    columns = {}
    for m in computed():
        try:
            columns[m.column] = per_image(m)(maps, region, valid)
        except Exception as err:
            raise RuntimeError(f"metric {m.name!r} ({m.origin}) failed: {type(err).__name__}: {err}") from err
    return columns


def relevance_mass(maps: torch.Tensor, region: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Relevance mass accuracy: the share of each map's energy that lies inside the object mask, `[N]`.

    Arras, Osman, Samek, "CLEVR-XAI: a benchmark dataset for the ground truth evaluation of neural network
    explanations", Information Fusion 2022: `R_in / R_total` over the valid pixels. An all-zero map has no mass on
    the object: 0. NaN where `region` holds no valid pixel (no object to localise).
    """
    region = region.to(torch.bool) & _valid(region, valid)
    weights = maps * _valid(region, valid).to(maps.dtype)
    total = weights.flatten(1).sum(1)
    inside = (weights * region.to(maps.dtype)).flatten(1).sum(1)
    share = torch.where(total > 0, inside / total.clamp_min(1e-30), torch.zeros_like(total))
    return torch.where(region.flatten(1).any(1), share, torch.full_like(share, float("nan")))


def pointing_game(maps: torch.Tensor, region: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Pointing game: 1.0 where the map's maximum lies inside the object mask, else 0.0, `[N]`.

    Zhang, Bargal, Lin, Brandt, Shen, Sclaroff, "Top-down neural attention by excitation backprop", IJCV 2018.
    Ties: a hit if any of the tied maxima lies in the mask (the map points at every one of them equally). No
    tolerance margin (the paper's 15 px would cover a third of a 48 px image). An all-zero map points nowhere: 0.0
    (a miss), so abstaining never scores. NaN where `region` holds no valid pixel.
    """
    ok = _valid(region, valid)
    region = region.to(torch.bool) & ok
    masked = torch.where(ok, maps, torch.full_like(maps, -torch.inf))
    peak = masked.flatten(1).amax(1)
    at_peak = masked == peak.view(-1, 1, 1)
    hit = ((at_peak & region).flatten(1).any(1) & (peak > 0)).to(maps.dtype)
    return torch.where(region.flatten(1).any(1), hit, torch.full_like(hit, float("nan")))


def attention_iou(
    maps: torch.Tensor, region: torch.Tensor, valid: torch.Tensor | None = None, *, tau: float = IOU_TAU
) -> torch.Tensor:
    """IoU between the map thresholded at `map >= tau` and the object mask, `[N]`.

    The usual localisation score of a saliency map against a segmentation (e.g. Selvaraju et al., Grad-CAM, ICCV
    2017, for boxes; here against the pixel mask). An all-zero map selects no pixel: IoU 0. NaN where `region` holds
    no valid pixel.
    """
    ok = _valid(region, valid)
    region = region.to(torch.bool) & ok
    chosen = (maps >= tau) & ok
    inter = (chosen & region).flatten(1).sum(1).to(maps.dtype)
    union = (chosen | region).flatten(1).sum(1).to(maps.dtype)
    iou = inter / union.clamp_min(1)
    return torch.where(region.flatten(1).any(1), iou, torch.full_like(iou, float("nan")))


def cam_segmentation(
    pair_maps: torch.Tensor,
    pair_class: torch.Tensor,
    pair_image: torch.Tensor,
    n_images: int,
    bg_threshold: float = CAM_BG_THRESHOLD,
) -> torch.Tensor:
    """Pseudo-segmentation `[n_images,H,W]` (0 background, class index + 1) from the CAMs of each image's classes.

    As in weakly-supervised segmentation (e.g. Ahn & Kwak, "Learning pixel-level semantic affinity with image-level
    supervision", CVPR 2018): per pixel, the argmax over a constant background score `bg_threshold` and the maps of
    the image's ground-truth classes only (`pair_maps[p]` is class `pair_class[p]` of image `pair_image[p]`). Ties go
    to the background, then to the earlier pair. An image with no pair is all background.
    """
    h, w = pair_maps.shape[-2:]
    device = pair_maps.device
    best = torch.full((n_images, h, w), float(bg_threshold), dtype=pair_maps.dtype, device=device)
    label = torch.zeros(n_images, h, w, dtype=torch.long, device=device)
    if pair_maps.shape[0] == 0:
        return label
    pair_image = pair_image.to(device, torch.long)
    order = torch.argsort(pair_image, stable=True)
    counts = torch.bincount(pair_image, minlength=n_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(pair_image)
    rank[order] = torch.arange(pair_image.numel(), device=device) - starts[pair_image[order]]
    for r in range(int(rank.max()) + 1):  # rounds in which every image appears at most once
        sel = (rank == r).nonzero().squeeze(1)
        image, maps = pair_image[sel], pair_maps[sel]
        better = maps > best[image]
        best[image] = torch.where(better, maps, best[image])
        label[image] = torch.where(better, (pair_class[sel].to(torch.long) + 1).view(-1, 1, 1), label[image])
    return label


def segmentation_counts(
    pred: torch.Tensor, target: torch.Tensor, n_labels: int, ignore: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and label, the intersection and union pixel counts of `pred` and `target`, each `[N,n_labels]`.

    Pixels whose target is `ignore` are left out. Summed over images they give the split-level counts of VOC mIoU.
    """
    n = pred.shape[0]
    ok = target != ignore
    image = torch.arange(n, device=pred.device).view(-1, 1, 1).expand_as(pred)
    size = n * n_labels

    def count(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return torch.bincount((image * n_labels + labels)[keep], minlength=size).view(n, n_labels)

    inter = count(target, ok & (pred == target))
    union = count(pred, ok) + count(target, ok) - inter
    return inter, union


def mean_iou(intersection: np.ndarray, union: np.ndarray) -> tuple[float, np.ndarray]:
    """VOC-style mIoU from intersection and union counts `[..., L]` summed over all images of a split.

    IoU per label = sum of intersections / sum of unions over the split (not a mean of per-image IoUs); the mean is
    over the labels present (union > 0), background included as in the VOC benchmark. Returns (mIoU, IoU per label).
    """
    inter = np.asarray(intersection, float).reshape(-1, np.shape(intersection)[-1]).sum(0)
    union = np.asarray(union, float).reshape(-1, np.shape(union)[-1]).sum(0)
    iou = np.divide(inter, union, out=np.full_like(inter, np.nan), where=union > 0)
    return (float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")), iou


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision `sum_k (R_k - R_{k-1}) P_k` over the distinct score thresholds, highest first.

    The non-interpolated AP of scikit-learn's `average_precision_score` (tied scores enter as one threshold); VOC's
    11-point interpolation is not used. NaN without positives.
    """
    scores = np.asarray(scores, float)
    positive = np.asarray(labels, float) > 0.5
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    ranked, hits = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tp = np.cumsum(hits)[last]
    fp = np.cumsum(~hits)[last]
    recall = tp / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * tp / (tp + fp)))


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(mAP, AP per class) of `[N,K]` scores against multi-hot labels; the mean is over classes with a positive."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, float)
    ap = np.array([average_precision(scores[:, k], labels[:, k]) for k in range(scores.shape[1])])
    return (float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")), ap


GROUPS = ("class_with_context", "neither", "class_without_context", "context_without_class")


def group_accuracies(preds: dict[str, dict[str, np.ndarray]], threshold: float = 0.5) -> dict[str, tuple[float, int]]:
    """Accuracy and size of the four (audited class x context) groups, keyed by `GROUPS`.

    - `class_with_context`: val images holding the class and the context (correct: predicted positive);
    - `neither`: val images holding neither (correct: predicted negative);
    - `class_without_context`: every image of that shifted split (correct: positive);
    - `context_without_class`: every image of that shifted split (correct: negative).

    The two minority groups come from the shifted splits only, not from the few such images in val, so each group
    is one distribution. An empty group has accuracy NaN and size 0.
    """
    out: dict[str, tuple[float, int]] = {}
    val = preds["val"]
    label, context = val["label"] > 0.5, val["has_context"] > 0.5
    positive = val["score"] >= threshold
    parts = {
        "class_with_context": (positive, label & context, True),
        "neither": (positive, ~label & ~context, False),
    }
    for role in ("class_without_context", "context_without_class"):
        score = preds[role]["score"] if role in preds else np.empty(0)
        parts[role] = (score >= threshold, np.ones(score.shape, bool), role == "class_without_context")
    for name in GROUPS:
        decision, member, want = parts[name]
        n = int(member.sum())
        out[name] = (float(np.mean(decision[member] == want)) if n else float("nan"), n)
    return out


def is_degenerate(decisions: np.ndarray) -> bool:
    """A constant decision over a split: the classifier cannot tell its images apart."""
    decisions = np.asarray(decisions, bool)
    return bool(decisions.size > 0 and (decisions.all() or not decisions.any()))


def context_attention(val: dict[str, np.ndarray]) -> dict[str, float | int]:
    """`context_attention_share` (mean share of the class map on the context over images holding both class and
    context), `context_area_share` (the context's share of those images' pixels: what an evenly spread map gets)
    and `context_attention_zero_maps` (all-zero maps, left out of the mean), from one split's audited arrays."""
    both = (val["label"] > 0.5) & (val["has_context"] > 0.5)
    shares = val["context_share"][both]
    finite = shares[np.isfinite(shares)]
    return {
        "context_attention_share": float(finite.mean()) if finite.size else float("nan"),
        "context_attention_zero_maps": int(shares.size - finite.size),
        "context_area_share": float(np.mean(val["context_area"][both])) if both.any() else float("nan"),
    }


BACKGROUNDS = {
    "usual_background_accuracy": "cf_original",
    "random_background_accuracy": "cf_context_swapped",
    "object_only_accuracy": "cf_object_only",
}
"""The background-swap accuracies and the role each reads (the Backgrounds Challenge's variants, Xiao et al., ICLR
2021): the object on its usual ground, on a random ground, alone on a neutral grey."""
OBJECT_SWAPS = {
    "object_swapped_accuracy": "cf_object_swapped",
    "object_swapped_land_accuracy": "cf_object_swapped_land",
}
"""The object-swap accuracies and the role each reads: the boat replaced by another class's object at its place, on
the water (the third shifted group) and on land (`metric_defs`)."""


def split_accuracies(
    preds: dict[str, dict[str, np.ndarray]], roles: dict[str, str], threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy (decision `score >= threshold` equal to the label) on each role of `roles` (metric -> role) that
    `preds` holds."""
    return {
        name: float(np.mean((preds[role]["score"] >= threshold) == (preds[role]["label"] > 0.5)))
        for name, role in roles.items()
        if role in preds
    }


def background_accuracies(preds: dict[str, dict[str, np.ndarray]], threshold: float = 0.5) -> dict[str, float]:
    """Accuracy on each background variant in `preds` (`BACKGROUNDS`), and `background_gap`: usual minus random
    ground, where both are there."""
    out = split_accuracies(preds, BACKGROUNDS, threshold)
    if "usual_background_accuracy" in out and "random_background_accuracy" in out:
        out["background_gap"] = out["usual_background_accuracy"] - out["random_background_accuracy"]
    return out


def audit_metrics(
    preds: dict[str, dict[str, np.ndarray]], threshold: float = 0.5, *, classes: tuple[str, ...] | None = None
) -> dict[str, float | bool | int | str | list[str]]:
    """The record's metrics (those of `metric_defs`, defined there) and its bias diagnostics, from per-split arrays of
    the audited class (`predictions.audited_view`: `score`, `logit`, `label`, `has_context`, `context_share`,
    `context_area`, `pair`, and where computed the localisation columns, `scores_all`/`labels_all` and the CAM
    counts). Decisions are `score >= threshold`; `classes` names the per-class keys (default `class<k>`). The
    shifted-group rows are left out for data without a biased split. Diagnostics beside the metrics: the map's share
    on the context, the counterfactual pairs' flip rates and score changes, the four group accuracies, mAP and AP per
    class, the localisation counts, and the CAM segmentation's mIoU at `cam_bg_threshold`.
    """
    out: dict[str, float | bool | int | str | list[str]] = {"threshold": threshold}
    val = preds["val"]
    val_pred = val["score"] >= threshold
    out["val_accuracy"] = float(np.mean(val_pred == (val["label"] > 0.5)))
    out["val_degenerate"] = is_degenerate(val_pred)
    if "class_without_context" in preds and "context_without_class" in preds:
        cwc = preds["class_without_context"]["score"] >= threshold
        xwc = preds["context_without_class"]["score"] >= threshold
        out["class_without_context"] = float(np.mean(cwc))
        out["context_without_class"] = float(np.mean(~xwc))
        out["overall"] = (out["class_without_context"] + out["context_without_class"]) / 2.0
        out["shifted_degenerate"] = is_degenerate(np.concatenate([cwc, xwc]))
        out["shifted_auroc"] = auroc(preds["class_without_context"]["logit"], preds["context_without_class"]["logit"])
    out |= context_attention(val)
    if "cf_original" in preds:
        original = preds["cf_original"]
        for role in (r for r in preds if r.startswith("cf_") and r != "cf_original"):
            if not np.array_equal(preds[role]["pair"], original["pair"]):
                raise ValueError(f"{role}: rows are not aligned by pair with cf_original")
        decision = original["score"] >= threshold
        for name, role in (("context", "cf_context_swapped"), ("object_removal", "cf_object_removed")):
            out[f"{name}_flip_rate"] = float(np.mean((preds[role]["score"] >= threshold) != decision))
            out[f"{name}_score_change"] = float(np.mean(preds[role]["score"] - original["score"]))
        out |= background_accuracies(preds, threshold) | split_accuracies(preds, OBJECT_SWAPS, threshold)
    groups = group_accuracies(preds, threshold)
    present = {g: acc for g, (acc, n) in groups.items() if n}
    out["group_accuracy_class_with_context"] = groups["class_with_context"][0]
    out["group_accuracy_neither"] = groups["neither"][0]
    out["worst_group"] = min(present, key=present.__getitem__) if present else ""
    out["worst_group_accuracy"] = present[out["worst_group"]] if present else float("nan")
    out["empty_groups"] = [g for g in GROUPS if g not in present]
    if "scores_all" in val:
        names = classes or tuple(f"class{k}" for k in range(val["scores_all"].shape[1]))
        out["val_map"], ap = mean_average_precision(val["scores_all"], val["labels_all"])
        out |= {f"val_ap_{c}": float(v) for c, v in zip(names, ap, strict=True) if np.isfinite(v)}
    if "iou_at_tau" in val:
        located = (val["label"] > 0.5) & np.isfinite(val["iou_at_tau"])
        out["localisation_images"] = int(located.sum())
        out["localisation_zero_maps"] = int(np.isnan(val["context_share"][located]).sum())
        out["attention_iou_tau"] = IOU_TAU
        for m in localisation():
            if m.column in val:
                out[m.name] = float(np.mean(val[m.column][located])) if located.any() else float("nan")
    if "cam_intersection" in val:
        names = classes or tuple(f"class{k}" for k in range(val["cam_intersection"].shape[1] - 1))
        out["cam_bg_threshold"] = CAM_BG_THRESHOLD
        out["cam_miou"], iou = mean_iou(val["cam_intersection"], val["cam_union"])
        out |= {f"cam_iou_{c}": float(v) for c, v in zip(("background", *names), iou, strict=True) if np.isfinite(v)}
    return out
