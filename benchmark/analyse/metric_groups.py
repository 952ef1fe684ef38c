"""How each metric of `metric_defs` is read from a run's predictions: its per-image groups and the statistic that
scores them (`METRIC`). A localisation metric is the mean of its per-image column, so a plugin's needs nothing here."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from benchmark.analyse.runs import Run
from benchmark.analyse.stats import (
    Statistic,
    batched_auroc,
    batched_mean,
    mean_of_means,
    min_of_means,
)
from benchmark.core import metric_defs
from benchmark.core.metric_defs import METRIC as DEFINED
from benchmark.core.metric_defs import Metric

Grouper = Callable[[Run], tuple[np.ndarray, ...] | None]


@dataclass(frozen=True)
class MetricDef:
    """A metric of `metric_defs` with how to get its per-image groups from a run and how to score them."""

    name: str
    roles: tuple[str, ...]
    groups: Grouper
    statistic: Statistic = batched_mean
    higher_is_better: bool = True
    binary: bool = False  # one group of per-image 0/1 outcomes: the exact McNemar test applies
    degenerate: str | None = None  # record flag that marks the cell


def _has(run: Run, *roles: str) -> bool:
    return all(r in run.preds for r in roles)


def _val_accuracy(run: Run) -> tuple[np.ndarray, ...]:
    return (run.decision("val") == (run.column("val", "labels") > 0.5),)


def _shifted(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    if not _has(run, "class_without_context", "context_without_class"):
        return None
    return run.decision("class_without_context"), ~run.decision("context_without_class")


def _rate(role: str, positive: bool) -> Grouper:
    """Per image of `role`: whether the decision is `positive` (the paper's shifted-group rows)."""

    def groups(run: Run) -> tuple[np.ndarray, ...] | None:
        return (run.decision(role) == positive,) if _has(run, role) else None

    return groups


def _shifted_logits(run: Run) -> tuple[np.ndarray, np.ndarray] | None:
    if not _has(run, "class_without_context", "context_without_class"):
        return None
    return run.column("class_without_context", "logits"), run.column("context_without_class", "logits")


def _worst_group(run: Run) -> tuple[np.ndarray, ...]:
    """The four groups of `metrics.group_accuracies` as per-image correctness; empty groups left out."""
    label, context = run.column("val", "labels") > 0.5, run.preds["val"]["has_context"] > 0.5
    positive = run.decision("val")
    groups = [positive[label & context], ~positive[~label & ~context], *(_shifted(run) or ())]
    return tuple(g for g in groups if g.size)


def _context_flip(run: Run) -> tuple[np.ndarray, ...] | None:
    if not _has(run, "cf_original", "cf_context_swapped"):
        return None
    return (run.decision("cf_context_swapped") != run.decision("cf_original"),)


def _is_correct(run: Run, role: str) -> np.ndarray:
    return run.decision(role) == (run.column(role, "labels") > 0.5)


def _correct(role: str) -> Grouper:
    """Per image of `role`: whether the decision matches the label (the background-swap accuracies)."""

    def groups(run: Run) -> tuple[np.ndarray, ...] | None:
        return (_is_correct(run, role),) if _has(run, role) else None

    return groups


def _background_gap(run: Run) -> tuple[np.ndarray, ...] | None:
    """Per counterfactual pair: correct on its usual ground minus correct on the random one (-1, 0 or 1); their
    mean is the gap in accuracy."""
    if not _has(run, "cf_original", "cf_context_swapped"):
        return None
    if not np.array_equal(run.preds["cf_original"]["pair"], run.preds["cf_context_swapped"]["pair"]):
        raise ValueError(f"run {run.record['run_id']}: cf_context_swapped is not aligned by pair with cf_original")
    return (_is_correct(run, "cf_original").astype(float) - _is_correct(run, "cf_context_swapped").astype(float),)


def _localisation(key: str) -> Grouper:
    def groups(run: Run) -> tuple[np.ndarray, ...] | None:
        val = run.preds["val"]
        if key not in val:
            return None
        located = (run.column("val", "labels") > 0.5) & np.isfinite(val["iou_at_tau"])
        return (val[key][located].astype(float),)

    return groups


_GROUPS: dict[str, tuple[Grouper, Statistic]] = {
    "val_accuracy": (_val_accuracy, batched_mean),
    "class_without_context": (_rate("class_without_context", True), batched_mean),
    "context_without_class": (_rate("context_without_class", False), batched_mean),
    "overall": (_shifted, mean_of_means),
    "shifted_auroc": (_shifted_logits, batched_auroc),
    "worst_group_accuracy": (_worst_group, min_of_means),
    "context_flip_rate": (_context_flip, batched_mean),
    "usual_background_accuracy": (_correct("cf_original"), batched_mean),
    "random_background_accuracy": (_correct("cf_context_swapped"), batched_mean),
    "background_gap": (_background_gap, batched_mean),
    "object_only_accuracy": (_correct("cf_object_only"), batched_mean),
    "object_swapped_accuracy": (_correct("cf_object_swapped"), batched_mean),
    "object_swapped_land_accuracy": (_correct("cf_object_swapped_land"), batched_mean),
}
"""How each robustness metric of `metric_defs` is read from a run's predictions; a localisation metric is the mean of
its per-image column (`_localisation`), so a plugin's needs nothing here."""


@functools.cache  # a metric's reader is built once per definition, not at every lookup of tidy_table's loop
def _table_metric(m: Metric) -> MetricDef:
    if m.name in _GROUPS:
        groups, statistic = _GROUPS[m.name]
    elif m.column:
        groups, statistic = _localisation(m.column), batched_mean
    else:
        raise ValueError(f"metric {m.name!r} is neither read by metric_groups._GROUPS nor a localisation metric (a "
                         "per-image `column`): the tables cannot compute it")  # fmt: skip
    return MetricDef(m.name, m.roles, groups, statistic, m.higher_is_better, m.binary, m.degenerate)


class _Metrics(Mapping[str, MetricDef]):
    """Name -> `MetricDef` of every metric `metric_defs` knows at the time of reading (a plugin's, or one a
    results folder declared, included), in declaration order."""

    def __getitem__(self, name: str) -> MetricDef:
        return _table_metric(DEFINED[name])

    def __contains__(self, name: object) -> bool:
        return name in DEFINED

    def __iter__(self) -> Iterator[str]:
        return iter(list(DEFINED))

    def __len__(self) -> int:
        return len(DEFINED)

    def values(self) -> list[MetricDef]:  # type: ignore[override]
        return [_table_metric(m) for m in metric_defs.metrics()]


METRIC = _Metrics()


OPTIONAL_METRICS = ("object_swapped_accuracy", "object_swapped_land_accuracy")
"""Metrics the tables show only where some configuration measured them (built-in data of generator version 3), so a
folder without them reads as it did before they existed."""


def shown(metrics: Collection[str], present: Collection[str]) -> list[str]:
    """`metrics` less the `OPTIONAL_METRICS` that are not `present`, in order."""
    return [m for m in metrics if m not in OPTIONAL_METRICS or m in present]


def metric_value(groups: tuple[np.ndarray, ...], statistic: Statistic) -> float:
    """A metric of one run from its per-image groups (`MetricDef.groups`) and statistic."""
    return float(statistic(*(np.asarray(g)[None] for g in groups))[0])
