"""Classification, bias and attention metrics for the audited class and context, from per-image arrays.

Names follow the paper's Table 4 but stay generic: with class "boat" and context "water",
`class_without_context` is "boat without water" (share predicted boat) and `context_without_class` is "water without
boat" (share predicted not boat).
"""

from __future__ import annotations

import numpy as np
import torch


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


def is_degenerate(decisions: np.ndarray) -> bool:
    """A constant decision over a split: the classifier cannot tell its images apart."""
    decisions = np.asarray(decisions, bool)
    return bool(decisions.size > 0 and (decisions.all() or not decisions.any()))


def audit_metrics(preds: dict[str, dict[str, np.ndarray]], threshold: float = 0.5) -> dict[str, float | bool]:
    """The paper's four rows and the bias diagnostics from per-split arrays of the audited class.

    Each split in `preds` holds `score` (sigmoid of the audited class), `label` (0/1), `has_context` (0/1) and
    `context_share` (share of the class map on context pixels); counterfactual splits add nothing else, their rows
    are aligned by pair.
    """
    out: dict[str, float | bool] = {"threshold": threshold}
    val = preds["val"]
    val_pred = val["score"] >= threshold
    out["val_accuracy"] = float(np.mean(val_pred == (val["label"] > 0.5)))
    out["val_degenerate"] = is_degenerate(val_pred)
    cwc = preds["class_without_context"]["score"] >= threshold
    xwc = preds["context_without_class"]["score"] >= threshold
    out["class_without_context"] = float(np.mean(cwc))
    out["context_without_class"] = float(np.mean(~xwc))
    out["overall"] = float((cwc.sum() + (~xwc).sum()) / (cwc.size + xwc.size))
    out["shifted_degenerate"] = is_degenerate(np.concatenate([cwc, xwc]))
    out["shifted_auroc"] = auroc(preds["class_without_context"]["score"], preds["context_without_class"]["score"])
    both = (val["label"] > 0.5) & (val["has_context"] > 0.5)
    out["context_attention_share"] = float(np.nanmean(val["context_share"][both])) if both.any() else float("nan")
    out["context_area_share"] = float(np.mean(val["context_area"][both])) if both.any() else float("nan")
    if "cf_original" in preds:
        original = preds["cf_original"]["score"] >= threshold
        swapped = preds["cf_context_swapped"]["score"] >= threshold
        removed = preds["cf_object_removed"]["score"] >= threshold
        out["context_flip_rate"] = float(np.mean(original != swapped))
        out["context_score_change"] = float(
            np.mean(preds["cf_context_swapped"]["score"] - preds["cf_original"]["score"])
        )
        out["object_removal_flip_rate"] = float(np.mean(original & ~removed))
        out["object_removal_score_change"] = float(
            np.mean(preds["cf_object_removed"]["score"] - preds["cf_original"]["score"])
        )
    return out
