import contextlib
import warnings

import numpy as np
import pytest
import torch

from benchmark.execute.metrics import (
    GROUPS,
    attention_iou,
    audit_metrics,
    auroc,
    average_precision,
    cam_segmentation,
    context_attention,
    group_accuracies,
    is_degenerate,
    mean_average_precision,
    mean_iou,
    pointing_game,
    region_share,
    relevance_mass,
    segmentation_counts,
)


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


def test_average_precision_against_hand_computed_values():
    # ranks: hit (P 1, R 1/2), miss, hit (P 2/3, R 1), miss -> 1/2 * 1 + 1/2 * 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # a tie enters as one threshold: {0.9: miss}, {0.5, 0.5: one hit, one miss} -> R 1 at P 1/3
    assert average_precision(np.array([0.9, 0.5, 0.5]), np.array([0, 1, 0])) == pytest.approx(1 / 3)
    assert average_precision(np.array([0.2, 0.9, 0.1]), np.array([0, 1, 0])) == 1.0
    assert np.isnan(average_precision(np.array([0.2, 0.3]), np.array([0, 0])))
    scores = np.array([[0.9, 0.1, 0.3], [0.8, 0.7, 0.2], [0.7, 0.6, 0.1], [0.6, 0.2, 0.4]])
    labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    m, ap = mean_average_precision(scores, labels)
    assert ap[0] == pytest.approx(5 / 6) and ap[1] == pytest.approx(1.0) and np.isnan(ap[2])
    assert m == pytest.approx((5 / 6 + 1) / 2), "classes without a positive are left out of the mean"


def _maps(*rows):
    return torch.tensor(rows, dtype=torch.float32)


OBJECT = torch.tensor([[[True, False], [True, False]]])


def test_relevance_mass_all_zero_maps_and_ignored_pixels():
    maps = _maps([[0.6, 0.2], [0.2, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]])
    region = OBJECT.expand(3, 2, 2).clone()
    region[2] = False
    mass = relevance_mass(maps, region)
    assert mass[0] == pytest.approx(0.8)
    assert mass[1] == 0.0, "an all-zero map has no mass on the object"
    assert torch.isnan(mass[2]), "no object: undefined"
    valid = torch.tensor([[[True, False], [True, True]]])
    assert relevance_mass(maps[:1], region[:1], valid)[0] == pytest.approx(0.8 / 0.8)


def test_pointing_game_ties_zero_maps_and_missing_objects():
    maps = _maps(
        [[1.0, 0.2], [0.1, 0.0]],  # max inside: hit
        [[0.1, 1.0], [0.0, 0.3]],  # max outside: miss
        [[0.2, 1.0], [1.0, 0.0]],  # tied maxima, one inside: hit
        [[0.2, 1.0], [0.0, 1.0]],  # tied maxima, none inside: miss
        [[0.0, 0.0], [0.0, 0.0]],  # all-zero: points nowhere, a miss (not a tie of four maxima)
        [[1.0, 0.0], [0.0, 0.0]],  # no object in the mask: NaN
    )
    region = OBJECT.expand(6, 2, 2).clone()
    region[5] = False
    hit = pointing_game(maps, region)
    np.testing.assert_array_equal(hit[:5].numpy(), [1, 0, 1, 0, 0])
    assert torch.isnan(hit[5])
    valid = torch.tensor([[[True, False], [True, True]]])
    # the peak sits on an ignored pixel: the next highest valid pixel (0.3, outside) decides
    assert pointing_game(_maps([[0.1, 1.0], [0.0, 0.3]]), OBJECT, valid)[0] == 0.0
    assert pointing_game(_maps([[0.5, 1.0], [0.0, 0.3]]), OBJECT, valid)[0] == 1.0


def test_attention_iou_at_tau():
    maps = _maps([[0.9, 0.6], [0.2, 0.0]], [[0.0, 0.0], [0.0, 0.0]], [[0.9, 0.1], [0.5, 0.1]], [[1.0, 0.0], [0.0, 0.0]])
    region = OBJECT.expand(4, 2, 2).clone()
    region[3] = False
    iou = attention_iou(maps, region, tau=0.5)
    assert iou[0] == pytest.approx(1 / 3), "{(0,0),(0,1)} vs {(0,0),(1,0)}"
    assert iou[1] == 0.0, "an all-zero map selects nothing"
    assert iou[2] == 1.0, "the threshold is inclusive (map >= tau)"
    assert torch.isnan(iou[3])
    assert attention_iou(maps[:1], region[:1], tau=0.1)[0] == pytest.approx(2 / 3)


def test_cam_segmentation_and_voc_miou():
    # image 0 has classes 0 and 2; image 1 has class 1; image 2 none (all background)
    pair_maps = _maps(
        [[0.9, 0.1], [0.5, 0.0]],  # image 0, class 0
        [[0.3, 0.8], [0.5, 0.1]],  # image 0, class 2 (ties with class 0 at 0.5: the earlier pair wins)
        [[0.2, 0.1], [0.7, 0.0]],  # image 1, class 1 (0.2 ties the background: background wins)
    )
    pred = cam_segmentation(pair_maps, torch.tensor([0, 2, 1]), torch.tensor([0, 0, 1]), 3, bg_threshold=0.2)
    expected = torch.tensor([[[1, 3], [1, 0]], [[0, 0], [2, 0]], [[0, 0], [0, 0]]])
    assert torch.equal(pred, expected)
    target = torch.tensor([[[1, 3], [3, 255]], [[0, 2], [2, 0]], [[0, 0], [0, 0]]])
    inter, union = segmentation_counts(pred, target, 4)
    np.testing.assert_array_equal(inter.numpy(), [[0, 1, 0, 1], [2, 0, 1, 0], [4, 0, 0, 0]])
    np.testing.assert_array_equal(union.numpy(), [[0, 2, 0, 2], [3, 0, 2, 0], [4, 0, 0, 0]])
    miou, iou = mean_iou(inter.numpy(), union.numpy())
    # summed over the split (not a mean of per-image IoUs): background 6/7, classes 0, 1, 2 each 1/2
    np.testing.assert_allclose(iou, [6 / 7, 0.5, 0.5, 0.5])
    assert miou == pytest.approx((6 / 7 + 1.5) / 4)
    miou, iou = mean_iou(np.array([[3, 0, 0]]), np.array([[4, 0, 2]]))
    assert np.isnan(iou[1]) and miou == pytest.approx(0.375), "labels absent everywhere are left out"


def test_worst_group_accuracy_and_empty_groups():
    preds = {
        "val": _split([0.9, 0.2, 0.6, 0.4], labels=[1, 1, 0, 1], context=[1, 1, 1, 1]),
        "class_without_context": _split([0.7, 0.3, 0.2, 0.9]),
        "context_without_class": _split([0.6, 0.1]),
    }
    groups = group_accuracies(preds)
    assert groups["class_with_context"] == (pytest.approx(1 / 3), 3)
    assert np.isnan(groups["neither"][0]) and groups["neither"][1] == 0
    m = audit_metrics(preds)
    assert m["empty_groups"] == ["neither"], "an empty group is skipped and named"
    assert m["worst_group"] == "class_with_context" and m["worst_group_accuracy"] == pytest.approx(1 / 3)
    preds["val"] = _split([0.9, 0.2], labels=[1, 0], context=[1, 0])
    m = audit_metrics(preds)
    assert m["empty_groups"] == [] and m["group_accuracy_neither"] == 1.0
    assert m["worst_group"] == "class_without_context" and m["worst_group_accuracy"] == 0.5


def test_localisation_map_and_cam_summaries():
    val = _split([0.9, 0.2, 0.6, 0.4], labels=[1, 1, 0, 1])
    val["context_share"] = np.array([0.5, np.nan, 0.5, 0.5])
    val |= {
        "relevance_mass": np.array([0.8, 0.0, np.nan, np.nan]),
        "pointing_hit": np.array([1.0, 0.0, np.nan, np.nan]),
        "iou_at_tau": np.array([0.5, 0.0, np.nan, np.nan]),
        "scores_all": np.array([[0.9, 0.1], [0.2, 0.3], [0.6, 0.9], [0.4, 0.2]]),
        "labels_all": np.array([[1, 0], [1, 1], [0, 0], [1, 0]]),
        "cam_intersection": np.array([[3, 1, 0], [2, 0, 0], [4, 0, 0], [1, 0, 0]]),
        "cam_union": np.array([[4, 2, 0], [3, 1, 0], [4, 0, 0], [2, 0, 0]]),
    }
    preds = {"val": val, "class_without_context": _split([0.7]), "context_without_class": _split([0.6])}
    m = audit_metrics(preds, classes=("boat", "car"))
    assert m["localisation_images"] == 2 and m["localisation_zero_maps"] == 1
    assert m["relevance_mass"] == pytest.approx(0.4) and m["pointing_game"] == 0.5 and m["attention_iou"] == 0.25
    assert m["attention_iou_tau"] == 0.5
    assert m["val_ap_boat"] == pytest.approx(average_precision(val["scores_all"][:, 0], val["labels_all"][:, 0]))
    assert m["val_ap_car"] == 0.5, "one miss ranked above the one positive"
    assert m["val_map"] == pytest.approx((m["val_ap_boat"] + 0.5) / 2)
    assert m["cam_iou_background"] == pytest.approx(10 / 13) and m["cam_iou_boat"] == pytest.approx(1 / 3)
    assert "cam_iou_car" not in m, "a label absent from predictions and masks is left out"
    assert m["cam_miou"] == pytest.approx((10 / 13 + 1 / 3) / 2)


def _crossed_val():
    """Val images in all four (class x context) cells, with hand-chosen scores (threshold 0.5):

    row  class context score  cell                  correct?
    0    1     1       0.9    class with context    yes
    1    1     1       0.3    class with context    no
    2    1     0       0.2    class alone           (in neither val group)
    3    1     0       0.1    class alone           (in neither val group)
    4    0     1       0.8    context alone         (in neither val group)
    5    0     1       0.7    context alone         (in neither val group)
    6    0     0       0.1    neither               yes
    7    0     0       0.5    neither               no (0.5 decides positive)
    8    0     0       0.2    neither               yes
    """
    val = _split([0.9, 0.3, 0.2, 0.1, 0.8, 0.7, 0.1, 0.5, 0.2], labels=[1, 1, 1, 1, 0, 0, 0, 0, 0])
    val["has_context"] = np.array([1, 1, 0, 0, 1, 1, 0, 0, 0], float)
    val["context_share"] = np.array([0.8, 0.6, np.nan, 0.2, 0.3, 0.4, 0.5, 0.05, 0.15])
    val["context_area"] = np.array([0.3, 0.5, 0.9, 0.9, 0.1, 0.1, 0.2, 0.2, 0.2])
    return val


def test_boat_on_water_group_needs_the_context_not_only_the_class():
    """Group membership comes from the class label and the context flag together: the class without its context
    (rows 2, 3) is in neither val group, nor is the context without the class (rows 4, 5)."""
    preds = {"val": _crossed_val(), "class_without_context": _split([0.6]), "context_without_class": _split([0.4])}
    groups = group_accuracies(preds)
    assert groups["class_with_context"] == (0.5, 2), "rows 0, 1 (label alone would give 1/4 over 4 rows)"
    assert groups["neither"] == (pytest.approx(2 / 3), 3), "rows 6, 7, 8 (no label alone: 2/5 over 5 rows)"
    assert groups["class_without_context"] == (1.0, 1) and groups["context_without_class"] == (1.0, 1)
    m = audit_metrics(preds)
    assert m["group_accuracy_class_with_context"] == 0.5
    assert m["group_accuracy_neither"] == pytest.approx(2 / 3)
    assert m["worst_group"] == "class_with_context" and m["worst_group_accuracy"] == 0.5
    assert m["val_accuracy"] == pytest.approx(3 / 9), "rows 0, 6, 8 right; val accuracy ignores the context"


def test_context_attention_is_over_images_with_class_and_context_only():
    m = audit_metrics({"val": _crossed_val()})
    assert m["context_attention_share"] == pytest.approx(0.7), "mean of rows 0, 1: 0.8 and 0.6"
    assert m["context_area_share"] == pytest.approx(0.4), "mean of rows 0, 1: 0.3 and 0.5"
    assert m["context_attention_zero_maps"] == 0, "row 2's all-zero map has no context: not counted"
    assert "overall" not in m and "class_without_context" not in m, "no shifted splits: no shifted rows"
    assert m["empty_groups"] == ["class_without_context", "context_without_class"]


def test_group_accuracies_threshold_and_shifted_decisions():
    preds = {
        "val": _crossed_val(),
        "class_without_context": _split([0.55, 0.45, 0.7]),
        "context_without_class": _split([0.45, 0.55]),
    }
    groups = group_accuracies(preds, threshold=0.6)
    assert groups["class_with_context"] == (0.5, 2)
    assert groups["neither"] == (1.0, 3), "0.5 is below 0.6: row 7 is now right"
    assert groups["class_without_context"] == (pytest.approx(1 / 3), 3), "only 0.7 reaches 0.6"
    assert groups["context_without_class"] == (1.0, 2)
    at_half = group_accuracies(preds)
    assert at_half["class_without_context"] == (pytest.approx(2 / 3), 3)
    assert at_half["context_without_class"] == (0.5, 2)
    only_val = group_accuracies({"val": _crossed_val()})
    assert np.isnan(only_val["class_without_context"][0]) and only_val["class_without_context"][1] == 0
    assert np.isnan(only_val["context_without_class"][0]) and only_val["context_without_class"][1] == 0


# Mutation-testing survivors (tox -e mutation): edges of the metrics, by hand.


@contextlib.contextmanager
def _quiet():
    """Warnings as errors: an empty group or a zero union is handled by the rule, not by a 0/0 division."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_audit_metrics_decisions_are_score_at_least_threshold():
    preds = {
        "val": _split([0.5, 0.4], labels=[1, 0], context=[1, 0]),
        "class_without_context": _split([0.5, 0.2]),
        "context_without_class": _split([0.5, 0.1, 0.3]),
        "cf_original": _split([0.5, 0.4], pair=[0, 1]),
        "cf_context_swapped": _split([0.49, 0.5], pair=[0, 1]),
        "cf_object_removed": _split([0.5, 0.4], pair=[0, 1]),
    }
    m = audit_metrics(preds)
    assert m["threshold"] == 0.5
    assert m["val_accuracy"] == 1.0, "0.5 is a positive decision"
    assert m["class_without_context"] == 0.5 and m["context_without_class"] == pytest.approx(2 / 3)
    assert m["context_flip_rate"] == 1.0 and m["object_removal_flip_rate"] == 0.0
    high = audit_metrics(preds, threshold=0.45)
    assert high["threshold"] == 0.45 and high["val_accuracy"] == 1.0
    strict = audit_metrics(preds, threshold=0.6)
    assert strict["val_accuracy"] == 0.5 and strict["class_without_context"] == 0.0
    crossed = {"val": _crossed_val(), "class_without_context": _split([0.7]), "context_without_class": _split([0.4])}
    assert audit_metrics(crossed, threshold=0.6)["group_accuracy_neither"] == 1.0, "the threshold reaches the groups"


def test_shifted_rows_need_both_shifted_splits():
    m = audit_metrics({"val": _split([0.9]), "class_without_context": _split([0.7])})
    assert "overall" not in m and "shifted_auroc" not in m
    assert m["empty_groups"] == ["neither", "context_without_class"]


def test_no_group_at_all_has_no_worst_group():
    m = audit_metrics({"val": _split([0.9, 0.2], labels=[1, 1], context=[0, 0])})
    assert m["worst_group"] == "" and np.isnan(m["worst_group_accuracy"])
    assert m["empty_groups"] == list(GROUPS)
    assert np.isnan(m["context_attention_share"]) and np.isnan(m["context_area_share"])
    assert m["context_attention_zero_maps"] == 0


def test_context_attention_of_only_all_zero_maps():
    val = _split([0.9, 0.8], labels=[1, 1], context=[1, 1])
    val["context_share"] = np.array([np.nan, np.nan])
    m = context_attention(val)
    assert np.isnan(m["context_attention_share"]) and m["context_attention_zero_maps"] == 2
    assert m["context_area_share"] == pytest.approx(0.4)


def test_group_accuracies_of_absent_shifted_splits_are_quietly_empty():
    with _quiet():
        groups = group_accuracies({"val": _crossed_val()})
    assert groups["class_without_context"][1] == 0 and np.isnan(groups["class_without_context"][0])


def test_default_class_names_of_ap_and_cam_iou():
    val = _split([0.9, 0.2], labels=[1, 0])
    val["scores_all"] = np.array([[0.9, 0.1], [0.2, 0.8]])
    val["labels_all"] = np.array([[1, 0], [0, 1]])
    val["cam_intersection"] = np.array([[1, 2, 0], [1, 0, 3]])
    val["cam_union"] = np.array([[2, 2, 0], [2, 0, 4]])
    m = audit_metrics({"val": val})
    assert m["val_ap_class0"] == 1.0 and m["val_ap_class1"] == 1.0 and m["val_map"] == 1.0
    assert m["cam_bg_threshold"] == 0.2
    assert m["cam_iou_background"] == 0.5 and m["cam_iou_class0"] == 1.0 and m["cam_iou_class1"] == 0.75
    assert not any(k.startswith("cam_iou_class2") for k in m)


def test_localisation_without_located_images_is_nan():
    val = _split([0.9, 0.2], labels=[1, 0])
    for column in ("iou_at_tau", "relevance_mass", "pointing_hit"):
        val[column] = np.array([np.nan, 0.5])
    m = audit_metrics({"val": val})
    assert m["localisation_images"] == 0
    assert np.isnan(m["attention_iou"]) and np.isnan(m["relevance_mass"]) and np.isnan(m["pointing_game"])


def test_auroc_and_mean_ap_of_empty_sides_are_quietly_nan():
    with _quiet():
        assert np.isnan(auroc(np.array([0.3]), np.array([])))
        assert np.isnan(auroc(np.array([]), np.array([])))
        m, ap = mean_average_precision(np.array([[0.3, 0.1]]), np.array([[0, 0]]))
    assert np.isnan(m) and np.isnan(ap).all()


def test_is_degenerate_of_no_and_one_decision():
    assert not is_degenerate(np.array([], bool)), "no images: nothing constant to flag"
    assert is_degenerate(np.array([True])) and is_degenerate(np.array([0.0, 0.0]))
    assert not is_degenerate([0.0, 1.0])


def test_mean_iou_of_stacked_counts_unions_of_one_and_nothing_present():
    inter = np.array([[[1, 0, 0]], [[1, 1, 0]]])  # [N=2, 1, L=3]
    union = np.array([[[2, 1, 0]], [[2, 1, 0]]])
    with _quiet():
        miou, iou = mean_iou(inter, union)
    np.testing.assert_allclose(iou[:2], [0.5, 0.5])
    assert np.isnan(iou[2]) and miou == 0.5, "a union of one pixel counts; a union of none is left out"
    with _quiet():
        miou, iou = mean_iou(np.zeros((2, 3)), np.zeros((2, 3)))
    assert np.isnan(miou) and np.isnan(iou).all()


def test_region_share_per_image_of_small_maps():
    maps = _maps([[0.1, 0.3], [0.0, 0.0]], [[0.2, 0.2], [0.2, 0.2]])
    region = torch.tensor([[[False, True], [False, False]], [[True, True], [True, False]]])
    share = region_share(maps, region)
    assert share[0] == pytest.approx(0.75) and share[1] == pytest.approx(0.75), "totals below 1 are shares too"
    maps = _maps([[0.1, 0.3], [0.0, 0.0]], [[2.0, 0.0], [0.0, 0.0]])
    share = region_share(maps, region)
    assert share[0] == pytest.approx(0.75) and share[1] == pytest.approx(1.0)


def test_relevance_mass_per_image_and_ignoring_invalid_energy():
    maps = _maps([[0.6, 0.2], [0.2, 0.0]], [[0.0, 1.0], [1.0, 2.0]])
    region = OBJECT.expand(2, 2, 2)
    mass = relevance_mass(maps, region)
    assert mass[0] == pytest.approx(0.8) and mass[1] == pytest.approx(0.25)
    valid = torch.tensor([[[True, True], [True, False]]]).expand(2, 2, 2)
    mass = relevance_mass(maps, region, valid)
    assert mass[0] == pytest.approx(0.8) and mass[1] == pytest.approx(0.5), "image 1's 2.0 is on an ignored pixel"


def test_pointing_game_peak_is_per_image_and_valid_may_be_0_1():
    maps = _maps([[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.5], [0.2, 0.0]])
    region = torch.tensor([[[True, False], [False, False]], [[False, True], [False, False]]])
    assert pointing_game(maps, region).tolist() == [1.0, 1.0], "image 1 peaks at 0.5, its own maximum"
    valid = torch.tensor([[[1, 1], [1, 1]], [[1, 0], [1, 1]]], dtype=torch.uint8)
    assert pointing_game(maps, region, valid).tolist()[0] == 1.0
    assert np.isnan(pointing_game(maps, region, valid).tolist()[1]), "image 1's object is on an ignored pixel"


def test_attention_iou_of_one_pixel_and_with_ignored_pixels():
    maps = _maps([[0.9, 0.0], [0.0, 0.0]])
    region = torch.tensor([[[True, False], [False, False]]])
    assert attention_iou(maps, region)[0] == 1.0, "one pixel each, the same one"
    maps = _maps([[0.9, 0.9], [0.0, 0.0]])
    valid = torch.tensor([[[True, False], [True, True]]])
    assert attention_iou(maps, region)[0] == 0.5
    assert attention_iou(maps, region, valid=valid)[0] == 1.0, "the chosen ignored pixel is not counted"


def test_cam_segmentation_with_pairs_out_of_image_order_one_pair_and_none():
    pair_maps = _maps([[0.9, 0.0], [0.0, 0.0]], [[0.0, 0.9], [0.0, 0.0]], [[0.5, 0.6], [0.3, 0.0]])
    # pair 0: image 1, class 0; pair 1: image 0, class 1; pair 2: image 1, class 2
    pred = cam_segmentation(pair_maps, torch.tensor([0, 1, 2]), torch.tensor([1, 0, 1]), 2)
    assert pred.tolist() == [[[0, 2], [0, 0]], [[1, 3], [3, 0]]]
    one = cam_segmentation(pair_maps[:1], torch.tensor([4]), torch.tensor([0]), 2)
    assert one.tolist() == [[[5, 0], [0, 0]], [[0, 0], [0, 0]]]
    none = cam_segmentation(pair_maps[:0], torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), 2)
    assert none.shape == (2, 2, 2) and not none.any()


def test_relevance_mass_of_an_object_only_on_ignored_pixels_is_nan():
    maps = _maps([[0.6, 0.2], [0.2, 0.0]])
    region = torch.tensor([[[False, False], [False, True]]])
    valid = torch.tensor([[[True, True], [True, False]]])
    assert torch.isnan(relevance_mass(maps, region, valid)[0]), "no valid object pixel: nothing to localise"


def test_shifted_group_decisions_at_the_threshold():
    preds = {"val": _crossed_val(), "class_without_context": _split([0.5, 0.4]), "context_without_class": _split([0.5])}
    groups = group_accuracies(preds)
    assert groups["class_without_context"] == (0.5, 2), "0.5 decides positive: right for the class"
    assert groups["context_without_class"] == (0.0, 1), "0.5 decides positive: wrong for the context alone"


def test_mean_iou_counts_a_union_of_one_pixel():
    miou, iou = mean_iou(np.array([[1, 1], [0, 0]]), np.array([[1, 1], [1, 0]]))
    np.testing.assert_allclose(iou, [0.5, 1.0])
    assert miou == 0.75
