import numpy as np
import pytest
import torch

from benchmark.metrics import audit_metrics, auroc, is_degenerate, region_share


def test_auroc_counts_ties_as_half():
    assert auroc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert auroc(np.array([0.1]), np.array([0.9])) == 0.0
    assert auroc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    # 3 of 4 pairs won, one tie: (3 + 0.5) / 4
    assert auroc(np.array([0.7, 0.4]), np.array([0.4, 0.1])) == pytest.approx(3.5 / 4)
    assert np.isnan(auroc(np.array([]), np.array([0.1])))


def test_auroc_matches_the_pairwise_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 30).astype(float)
    pairwise = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert auroc(pos, neg) == pytest.approx(pairwise)


def test_region_share_and_all_zero_maps():
    maps = torch.tensor([[[1.0, 3.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    region = torch.tensor([[[0, 1], [1, 1]], [[1, 1], [1, 1]]])
    share = region_share(maps, region)
    assert share[0] == pytest.approx(0.75)
    assert torch.isnan(share[1]), "an all-zero map points nowhere: NaN, not 0 or 1"


def _split(scores, labels=None, context=None, pair=None):
    scores = np.asarray(scores, float)
    n = scores.size
    return {
        "score": scores,
        "logit": np.log(scores / (1 - scores)),
        "label": np.ones(n) if labels is None else np.asarray(labels, float),
        "has_context": np.ones(n) if context is None else np.asarray(context, float),
        "context_share": np.full(n, 0.5),
        "context_area": np.full(n, 0.4),
        "pair": np.full(n, -1) if pair is None else np.asarray(pair),
    }


def test_paper_rows_from_hand_made_predictions():
    preds = {
        "val": _split([0.9, 0.2, 0.6, 0.4], labels=[1, 0, 0, 1], context=[1, 0, 1, 1]),
        "class_without_context": _split([0.7, 0.3, 0.2]),
        "context_without_class": _split([0.6, 0.1]),
        "cf_original": _split([0.9, 0.8, 0.3], pair=[0, 1, 2]),
        "cf_context_swapped": _split([0.2, 0.85, 0.6], pair=[0, 1, 2]),
        "cf_object_removed": _split([0.1, 0.7, 0.2], pair=[0, 1, 2]),
    }
    preds["val"]["context_share"] = np.array([0.8, 0.1, 0.2, np.nan])
    m = audit_metrics(preds, threshold=0.5)
    assert m["val_accuracy"] == 0.5
    assert m["class_without_context"] == pytest.approx(1 / 3)
    assert m["context_without_class"] == 0.5
    assert m["overall"] == pytest.approx((1 / 3 + 0.5) / 2), "overall is the mean of the two groups' rates"
    assert m["shifted_auroc"] == pytest.approx(auroc(np.array([0.7, 0.3, 0.2]), np.array([0.6, 0.1])))
    assert m["context_attention_share"] == pytest.approx(0.8)
    assert m["context_attention_zero_maps"] == 1
    assert m["context_flip_rate"] == pytest.approx(2 / 3)
    assert m["object_removal_flip_rate"] == pytest.approx(1 / 3)
    assert m["context_score_change"] == pytest.approx(np.mean([0.2 - 0.9, 0.85 - 0.8, 0.6 - 0.3]))
    assert not m["val_degenerate"] and not m["shifted_degenerate"]


def test_degenerate_classifier_is_flagged_although_overall_is_half():
    preds = {
        "val": _split([0.1, 0.2], labels=[1, 0]),
        "class_without_context": _split([0.1, 0.2]),
        "context_without_class": _split([0.3, 0.1]),
    }
    m = audit_metrics(preds)
    assert m["overall"] == 0.5 and m["val_degenerate"] and m["shifted_degenerate"]
    assert is_degenerate(np.array([True, True])) and not is_degenerate(np.array([True, False]))


def test_counterfactual_rows_must_be_aligned_by_pair():
    preds = {
        "val": _split([0.9]),
        "class_without_context": _split([0.7]),
        "context_without_class": _split([0.6]),
        "cf_original": _split([0.9, 0.8], pair=[0, 1]),
        "cf_context_swapped": _split([0.2, 0.8], pair=[1, 0]),
        "cf_object_removed": _split([0.1, 0.7], pair=[0, 1]),
    }
    with pytest.raises(ValueError, match="cf_context_swapped: rows are not aligned by pair"):
        audit_metrics(preds)
