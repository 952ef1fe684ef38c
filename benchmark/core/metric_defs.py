"""The metrics a run is scored on, declared once: name, the report's label, the splits (roles) each reads, its
direction, whether it is a per-image 0/1 outcome, the record flag that marks a degenerate cell, and for a
localisation metric the per-image column of `predictions.csv` it is read from.

The per-image computation (`metrics.relevance_mass`, `metrics.pointing_game`, `metrics.attention_iou`, called by
`train.predict`), the prediction columns (`predictions.LOCALISATION`),
the run-level means in the record (`metrics.summarise`), the tables' groupers (`tables.METRICS`) and every label of
the report (`labels`) read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

SHIFTED = ("class_without_context", "context_without_class")


@dataclass(frozen=True)
class Metric:
    """One metric. `label` may name the audited class `{cls}` and its context `{context}`."""

    name: str
    label: str
    roles: tuple[str, ...]
    higher_is_better: bool = True
    binary: bool = False  # one group of per-image 0/1 outcomes: the exact McNemar test applies
    degenerate: str | None = None  # record flag that marks the cell
    column: str | None = None  # the per-image column of predictions.csv (localisation metrics)
    chance: float | None = None  # what a classifier that tells nothing apart scores (drawn on the report's axes)
    definition: str = ""  # what it measures, in words (docs/statistics.md is generated from it)


METRICS: tuple[Metric, ...] = (
    Metric("val_accuracy", "in-distribution val accuracy", ("val",), binary=True, degenerate="val_degenerate",
           definition="share of in-distribution val images whose audited-class call (score ≥ `train.threshold`) "
           "matches its label"),
    Metric("class_without_context", "{cls} without {context} (share called {cls})", ("class_without_context",),
           binary=True, degenerate="shifted_degenerate",
           definition="share of the images with the class and without its context that are called the class"),
    Metric("context_without_class", "{context} without {cls} (share called not {cls})", ("context_without_class",),
           binary=True, degenerate="shifted_degenerate",
           definition="share of the images with the context and without the class that are not called the class"),
    Metric("overall", "overall (mean of the two)", SHIFTED, degenerate="shifted_degenerate",
           definition="mean of the two shifted groups' accuracies (0.5 for a constant prediction, marked degenerate)"),
    Metric("shifted_auroc", "AUROC, shifted groups", SHIFTED, chance=0.5,
           definition="AUROC of the class score between the two shifted groups: the chance that an image of the class "
           "without its context scores above one of the context without the class (threshold-free)"),
    Metric("worst_group_accuracy", "worst-group accuracy", ("val", *SHIFTED),
           definition="the lowest accuracy of the four (class × context) groups: with both and with neither "
           "from val, the two minority groups from the shifted splits (Sagawa et al., ICLR 2020)"),
    Metric("context_flip_rate", "{context} flip rate (lower is better)", ("cf_original", "cf_context_swapped"),
           higher_is_better=False,
           definition="share of counterfactual pairs whose call flips when only the context is replaced, the object "
           "and the rest of the image unchanged (built-in data)"),
    Metric("usual_background_accuracy", "{cls} on its usual background, {context} (accuracy)", ("cf_original",),
           binary=True,
           definition="accuracy on the counterfactual originals: the object on its usual ground, one other object "
           "beside it (built-in data)"),
    Metric("random_background_accuracy", "{cls} on a random background (accuracy)", ("cf_context_swapped",),
           binary=True,
           definition="accuracy on the same scenes with only the ground replaced by a random land type (built-in "
           "data)"),
    Metric("background_gap", "background gap, usual − random (lower is better)", ("cf_original", "cf_context_swapped"),
           higher_is_better=False,
           definition="usual-background minus random-background accuracy, paired by scene: what moving the object off "
           "its usual ground costs (the Backgrounds Challenge's BG-Gap, Xiao et al., ICLR 2021); 0 for a classifier "
           "that ignores the ground, negative where the swapped ground helps (built-in data)"),
    Metric("object_only_accuracy", "objects on a neutral background (accuracy)", ("cf_object_only",), binary=True,
           definition="accuracy on the same scenes' objects alone, sky and ground one flat neutral grey (the "
           "Backgrounds Challenge's only-foreground variant); built-in data from generator version 2 on, absent from "
           "older runs"),
    Metric("object_swapped_accuracy", "{context} with another object in the {cls}'s place (share called not {cls})",
           ("cf_object_swapped",), binary=True,
           definition="share of the counterfactual scenes, on their water, whose boat is replaced by an object of "
           "another class at its place, size and colours, that are not called the class: a third shifted group, "
           "which an erased pass cannot imitate (an object stands where the boat was, not a hole); built-in data "
           "with `data.generator_version = 3`"),
    Metric("object_swapped_land_accuracy", "land with another object in the {cls}'s place (share called not {cls})",
           ("cf_object_swapped_land",), binary=True,
           definition="the same scenes with the replaced object on the land of the random-background split: the "
           "third group's control without the context, paired with it by scene (built-in data with "
           "`data.generator_version = 3`)"),
    Metric("relevance_mass", "relevance mass", ("val",), column="relevance_mass",
           definition="share of the class's Grad-CAM energy inside its mask, on val images with the class (Arras et "
           "al., Information Fusion 2022); an all-zero map scores 0"),
    Metric("pointing_game", "pointing game", ("val",), binary=True, column="pointing_hit",
           definition="share of val images with the class whose Grad-CAM maximum lies on its mask, no tolerance "
           "margin (Zhang et al., IJCV 2018); an all-zero map misses"),
    Metric("attention_iou", "attention IoU", ("val",), column="iou_at_tau",
           definition="IoU of the Grad-CAM map thresholded at `attention_iou_tau` (0.5) with the class's mask, on "
           "val images with the class; an all-zero map scores 0"),
)
METRIC = {m.name: m for m in METRICS}
LOCALISATION = tuple((m.name, m.column) for m in METRICS if m.column)
"""(metric, per-image column) of the localisation metrics: a run's metric is the mean of its column."""


def labels(cls: str, context: str) -> dict[str, str]:
    """Every metric's label for the audited class and its context."""
    return {m.name: m.label.format(cls=cls, context=context) for m in METRICS}
