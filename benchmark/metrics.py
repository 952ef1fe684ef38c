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


def audit_metrics(preds: dict[str, dict[str, np.ndarray]], threshold: float = 0.5) -> dict[str, float | bool | int]:
    """The paper's four rows and the bias diagnostics from per-split arrays of the audited class.

    Each role in `preds` holds `score` (sigmoid of the audited class's logit), `logit`, `label` (0/1), `has_context`
    (0/1), `context_share` (share of the class map on context pixels, NaN for an all-zero map), `context_area` and
    `pair`. Decisions are `score >= threshold`.

    - `overall`: the mean of the two shifted-group rates (the paper's 50 + 50 images make it the pooled share too).
    - `shifted_auroc`: AUROC of the logit between class-without-context (positives) and context-without-class
      (negatives); threshold-free, and 0.5 for a classifier that cannot tell them apart.
    - `context_attention_share`: mean share of the class map on the context over in-distribution images holding
      both class and context, beside `context_area_share`, the context's share of those images' pixels (the value
      a map spread evenly over the image would get); all-zero maps are counted in `context_attention_zero_maps`.
    - `context_flip_rate`: share of counterfactual pairs whose decision changes when only the context is replaced
      (lower is better); `object_removal_flip_rate`: share whose decision changes when only the object is removed
      (higher is better); the mean score changes beside them.
    """
    out: dict[str, float | bool | int] = {"threshold": threshold}
    val = preds["val"]
    val_pred = val["score"] >= threshold
    out["val_accuracy"] = float(np.mean(val_pred == (val["label"] > 0.5)))
    out["val_degenerate"] = is_degenerate(val_pred)
    cwc = preds["class_without_context"]["score"] >= threshold
    xwc = preds["context_without_class"]["score"] >= threshold
    out["class_without_context"] = float(np.mean(cwc))
    out["context_without_class"] = float(np.mean(~xwc))
    out["overall"] = (out["class_without_context"] + out["context_without_class"]) / 2.0
    out["shifted_degenerate"] = is_degenerate(np.concatenate([cwc, xwc]))
    out["shifted_auroc"] = auroc(preds["class_without_context"]["logit"], preds["context_without_class"]["logit"])
    both = (val["label"] > 0.5) & (val["has_context"] > 0.5)
    shares = val["context_share"][both]
    finite = shares[np.isfinite(shares)]
    out["context_attention_share"] = float(finite.mean()) if finite.size else float("nan")
    out["context_attention_zero_maps"] = int(shares.size - finite.size)
    out["context_area_share"] = float(np.mean(val["context_area"][both])) if both.any() else float("nan")
    if "cf_original" in preds:
        original = preds["cf_original"]
        for role in ("cf_context_swapped", "cf_object_removed"):
            if not np.array_equal(preds[role]["pair"], original["pair"]):
                raise ValueError(f"{role}: rows are not aligned by pair with cf_original")
        decision = original["score"] >= threshold
        for name, role in (("context", "cf_context_swapped"), ("object_removal", "cf_object_removed")):
            out[f"{name}_flip_rate"] = float(np.mean((preds[role]["score"] >= threshold) != decision))
            out[f"{name}_score_change"] = float(np.mean(preds[role]["score"] - original["score"]))
    return out
