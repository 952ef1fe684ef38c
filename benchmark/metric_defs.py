"""The metrics a run is scored on, declared once: name, the report's label, the splits (roles) each reads, its
direction, whether it is a per-image 0/1 outcome, the record flag that marks a degenerate cell, and for a
localisation metric the per-image column of `predictions.csv` it is read from.

The per-image computation (`metrics.per_image_localisation`), the prediction columns (`predictions.LOCALISATION`),
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


METRICS: tuple[Metric, ...] = (
    Metric("val_accuracy", "in-distribution val accuracy", ("val",), binary=True, degenerate="val_degenerate"),
    Metric("class_without_context", "{cls} without {context} (share called {cls})", ("class_without_context",),
           binary=True, degenerate="shifted_degenerate"),
    Metric("context_without_class", "{context} without {cls} (share called not {cls})", ("context_without_class",),
           binary=True, degenerate="shifted_degenerate"),
    Metric("overall", "overall (mean of the two)", SHIFTED, degenerate="shifted_degenerate"),
    Metric("shifted_auroc", "AUROC, shifted groups", SHIFTED, chance=0.5),
    Metric("worst_group_accuracy", "worst-group accuracy", ("val", *SHIFTED)),
    Metric("context_flip_rate", "{context} flip rate (lower is better)", ("cf_original", "cf_context_swapped"),
           higher_is_better=False),
    Metric("relevance_mass", "relevance mass", ("val",), column="relevance_mass"),
    Metric("pointing_game", "pointing game", ("val",), binary=True, column="pointing_hit"),
    Metric("attention_iou", "attention IoU", ("val",), column="iou_at_tau"),
)
METRIC = {m.name: m for m in METRICS}
LOCALISATION = tuple((m.name, m.column) for m in METRICS if m.column)
"""(metric, per-image column) of the localisation metrics: a run's metric is the mean of its column."""


def labels(cls: str, context: str) -> dict[str, str]:
    """Every metric's label for the audited class and its context."""
    return {m.name: m.label.format(cls=cls, context=context) for m in METRICS}
