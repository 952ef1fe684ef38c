"""The metrics a run is scored on, each declared once, as one `Metric`: its name, the report's label and the text
views' short label, the splits (roles) it reads, its direction, chance level, whether it is a per-image 0/1
outcome, the record flag that marks a degenerate cell, whether the correlation study reads it, and for a
localisation metric its per-image column of `predictions.csv` and the function that computes that column from the
class's Grad-CAM map and mask.

Every consumer reads it from here: the prediction columns and the record (`benchmark.execute.train`,
`benchmark.execute.metrics`), the tables (`benchmark.analyse.tables`), the correlation study, the report and the
generated list in docs/statistics.md. A plugin adds a localisation metric with `register_metric` (`benchmark.api`);
the runner writes its declaration into `suite.json`, so that the analysis knows it without the plugin (`declare`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from benchmark.core.plugins import BUILTIN

SHIFTED = ("class_without_context", "context_without_class")


LOCALISATION_KIND, ROBUSTNESS_KIND = "localisation", "robustness"


class MetricError(ValueError):
    """A metric declared wrongly, or a name taken twice."""


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
    short: str = ""  # the text views' column name (default: the metric's name)
    correlated: bool = False  # an axis of the correlation study (localisation against robustness)
    # localisation: fn(maps [N,H,W], region [N,H,W] bool, valid [N,H,W] bool) -> [N] (NaN: no object), or for a
    # built-in the "module:function" it lives in (the core imports no torch)
    per_image: Callable[..., Any] | str | None = None
    origin: str = BUILTIN

    @property
    def declared_only(self) -> bool:
        """A metric a results folder declared, without its function (`declare`): read, never computed."""
        return self.origin != BUILTIN and self.per_image is None

    def shown_for(self, measured: Collection[str] | None) -> bool:
        """Whether a folder that `measured` these metrics shows this one: a built-in always, another only where the
        folder measured it (what another folder declared is not this one's); every one where `measured` is None."""
        return measured is None or self.origin == BUILTIN or self.name in measured

    @property
    def kind(self) -> str:
        """`localisation` (a per-image column of the val maps) or `robustness` (read from the calls)."""
        return LOCALISATION_KIND if self.column else ROBUSTNESS_KIND

    def declaration(self) -> dict[str, Any]:
        """The metric as plain data (what `suite.json` keeps of a plugin's metric): everything but its function."""
        return {k: v for k, v in asdict(self).items() if k != "per_image"} | {"roles": list(self.roles)}


BUILT_IN: tuple[Metric, ...] = (
    Metric("val_accuracy", "in-distribution val accuracy", ("val",), binary=True, degenerate="val_degenerate",
           short="val accuracy",
           definition="share of in-distribution val images whose audited-class call (score ≥ `train.threshold`) "
           "matches its label"),
    Metric("class_without_context", "{cls} without {context} (share called {cls})", ("class_without_context",),
           binary=True, degenerate="shifted_degenerate", short="class w/o context",
           definition="share of the images with the class and without its context that are called the class"),
    Metric("context_without_class", "{context} without {cls} (share called not {cls})", ("context_without_class",),
           binary=True, degenerate="shifted_degenerate", short="context w/o class",
           definition="share of the images with the context and without the class that are not called the class"),
    Metric("overall", "overall (mean of the two)", SHIFTED, degenerate="shifted_degenerate", short="overall",
           definition="mean of the two shifted groups' accuracies (0.5 for a constant prediction, marked degenerate)"),
    Metric("shifted_auroc", "AUROC, shifted groups", SHIFTED, chance=0.5, short="AUROC", correlated=True,
           definition="AUROC of the class score between the two shifted groups: the chance that an image of the class "
           "without its context scores above one of the context without the class (threshold-free)"),
    Metric("worst_group_accuracy", "worst-group accuracy", ("val", *SHIFTED), short="worst group", correlated=True,
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
           ("cf_object_swapped",), binary=True, short="other object on context",
           definition="share of the counterfactual scenes, on their water, whose boat is replaced by an object of "
           "another class at its place, size and colours, that are not called the class: a third shifted group, "
           "which an erased pass cannot imitate (an object stands where the boat was, not a hole); built-in data "
           "with `data.generator_version = 3`"),
    Metric("object_swapped_land_accuracy", "land with another object in the {cls}'s place (share called not {cls})",
           ("cf_object_swapped_land",), binary=True,
           definition="the same scenes with the replaced object on the land of the random-background split: the "
           "third group's control without the context, paired with it by scene (built-in data with "
           "`data.generator_version = 3`)"),
    Metric("relevance_mass", "relevance mass", ("val",), column="relevance_mass", correlated=True,
           short="relevance mass",
           per_image="benchmark.execute.metrics:relevance_mass",
           definition="share of the class's Grad-CAM energy inside its mask, on val images with the class (Arras et "
           "al., Information Fusion 2022); an all-zero map scores 0"),
    Metric("pointing_game", "pointing game", ("val",), binary=True, column="pointing_hit", correlated=True,
           short="pointing game",
           per_image="benchmark.execute.metrics:pointing_game",
           definition="share of val images with the class whose Grad-CAM maximum lies on its mask, no tolerance "
           "margin (Zhang et al., IJCV 2018); an all-zero map misses"),
    Metric("attention_iou", "attention IoU", ("val",), column="iou_at_tau", short="attention IoU",
           per_image="benchmark.execute.metrics:attention_iou",
           definition="IoU of the Grad-CAM map thresholded at `attention_iou_tau` (0.5) with the class's mask, on "
           "val images with the class; an all-zero map scores 0"),
)
METRIC: dict[str, Metric] = {m.name: m for m in BUILT_IN}
"""Every metric this process knows, by name, in declaration order: the built-ins, then those plugins registered
(`register`) or a results folder declared (`declare`). Read it through `metrics()` and `localisation()`."""


def metrics() -> tuple[Metric, ...]:
    """Every metric, built-ins first."""
    return tuple(METRIC.values())


def localisation(measured: Collection[str] | None = None) -> tuple[Metric, ...]:
    """The localisation metrics: a run's value is the mean of its per-image column over the val images with the
    class (`predictions.csv`). Given the metrics a folder `measured`, the built-ins and those of the others it
    measured (a metric another folder declared is not this one's)."""
    return tuple(m for m in METRIC.values() if m.column and m.shown_for(measured))


def computed() -> tuple[Metric, ...]:
    """The localisation metrics a run computes here: the built-ins and those plugins registered with their function
    (not those a results folder only declared)."""
    return tuple(m for m in localisation() if not m.declared_only)


def register(metric: Metric, origin: str) -> Metric:
    """Add a plugin's localisation metric (`registry.register_metric`); a name or column already taken from another
    origin is a MetricError naming both."""
    if not metric.column or metric.per_image is None:
        raise MetricError(f"metric {metric.name!r}: a plugin's metric is a localisation metric, with a `column` of "
                          "predictions.csv and its `per_image` function")  # fmt: skip
    metric = replace(metric, origin=origin, roles=tuple(metric.roles) or ("val",))
    for other in METRIC.values():
        # a re-imported plugin replaces its own metric, and any plugin what a folder only declared
        mine = other.origin == origin or other.declared_only
        replaces = other.name == metric.name and other.origin != BUILTIN and mine
        if not replaces and {other.name, other.column} & {metric.name, metric.column}:
            raise MetricError(f"metric {metric.name!r} (column {metric.column!r}) from {origin} clashes with metric "
                              f"{other.name!r} from {other.origin}; rename one of them")  # fmt: skip
    METRIC[metric.name] = metric
    return metric


def unregister(origin: str) -> None:
    """Drop every metric from `origin` (a plugin that failed half-way through its import)."""
    for name in [n for n, m in METRIC.items() if m.origin == origin and origin != BUILTIN]:
        del METRIC[name]


def declared() -> list[dict[str, Any]]:
    """The declarations of the metrics plugins added (what the runner writes into `suite.json`)."""
    return [m.declaration() for m in computed() if m.origin != BUILTIN]


def declare(declarations: Iterable[dict[str, Any]]) -> None:
    """Make the metrics a results folder declares (`declared` of the process that ran it) known to the analysis,
    without their functions: a metric already known keeps its definition."""
    names = {f.name for f in fields(Metric)} - {"per_image"}
    for d in declarations:  # a plugin's metric is a localisation metric: a declaration without a column is not one
        if d.get("name") and d.get("column") and d["name"] not in METRIC:
            known = {k: v for k, v in d.items() if k in names}
            METRIC[d["name"]] = Metric(**known | {"roles": tuple(known.get("roles", ("val",)))})


def short_label(name: str) -> str:
    """A metric's column name in the text views: its `short`, else its name (a name not known: itself)."""
    metric = METRIC.get(name)
    return metric.short or name if metric else name


def labels(cls: str, context: str) -> dict[str, str]:
    """Every metric's label for the audited class and its context."""
    return {m.name: m.label.format(cls=cls, context=context) for m in METRIC.values()}
