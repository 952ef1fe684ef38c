"""Result tables from run records and their `predictions.csv`: tidy, aggregated over seeds, paired against the
baseline, and the paper's layout (Table 4 of GAIN, with intervals).

Every interval is recomputed from the per-image predictions, not from the record's numbers, so it holds both the
seed-to-seed and the test-set variation (`stats.hierarchical_bootstrap`). Incomplete or failed runs, runs without
predictions and duplicates of a run are left out and listed in the `excluded` table. Each bootstrap draws from a
generator seeded by (`seed`, configuration, metric), so adding a configuration or a metric never changes the others'
intervals.
"""

from __future__ import annotations

import json
import textwrap
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmark.analyse.correlation import link_sentence, pairs, rank_correlation
from benchmark.analyse.names import Names
from benchmark.analyse.results import known_keys, with_keys
from benchmark.analyse.stats import (
    ALPHA,
    MIN_REPLICATES,
    N_RESAMPLES,
    Statistic,
    batched_auroc,
    batched_mean,
    hierarchical_bootstrap,
    holm,
    mcnemar_exact,
    mean_of_means,
    min_of_means,
    paired_bootstrap,
    probability_of_improvement,
    seed_mean_sd,
    sign_flip_test,
)
from benchmark.analyse.summary import configuration, record_keys
from benchmark.core import metric_defs
from benchmark.core.metric_defs import METRIC as DEFINED
from benchmark.core.metric_defs import Metric, short_label
from benchmark.core.predictions import read_predictions
from benchmark.core.settings import MASK_CONTROLS
from benchmark.core.spec import BASELINE, flat_keys
from benchmark.core.store import DamagedFile, read_record, whole_predictions, write_atomic


def interval_cell(mean: float, low: float, high: float, digits: int = 3) -> str:
    """`mean [low, high]`; a value every seed and image gave alike has no interval to show: `mean (constant)`."""
    text = f"{mean:.{digits}f}"
    if f"{low:.{digits}f}" == f"{high:.{digits}f}" == text:
        return f"{text} (constant)"
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]"


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def config_name(method: str, budget: int, label: str | None = None, display: str | None = None) -> str:
    """ "GAIN_ext-78" (`display`: the method's display name, default its name), and whatever a configuration's label
    adds after its method and budget (e.g. " masked_bn=eval"): a configuration's name in the report and the
    verdict."""
    return Names({method: {"display": display}} if display else {}).config(method, budget, label)


def row_name(row: dict[str, Any]) -> str:
    """A table row's configuration name: the `name` the tables give it (`config_names`), or, in a table that carries
    none, "GAIN_ext-78" and its label's parameters (`config_name`)."""
    if isinstance(row.get("name"), str):
        return row["name"]
    return config_name(row["method"], int(row["budget"]), row.get("label"), row.get("display"))


# Spec keys that make two configurations a method-vs-baseline pair when everything else is equal.


@dataclass(frozen=True)
class Run:
    """One complete run: its record, its per-role predictions and the audited class's column."""

    record: dict[str, Any]
    preds: dict[str, dict[str, np.ndarray]]
    classes: tuple[str, ...]
    class_index: int
    config: str
    label: str

    @property
    def spec(self) -> dict[str, Any]:
        return self.record["spec"]

    @property
    def threshold(self) -> float:
        return float(self.record["metrics"].get("threshold", self.spec.get("train", {}).get("threshold", 0.5)))

    def decision(self, role: str) -> np.ndarray:
        return self.preds[role]["scores"][:, self.class_index] >= self.threshold

    def column(self, role: str, key: str) -> np.ndarray:
        return self.preds[role][key][:, self.class_index]


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


def _table_metric(m: Metric) -> MetricDef:
    if m.name in _GROUPS:
        groups, statistic = _GROUPS[m.name]
    elif m.column:
        groups, statistic = _localisation(m.column), batched_mean
    else:
        raise ValueError(f"metric {m.name!r} is neither read by tables._GROUPS nor a localisation metric (a "
                         "per-image `column`): the tables cannot compute it")  # fmt: skip
    return MetricDef(m.name, m.roles, groups, statistic, m.higher_is_better, m.binary, m.degenerate)


class _Metrics(Mapping[str, MetricDef]):
    """Name -> `MetricDef` of every metric `metric_defs` knows at the time of reading (a plugin's, or one a
    results folder declared, included), in declaration order."""

    def _all(self) -> dict[str, MetricDef]:
        return {m.name: _table_metric(m) for m in metric_defs.metrics()}

    def __getitem__(self, name: str) -> MetricDef:
        return _table_metric(DEFINED[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(DEFINED))

    def __len__(self) -> int:
        return len(DEFINED)

    def values(self) -> list[MetricDef]:  # type: ignore[override]
        return list(self._all().values())


METRIC = _Metrics()

PAPER_ROWS = (
    ("val_accuracy", "in-distribution val accuracy"),
    ("class_without_context", "{cls} without context"),
    ("context_without_class", "context without {cls}"),
    ("object_swapped_accuracy", "context, another object in the {cls}'s place"),
    ("overall", "overall"),
    ("shifted_auroc", "AUROC, shifted groups"),
    ("context_flip_rate", "context flip rate (lower is better)"),
    ("background_gap", "background gap, usual − random (lower is better)"),
    ("object_only_accuracy", "objects on a neutral background (accuracy)"),
    ("object_swapped_land_accuracy", "land, another object in the {cls}'s place"),
)
OPTIONAL_METRICS = ("object_swapped_accuracy", "object_swapped_land_accuracy")
"""Metrics the tables show only where some configuration measured them (built-in data of generator version 3), so a
folder without them reads as it did before they existed."""


def shown(metrics: Collection[str], present: Collection[str]) -> list[str]:
    """`metrics` less the `OPTIONAL_METRICS` that are not `present`, in order."""
    return [m for m in metrics if m not in OPTIONAL_METRICS or m in present]


def load_runs(
    roots: list[Path], *, run_ids: Collection[str] | None = None, short: bool = False
) -> tuple[list[Run], pd.DataFrame]:
    """Complete runs with their predictions under `<root>/runs/*/`, and a table of the runs left out and why.

    `run_ids` keeps only those runs (a suite's report reads the runs of the suite as it is now, not folders left by
    earlier configurations); `short` labels configurations by method, budget and method parameters only. A damaged
    record, or a complete record whose predictions are missing, cut off or garbled (`store.whole_predictions`), is
    left out as `damaged` with the file and the reason; a record of an unknown schema raises ValueError naming it.
    """
    runs: list[Run] = []
    excluded: list[dict[str, Any]] = []
    seen: set[str] = set()
    for root in roots:
        keys = known_keys(root)
        for path in sorted(Path(root).glob("runs/*/record.json")):
            if run_ids is not None and path.parent.name not in run_ids:
                continue
            try:
                record = with_keys(read_record(path), keys)
            except DamagedFile as err:
                row = {"run_id": path.parent.name, "config": "", "label": ""}
                excluded.append(row | {"path": str(path), "kind": "damaged", "reason": str(err)})
                continue
            config, label = configuration(record, short)
            row = {"run_id": record.get("run_id", path.parent.name), "config": config, "label": label}
            predictions = path.parent / "predictions.csv"
            if record.get("status") != "complete":
                kind = "incomplete or failed"
                reason = f"status {record.get('status')!r}" + (f": {record['error']}" if record.get("error") else "")
            elif not predictions.exists():
                kind, reason = "without predictions", "no predictions.csv"
            elif problem := whole_predictions(predictions, record):
                kind, reason = "damaged", f"{predictions}: {problem}"
            elif row["run_id"] in seen:
                kind, reason = "duplicate", f"duplicate of run {row['run_id']} (first one kept)"
            else:
                preds, classes = read_predictions(predictions)
                audited = record["spec"].get("audited_class", "boat")
                if audited in classes:
                    seen.add(row["run_id"])
                    runs.append(Run(record, preds, classes, classes.index(audited), config, label))
                    continue
                kind, reason = (
                    "unknown audited class",
                    f"audited class {audited!r} not among the classes of {predictions}",
                )
            excluded.append(row | {"path": str(path), "kind": kind, "reason": reason})
    return runs, pd.DataFrame(excluded, columns=["run_id", "config", "label", "path", "kind", "reason"])


def _run_columns(run: Run) -> dict[str, Any]:
    spec = run.spec
    return {
        "run_id": run.record["run_id"],
        "config": run.config,
        "label": run.label,
        "method": spec["method"],
        "budget": spec["budget"],
        "seed": spec["seed"],
    }


def metric_value(groups: tuple[np.ndarray, ...], statistic: Statistic) -> float:
    """A metric of one run from its per-image groups (`MetricDef.groups`) and statistic."""
    return float(statistic(*(np.asarray(g)[None] for g in groups))[0])


def tidy_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run x metric: the metrics (`METRIC`) recomputed from the predictions (role = the splits they
    read), then every other numeric metric of the record (role `record`, e.g. `val_map`, `cam_miou`)."""
    rows = []
    for run in runs:
        base = _run_columns(run)
        metrics = run.record["metrics"]
        for m in METRIC.values():
            groups = m.groups(run)
            if groups is None:
                continue
            degenerate = bool(metrics.get(m.degenerate, False)) if m.degenerate else False
            value = metric_value(groups, m.statistic)
            rows.append(base | {"role": "+".join(m.roles), "metric": m.name, "value": value, "degenerate": degenerate})
        for key, value in metrics.items():
            if key in METRIC or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            rows.append(base | {"role": "record", "metric": key, "value": float(value), "degenerate": False})
    columns = ["run_id", "config", "label", "method", "budget", "seed", "role", "metric", "value", "degenerate"]
    return pd.DataFrame(rows, columns=columns)


def _names(runs: list[Run], names: Names | None) -> Names:
    found = Names.of_records(r.record for r in runs)
    return names.merged(found) if names is not None else found


def _configurations(runs: list[Run], names: Names) -> dict[str, list[Run]]:
    """Configurations in the registry's order of methods (baseline first), budgets ascending, the true masks before
    their placebo-mask controls (so a report's verdict is about a true-mask configuration)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.config, []).append(run)
    ordered = sorted(
        groups.items(),
        key=lambda kv: (
            names.rank(kv[1][0].spec["method"]),
            kv[1][0].spec["budget"],
            mask_control(kv[1][0].spec) != TRUE_MASKS,
            kv[1][0].label,
        ),
    )
    return {k: sorted(v, key=lambda r: r.spec["seed"]) for k, v in ordered}


def config_names(runs: list[Run], names: Names | None = None) -> dict[str, str]:
    """One name per configuration, for every table, figure and sentence: the method's display name and budget
    ("GAIN_ext-78"), plus only those of its label's parameters that tell it apart from the other configurations of
    that name ("GAIN masked_bn=eval" beside "GAIN masked_bn=batch"; "GAIN" where it is the only one); numbered only
    where even those agree."""
    names = _names(runs, names)
    parts: dict[str, tuple[str, list[str]]] = {}
    for config, group in _configurations(runs, names).items():
        spec, label = group[0].spec, group[0].label
        own = spec["method"] + (f"-{int(spec['budget'])}" if spec["budget"] else "")
        base = config_name(spec["method"], spec["budget"], display=names.display(spec["method"]))
        parts[config] = (base, label[len(own) :].split() if label.startswith(own) else [])
    out: dict[str, str] = {}
    for config, (base, extras) in parts.items():
        peers = [e for b, e in parts.values() if b == base]
        common = set.intersection(*(set(e) for e in peers))
        name = " ".join([base, *(t for t in extras if t not in common)])
        clashes = sum(n == name or n.startswith(f"{name} (") for n in out.values())
        out[config] = f"{name} ({clashes + 1})" if clashes else name
    return out


def seeded_rng(seed: int, *keys: str) -> np.random.Generator:
    """The generator of one comparison: seeded by `seed` and what is compared, so a table's numbers do not depend
    on the order its rows are computed in."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def aggregate_table(
    runs: list[Run],
    excluded: pd.DataFrame | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    names: Names | None = None,
) -> pd.DataFrame:
    """Per configuration x metric: seeds, mean and sd over seeds, the two-level bootstrap 95% interval, the number
    of seeds whose decision is degenerate on the metric's split, and the number of excluded runs of the
    configuration. Rows in registry order (baseline first, budgets ascending)."""
    rows = []
    names = _names(runs, names)
    short = config_names(runs, names)
    for config, group in _configurations(runs, names).items():
        first = group[0]
        n_excluded = int((excluded["config"] == config).sum()) if excluded is not None and len(excluded) else 0
        for m in METRIC.values():
            per_seed = [(r, g) for r in group if (g := m.groups(r)) is not None]
            if not per_seed:
                continue
            values = np.array([metric_value(g, m.statistic) for _, g in per_seed])
            mean, sd = seed_mean_sd(values)
            interval = hierarchical_bootstrap(
                [g for _, g in per_seed], m.statistic, rng=seeded_rng(seed, config, m.name), n_resamples=n_resamples
            )
            degenerate = sum(bool(r.record["metrics"].get(m.degenerate, False)) for r, _ in per_seed if m.degenerate)
            rows.append(
                {
                    "config": config,
                    "label": first.label,
                    "method": first.spec["method"],
                    "display": names.display(first.spec["method"]),
                    "name": short[config],
                    "budget": first.spec["budget"],
                    "audited_class": first.classes[first.class_index],
                    "metric": m.name,
                    "n_seeds": len(per_seed),
                    "mean": mean,
                    "sd": sd,
                    "ci_low": interval.low,
                    "ci_high": interval.high,
                    "degenerate_seeds": degenerate,
                    "excluded_runs": n_excluded,
                }
            )
    columns = [
        "config",
        "label",
        "method",
        "display",
        "name",
        "budget",
        "audited_class",
        "metric",
        "n_seeds",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "degenerate_seeds",
        "excluded_runs",
    ]
    return pd.DataFrame(rows, columns=columns)


def _check_aligned(run: Run, base: Run, roles: tuple[str, ...]) -> None:
    for role in roles:
        if not np.array_equal(run.preds[role]["ids"], base.preds[role]["ids"]):
            raise ValueError(
                f"runs {run.record['run_id']} and {base.record['run_id']}: the images of {role} differ, so they "
                "cannot be compared pairwise (same dataset and data parameters expected)"
            )


Pair = tuple[Run, Run, tuple[np.ndarray, ...], tuple[np.ndarray, ...]]


def seed_pairs(group: list[Run], other: list[Run], m: MetricDef) -> list[Pair]:
    """The runs of `group` paired with the run of `other` of the same seed, each with its per-image groups of metric
    `m`, where both have them on the same images (`_check_aligned` refuses the same split on other images)."""
    by_seed = {r.spec["seed"]: r for r in other}
    found = []
    for run in group:
        twin = by_seed.get(run.spec["seed"])
        if twin is None or (ga := m.groups(run)) is None or (gb := m.groups(twin)) is None:
            continue
        if [len(g) for g in ga] == [len(g) for g in gb]:
            _check_aligned(run, twin, m.roles)
            found.append((run, twin, ga, gb))
    return found


class Comparison(NamedTuple):
    """A paired comparison of two configurations on one metric (`compare`)."""

    difference: float
    low: float
    high: float
    p_value: float  # the paired two-level bootstrap's
    p_replicates: float  # the exact sign-flip test's, over the seeds' differences
    full_replicates: bool  # every run of every pair is a full replicate
    first: np.ndarray  # each seed's value, first configuration
    second: np.ndarray  # each seed's value, second configuration


def compare(pairs: list[Pair], m: MetricDef, *, rng: np.random.Generator, n_resamples: int) -> Comparison:
    """`first - second` over `seed_pairs`: the paired two-level bootstrap's difference, interval and p
    (`stats.paired_bootstrap`), the exact sign-flip p over the seeds (`stats.sign_flip_test`), and whether the pairs
    are full replicates; what the paired table, the content effect and the claims all read."""
    boot = paired_bootstrap([p[2] for p in pairs], [p[3] for p in pairs], m.statistic, rng=rng, n_resamples=n_resamples)
    first = np.array([metric_value(p[2], m.statistic) for p in pairs])
    second = np.array([metric_value(p[3], m.statistic) for p in pairs])
    full = all(r.spec.get("seed_scope", "train") == "full" for p in pairs for r in p[:2])
    return Comparison(boot.difference, boot.low, boot.high, boot.p_value, sign_flip_test(first - second), full,
                      first, second)  # fmt: skip


def paired_table(
    runs: list[Run],
    *,
    baseline: str = BASELINE,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    family: str = "metric",
    alpha: float = ALPHA,
    names: Names | None = None,
) -> pd.DataFrame:
    """Every configuration against the baseline configuration with the same dataset, model and train settings, on
    the seeds both have (paired by seed number).

    Per metric: the mean difference (method - baseline) with its paired two-level bootstrap interval and two-sided
    p (`stats.paired_bootstrap`); `p_holm`, Holm-adjusted within the family — `family="metric"`: one family per
    metric (the question "does any method beat the baseline on this row?"), `"all"`: every test of the table; for
    single-split 0/1 metrics, the exact McNemar test per seed summarised as `mcnemar_significant` of
    `mcnemar_seeds` seeds at p < `alpha`; and the probability of improvement over the seeds' values
    (`stats.probability_of_improvement`, oriented so that > 0.5 means the method is better, also for metrics where
    lower is better).
    """
    if family not in ("metric", "all"):
        raise ValueError(f"family={family!r}: allowed: metric, all")
    names = _names(runs, names)
    configs = _configurations(runs, names)
    short = config_names(runs, names)
    baselines: dict[str, list[tuple[str, list[Run]]]] = {}
    for key, group in configs.items():
        if group[0].spec["method"] == baseline:
            baselines.setdefault(record_keys(group[0].record)["pairing"], []).append((key, group))
    rows = []
    for config, group in configs.items():
        first = group[0]
        if first.spec["method"] == baseline or record_keys(first.record)["pairing"] not in baselines:
            continue
        candidates = baselines[record_keys(first.record)["pairing"]]
        if len(candidates) > 1:
            raise ValueError(
                f"baseline {baseline!r}: {len(candidates)} of its configurations share {first.label!r}'s setting "
                f"({', '.join(g[0].label for _, g in candidates)}); a baseline must be one configuration"
            )
        ((base_config, base_group),) = candidates
        for m in METRIC.values():
            found = seed_pairs(group, base_group, m)
            if not found:
                continue
            rng = seeded_rng(seed, config, base_config, m.name)
            comparison = compare(found, m, rng=rng, n_resamples=n_resamples)
            sign = 1.0 if m.higher_is_better else -1.0
            poi = probability_of_improvement(sign * comparison.first, sign * comparison.second, rng=rng,
                                             n_resamples=n_resamples)  # fmt: skip
            mcnemar = [mcnemar_exact(f[2][0], f[3][0])[2] for f in found] if m.binary else []
            rows.append(
                {
                    "config": config,
                    "label": first.label,
                    "method": first.spec["method"],
                    "display": names.display(first.spec["method"]),
                    "name": short[config],
                    "budget": first.spec["budget"],
                    "baseline": base_group[0].label,
                    "metric": m.name,
                    "higher_is_better": m.higher_is_better,
                    "n_seeds": len(found),
                    "difference": comparison.difference,
                    "ci_low": comparison.low,
                    "ci_high": comparison.high,
                    "p_value": comparison.p_value,
                    "p_replicates": comparison.p_replicates,
                    "full_replicates": comparison.full_replicates,
                    "mcnemar_seeds": len(mcnemar),
                    "mcnemar_significant": int(sum(p < alpha for p in mcnemar)) if mcnemar else np.nan,
                    "prob_improvement": poi.estimate,
                    "poi_low": poi.low,
                    "poi_high": poi.high,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for column in ("p_value", "p_replicates"):
        adjusted = f"{column.removesuffix('_value')}_holm"  # p_holm, p_replicates_holm
        if family == "all":
            table[adjusted] = holm(table[column].to_numpy())
        else:
            table[adjusted] = table.groupby("metric")[column].transform(lambda p: holm(p.to_numpy()))
        columns = list(table.columns)
        columns.insert(columns.index(column) + 1, columns.pop(columns.index(adjusted)))
        table = table[columns]
    return table


NOT_ENOUGH = "not enough replicates"


def call(
    row: dict[str, Any], alpha: float = ALPHA, min_replicates: int = MIN_REPLICATES, needs: str = "a claim"
) -> tuple[str, str]:
    """What a paired comparison (a row of `paired_table`, or a claim's numbers) lets a reader say, and why:
    "significant" only with at least `min_replicates` full replicates (`seed_scope = "full"`), the replicate-level
    sign-flip test's Holm-adjusted p below `alpha` and the two-level bootstrap interval excluding 0; "not enough
    replicates" with fewer, or with seeds that redraw only the fine-tuning; else "not significant". The reason is
    empty for "significant"; `needs` names what needs the replicates in it ("a claim", "the claim")."""
    n = row["n_seeds"]
    if not row.get("full_replicates", False):
        return NOT_ENOUGH, f"{n} seeds that redraw the fine-tuning only (seed_scope = \"train\"), not full replicates"
    if n < min_replicates:
        return NOT_ENOUGH, f"{n} full replicates; {needs} needs {min_replicates}"
    if row["ci_low"] <= 0 <= row["ci_high"]:
        return "not significant", "the interval crosses 0"
    if not row["p_replicates_holm"] < alpha:
        return "not significant", f"Holm-adjusted p {row['p_replicates_holm']:.4f} is not below {alpha}"
    return "significant", ""


def significance(row: dict[str, Any], alpha: float = ALPHA) -> str:
    """`call`'s verdict alone: "significant", "not significant" or "not enough replicates"."""
    return call(row, alpha)[0]


def replicates_note(row: dict[str, Any]) -> str:
    """Why a row is "not enough replicates", in words (`call`'s reason)."""
    return call(row)[1]


def _column_names(aggregated: pd.DataFrame) -> dict[str, str]:
    """Each configuration's name (`row_name`)."""
    return {str(r["config"]): row_name(r) for r in aggregated.drop_duplicates("config").to_dict("records")}


def paper_table(aggregated: pd.DataFrame, excluded: pd.DataFrame | None = None, *, digits: int = 3) -> pd.DataFrame:
    """The paper's Table 4 layout: rows in-distribution val accuracy, class without context, context without class
    (and the third shifted group where measured, `OPTIONAL_METRICS`), overall, then AUROC, the context flip rate
    and the background swaps (gap, objects alone, the third group's land control where measured); one column per
    configuration in registry order; cells "mean [low, high]" (two-level bootstrap 95% interval), "†" where some
    seed's decision is constant on that split, "-" where not measured. Footnotes (legend, †, runs without the
    object-only images, exclusions) are in `.attrs["footnotes"]`."""
    names = _column_names(aggregated)  # the configurations' names (`config_names`)
    classes = aggregated["audited_class"].unique() if len(aggregated) else []
    cls = classes[0] if len(classes) == 1 else "class"
    cells: dict[str, dict[str, str]] = {name: {} for name in names.values()}
    marked = False
    for _, row in aggregated.iterrows():
        if row["metric"] not in dict(PAPER_ROWS):
            continue
        cell = interval_cell(row["mean"], row["ci_low"], row["ci_high"], digits)
        if row["degenerate_seeds"]:
            cell += "†"
            marked = True
        cells[names[row["config"]]][row["metric"]] = cell
    keys = shown([k for k, _ in PAPER_ROWS], {k for col in cells.values() for k in col})
    index = [label.format(cls=cls) for k, label in PAPER_ROWS if k in keys]
    table = pd.DataFrame({name: [col.get(key, "-") for key in keys] for name, col in cells.items()}, index=index)
    table.index.name = "metric"
    table.attrs["metrics"] = keys  # the row keys, for the rows' definitions
    seeds = aggregated.groupby("config")["n_seeds"].max()
    notes = [
        "mean over seeds [95% two-level bootstrap interval: seeds, then images within each seed]",
        *(
            f"{name}: {aggregated.loc[aggregated['config'] == c, 'label'].iloc[0]}, {plural(seeds[c], 'seed')}"
            for c, name in names.items()
        ),
    ]
    if marked:
        notes.append("† the decision is constant on that split in at least one seed (degenerate classifier)")
    if (seeds == 1).any():
        notes.append("with 1 seed the interval holds the image-level variation only")
    older = [name for name, col in cells.items() if "background_gap" in col and "object_only_accuracy" not in col]
    if older:
        notes.append(
            f"objects on a neutral background: not measured for {', '.join(older)} (runs on the built-in data from "
            "before its generator version 2, which added those images)"
        )
    if excluded is not None and len(excluded):
        counts = excluded["kind"].value_counts(sort=False)
        kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        notes.append(f"excluded: {plural(len(excluded), 'run')}: {kinds}")
    table.attrs["footnotes"] = notes
    return table


def grid(rows: list[list[str]], markdown: bool = False) -> list[str]:
    """Rows of cells (the first the header) as fixed-width lines, or as a Markdown table."""
    if markdown:
        lines = [f"| {' | '.join(c.replace('|', chr(92) + '|') for c in r)} |" for r in rows]
        return [lines[0], f"|{'---|' * len(rows[0])}", *lines[1:]]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]


TERMINAL_WIDTH = 120  # the text tables' width unless `--wide`


def column_blocks(rows: list[list[str]], width: int | None) -> list[list[list[str]]]:
    """Rows of cells split into blocks of columns, each repeating the first column, so that every line of `grid`
    fits `width` characters (one block where it fits or `width` is None; a column wider than the rest gets a block
    of its own)."""
    if width is None or not rows:
        return [rows]
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    blocks: list[list[int]] = []
    used = widths[0]
    for c in range(1, len(widths)):
        if blocks and used + 2 + widths[c] <= width:
            blocks[-1].append(c)
            used += 2 + widths[c]
        else:
            blocks.append([c])
            used = widths[0] + 2 + widths[c]
    return [[[r[0], *(r[c] for c in block)] for r in rows] for block in blocks] or [rows]


def row_definitions(table: pd.DataFrame) -> list[str]:
    """`label: definition` for each row of a `paper_table` (its definition in `metric_defs`)."""
    keys = table.attrs.get("metrics", [])
    if len(keys) != len(table.index):
        return []
    return [f"{label}: {DEFINED[key].definition}" for label, key in zip(table.index, keys, strict=True)]


def format_paper_table(table: pd.DataFrame, markdown: bool = False, width: int | None = TERMINAL_WIDTH) -> str:
    """`paper_table` as fixed-width text with its footnotes and what each row measures, for the terminal, in blocks
    of columns that fit `width` (None: one block however wide); or as Markdown (one table, footnotes only)."""
    head = [table.index.name or "", *table.columns]
    body = [[str(i), *map(str, row)] for i, row in zip(table.index, table.to_numpy(), strict=True)]
    if markdown:
        return "\n".join([*grid([head, *body], True), "", *(f"- {n}" for n in table.attrs.get("footnotes", []))])
    lines: list[str] = []
    for block in column_blocks([head, *body], width):
        lines += [*grid(block), ""]
    notes = [*table.attrs.get("footnotes", []), "rows:", *(f"  {d}" for d in row_definitions(table))]
    wrap = textwrap.TextWrapper(width=width or 10**6, subsequent_indent="    ", break_on_hyphens=False)
    return "\n".join([*lines, *(w for n in notes for w in (wrap.wrap(n) or [""]))])


ROW_METRICS = (
    ("shifted_auroc", "AUROC"),
    ("class_without_context", "class w/o context"),
    ("context_without_class", "context w/o class"),
    ("object_swapped_accuracy", "other object on context"),
    ("val_accuracy", "val acc"),
)


def localisation_rows() -> tuple[tuple[str, str], ...]:
    """(metric, short label) of every localisation metric, a plugin's included: `gain-bench table --view
    localisation`."""
    return tuple((m.name, short_label(m.name)) for m in metric_defs.localisation())


def short_names(labels: list[str]) -> dict[str, str]:
    """Each configuration label less the settings every label shares (its first token, the method, always kept)."""
    tokens = {label: str(label).split() for label in labels}
    shared = set.intersection(*(set(t[1:]) for t in tokens.values())) if tokens else set()
    return {
        label: " ".join(t for i, t in enumerate(words) if i == 0 or t not in shared) for label, words in tokens.items()
    }


def format_config_rows(
    tables: dict[str, pd.DataFrame],
    metrics: tuple[tuple[str, str], ...] = ROW_METRICS,
    markdown: bool = False,
    baseline: str | None = None,
    extra: tuple[str, dict[str, str]] | None = None,
) -> str:
    """One line per configuration (its label less the settings every configuration shares, in the aggregated
    table's order) and, per metric, `mean [95% interval]` and the paired difference to its baseline with the
    Holm-adjusted p (`/ +0.09 p0.016`): the paper table turned on its side, for configurations that differ only in
    their parameters or their regime. `baseline` names the paired table's baseline where it is not the default
    one. `extra`: a column (title, configuration -> cell) after the seeds. Fixed-width text, or Markdown."""
    aggregated, paired = tables["aggregated"], tables["paired"]
    if aggregated.empty:
        return ""
    keep = shown([key for key, _ in metrics], set(aggregated["metric"]))
    metrics = tuple((key, label) for key, label in metrics if key in keep)
    rows = [["configuration", "n", *([extra[0]] if extra else []), *(label for _, label in metrics)]]
    full = False
    names = short_names(list(aggregated.drop_duplicates("config")["label"]))
    for config, group in aggregated.groupby("config", sort=False):
        by_metric = group.set_index("metric")
        mine = paired[paired["config"] == config].set_index("metric") if len(paired) else pd.DataFrame()
        cells = [names[group.iloc[0]["label"]], str(int(group["n_seeds"].min()))]
        if extra:
            cells.append(extra[1].get(str(config), "-"))
        for key, _ in metrics:
            if key not in by_metric.index:
                cells.append("-")
                continue
            m = by_metric.loc[key]
            cell = interval_cell(m["mean"], m["ci_low"], m["ci_high"])
            if key in mine.index:
                d = mine.loc[key]
                if bool(d.get("full_replicates", False)):  # the replicate-level test, and the call
                    star = "*" if significance(d.to_dict()) == "significant" else ""
                    cell += f" / {d['difference']:+.3f} p{d['p_replicates_holm']:.3f}{star}"
                    full = True
                else:
                    cell += f" / {d['difference']:+.3f} p{d['p_holm']:.3f}"
            cells.append(cell)
        rows.append(cells)
    lines = grid(rows, markdown)
    against = f"{baseline} (the configuration of that method with the same setting)" if baseline else "the baseline"
    note = f"mean [95% two-level bootstrap interval] / paired difference to {against}, Holm-adjusted p"
    if full:
        note += (f" (full replicates: the exact sign-flip test's; * significant: at least {MIN_REPLICATES} full "
                 f"replicates, p < {ALPHA} and the interval excluding 0)")  # fmt: skip
    return "\n".join([*lines, "", note])


def setting_labels(keys: list[str]) -> dict[str, str]:
    """A short label per setting (a pairing key: what the configurations compared with one baseline share): the
    settings in which it differs from the others ("rho=0.9 init=scratch"); "" when there is one."""
    if len(keys) < 2:
        return dict.fromkeys(keys, "")
    try:
        flat = [flat_keys(json.loads(k)) for k in keys]
    except ValueError:
        return {k: f"setting {i + 1}" for i, k in enumerate(keys)}
    paths = list(dict.fromkeys(p for f in flat for p in f))
    differ = [p for p in paths if len({json.dumps(f.get(p), sort_keys=True, default=str) for f in flat}) > 1]
    pairs = list(zip(keys, flat, strict=True))
    labels = {k: " ".join(f"{p.rsplit('.', 1)[-1]}={f.get(p, '-')}" for p in differ) for k, f in pairs}
    if len(set(labels.values())) < len(keys):  # two paths ending alike: the full paths
        labels = {k: " ".join(f"{p}={f.get(p, '-')}" for p in differ) for k, f in pairs}
    return labels


def _by_setting(runs: list[Run], names: Names | None) -> dict[str, dict[str, list[Run]]]:
    """The configurations (key: their runs) of each setting, by pairing key (what the configurations compared with
    one baseline share; a sweep's regimes are different settings), in the runs' order."""
    settings: dict[str, dict[str, list[Run]]] = {}
    for config, group in _configurations(runs, _names(runs, names)).items():
        settings.setdefault(record_keys(group[0].record)["pairing"], {})[config] = group
    return settings


CORRELATION_COLUMNS = ["setting", "x", "y", "n_configurations", "left_out", "rho", "ci_low", "ci_high", "p_value",
                       "excludes_zero", "result"]  # fmt: skip


def correlation_table(
    runs: list[Run],
    tidy: pd.DataFrame | None = None,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    names: Names | None = None,
) -> pd.DataFrame:
    """Does localisation predict robustness? Per setting (the configurations that share a baseline: same data,
    model and training settings; a sweep's regimes are different settings) and per pair `correlation.pairs()`
    (relevance mass or pointing game against shifted-group AUROC or worst-group accuracy): Spearman's rho across
    the setting's configurations (every method and budget, the baseline included), each at its mean over the seeds
    that have both metrics (the per-run values of `tidy_table`), with the hierarchical bootstrap interval and p of
    `correlation.rank_correlation` (configurations, then seeds). Configurations without both metrics are left out
    and counted (`left_out`); fewer than `correlation.MIN_CONFIGURATIONS` give no rho. `result` says it in words."""
    tidy = tidy_table(runs) if tidy is None else tidy
    value = {(r, m): v for r, m, v in tidy[["run_id", "metric", "value"]].itertuples(index=False)}
    settings = _by_setting(runs, names)
    labels = setting_labels(list(settings))
    rows = []
    for key, configs in settings.items():
        groups = list(configs.values())
        for x, y in pairs():
            xs, ys = [], []
            for group in groups:
                seeds = [
                    (a, b)
                    for run in group
                    if np.isfinite(a := value.get((run.record["run_id"], x), np.nan))
                    and np.isfinite(b := value.get((run.record["run_id"], y), np.nan))
                ]
                if seeds:
                    xs.append(np.array([a for a, _ in seeds]))
                    ys.append(np.array([b for _, b in seeds]))
            rng = seeded_rng(seed, "correlation", key, x, y)
            found = rank_correlation(xs, ys, rng=rng, n_resamples=n_resamples)
            left_out = len(groups) - len(xs)
            x_label, y_label = (f"“{DEFINED[m].label}”" for m in (x, y))
            rows.append(
                {
                    "setting": labels[key],
                    "x": x,
                    "y": y,
                    "n_configurations": found.n_configurations,
                    "left_out": left_out,
                    "rho": found.rho,
                    "ci_low": found.low,
                    "ci_high": found.high,
                    "p_value": found.p_value,
                    "excludes_zero": found.excludes_zero,
                    "result": link_sentence(found.rho, found.low, found.high, len(xs), x_label, y_label, left_out),
                }
            )
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


RANK_METRICS = ("shifted_auroc", "class_without_context", "context_without_class", "object_swapped_accuracy",
                "worst_group_accuracy", "val_accuracy")
"""The metrics whose rankings of the configurations `rank_agreement_table` compares."""
RANK_LABELS = {m: short_label(m) for m in RANK_METRICS}
"""The short name of each of `RANK_METRICS` in the rank-agreement views (`metric_defs`' `short`)."""
RANK_COLUMNS = ["setting", "x", "y", "n_configurations", "tau", "p_value"]


def rank_agreement_table(runs: list[Run], tidy: pd.DataFrame | None = None, names: Names | None = None) -> pd.DataFrame:
    """Does the verdict depend on the metric? Per setting (as `correlation_table`) and per pair of `RANK_METRICS`:
    Kendall's tau-b between the two rankings of the setting's configurations, each at its mean over its seeds
    (Kendall, Biometrika 1938; `scipy.stats.kendalltau`, with its exact or asymptotic p). 1: the metrics order
    the configurations alike; 0: unrelated; below 0: reversed. Oriented so that higher is better for every metric."""
    tidy = tidy_table(runs) if tidy is None else tidy
    means = tidy.groupby(["config", "metric"])["value"].mean()
    settings = _by_setting(runs, names)
    labels = setting_labels(list(settings))
    metrics = shown(RANK_METRICS, set(tidy.loc[tidy["value"].notna(), "metric"]))  # the measured ones
    rows = []
    for key, configs in settings.items():
        for i, x in enumerate(metrics):
            for y in metrics[i + 1:]:
                pairs = [(means.get((c, x), np.nan), means.get((c, y), np.nan)) for c in configs]
                pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
                tau, p = (sps.kendalltau(*zip(*pairs, strict=True)) if len(pairs) >= 3 else (np.nan, np.nan))
                rows.append({"setting": labels[key], "x": x, "y": y, "n_configurations": len(pairs),
                             "tau": float(tau), "p_value": float(p)})  # fmt: skip
    return pd.DataFrame(rows, columns=RANK_COLUMNS)


def format_rank_agreement(table: pd.DataFrame, markdown: bool = False) -> str:
    """Per setting, Kendall's tau of every pair of metrics' rankings (`rank_agreement_table`) as a matrix."""
    if table.empty:
        return "no configurations to rank"
    short = RANK_LABELS
    out = []
    for setting, group in table.groupby("setting", sort=False):
        tau = {(r["x"], r["y"]): r["tau"] for r in group.to_dict("records")}
        n = int(group["n_configurations"].max())
        ranked = [m for m in RANK_METRICS if any(m in pair for pair in tau)]  # the metrics the table compared
        rows = [[f"{setting or 'all'} ({n} configurations)", *(short[m] for m in ranked[1:])]]
        for i, x in enumerate(ranked[:-1]):
            cells = [short[x]]
            for j, y in enumerate(ranked[1:], start=1):
                value = tau.get((x, y), np.nan)
                cells.append("" if j <= i else ("-" if not np.isfinite(value) else f"{value:+.2f}"))
            rows.append(cells)
        out += [*grid(rows, markdown), ""]
    note = "Kendall's tau-b between the rankings of the configurations (mean over seeds) by two metrics"
    return "\n".join([*out, note])


# The content effect of the masks (docs/statistics.md): the metrics compared between a configuration's true masks
# and its placebo-mask controls (`RunSpec.mask_control`; the control runs' records carry it in their spec).
CONTENT_METRICS = ("shifted_auroc", "worst_group_accuracy", "overall", "relevance_mass")
TRUE_MASKS = MASK_CONTROLS[0]  # "true"
PLACEBOS = MASK_CONTROLS[1:]  # what `table --view content --control` can hold the true masks against
CONTENT_COLUMNS = ["setting", "config", "label", "control", "control_config", "control_label", "method", "display",
                   "budget", "metric", "higher_is_better", "n_seeds", "true_mean", "control_mean", "difference",
                   "ci_low", "ci_high", "p_value", "p_holm", "p_replicates", "p_replicates_holm",
                   "full_replicates"]  # fmt: skip
ADJUSTED = ("p_holm", "p_replicates_holm")


def mask_control(spec: dict[str, Any]) -> str:
    """A record's placebo-mask control (`spec["mask_control"]`; absent: the true masks)."""
    return str(spec.get("mask_control", TRUE_MASKS))


def _without_control(config: str) -> str:
    """A configuration key less its mask control: what a configuration shares with its controls."""
    try:
        data = json.loads(config)
    except ValueError:
        return config
    data.pop("mask_control", None)
    return json.dumps(data, sort_keys=True, default=str)


def content_effect_table(
    runs: list[Run],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    names: Names | None = None,
    metrics: tuple[str, ...] = CONTENT_METRICS,
) -> pd.DataFrame:
    """Does the masks' content matter? Every configuration trained on the true masks against each of its
    placebo-mask controls (the same configuration, everything equal but `mask_control`), on the seeds both have
    (paired by seed number, so the same budget images), per metric of `metrics`: the difference true - control with
    its paired two-level bootstrap interval and p (`stats.paired_bootstrap`, as `paired_table`), and `p_holm`,
    Holm-adjusted over every test of the same control (the content effect is the `shuffled` family: true minus
    shuffled masks). `setting` names what a sweep's regimes differ in (as `correlation_table`). Empty (with its
    columns) where no configuration has a control."""
    names = _names(runs, names)
    configs = _configurations(runs, names)
    families: dict[str, list[tuple[str, list[Run]]]] = {}
    for config, group in configs.items():
        families.setdefault(_without_control(config), []).append((config, group))
    found_pairs = []
    for family in families.values():
        trues = [(c, g) for c, g in family if mask_control(g[0].spec) == TRUE_MASKS]
        for true_config, true_group in trues:
            for control_config, control_group in family:
                if mask_control(control_group[0].spec) != TRUE_MASKS:
                    found_pairs.append((true_config, true_group, control_config, control_group))
    settings = setting_labels(list(dict.fromkeys(record_keys(t[1][0].record)["pairing"] for t in found_pairs)))
    rows = []
    for true_config, true_group, control_config, control_group in found_pairs:
        first, control = true_group[0], mask_control(control_group[0].spec)
        for m in METRIC.values():
            if m.name not in metrics:
                continue
            found = seed_pairs(true_group, control_group, m)
            if not found:
                continue
            rng = seeded_rng(seed, "content", true_config, control_config, m.name)
            comparison = compare(found, m, rng=rng, n_resamples=n_resamples)
            rows.append(
                {
                    "setting": settings[record_keys(first.record)["pairing"]],
                    "config": true_config,
                    "label": first.label,
                    "control": control,
                    "control_config": control_config,
                    "control_label": control_group[0].label,
                    "method": first.spec["method"],
                    "display": names.display(first.spec["method"]),
                    "budget": first.spec["budget"],
                    "metric": m.name,
                    "higher_is_better": m.higher_is_better,
                    "n_seeds": len(found),
                    "true_mean": float(np.mean(comparison.first)),
                    "control_mean": float(np.mean(comparison.second)),
                    "difference": comparison.difference,
                    "ci_low": comparison.low,
                    "ci_high": comparison.high,
                    "p_value": comparison.p_value,
                    "p_replicates": comparison.p_replicates,
                    "full_replicates": comparison.full_replicates,
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in CONTENT_COLUMNS if c not in ADJUSTED])
    for column, adjusted in (("p_value", "p_holm"), ("p_replicates", "p_replicates_holm")):
        table[adjusted] = (
            table.groupby("control")[column].transform(lambda p: holm(p.to_numpy())) if len(table) else []
        )
    return table[CONTENT_COLUMNS]


def build_tables(
    roots: list[Path],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    run_ids: Collection[str] | None = None,
    short: bool = False,
    names: Names | None = None,
    baseline: str = BASELINE,
) -> dict[str, pd.DataFrame]:
    """All tables of the runs under `roots` (see `load_runs` for `run_ids` and `short`): tidy, aggregated, paired
    (every configuration against the configuration of method `baseline` with its setting), paper, correlation
    (localisation against robustness), content_effect (true against placebo masks), excluded; methods named as
    `names` (a results folder's `suite.json`) or the records say."""
    runs, excluded = load_runs(roots, run_ids=run_ids, short=short)
    aggregated = aggregate_table(runs, excluded, n_resamples=n_resamples, seed=seed, names=names)
    tidy = tidy_table(runs)
    return {
        "tidy": tidy,
        "aggregated": aggregated,
        "paired": paired_table(runs, baseline=baseline, n_resamples=n_resamples, seed=seed, names=names),
        "paper": paper_table(aggregated, excluded),
        "correlation": correlation_table(runs, tidy, n_resamples=n_resamples, seed=seed, names=names),
        "content_effect": content_effect_table(runs, n_resamples=n_resamples, seed=seed, names=names),
        "rank_agreement": rank_agreement_table(runs, tidy, names=names),
        "excluded": excluded,
    }


def write_csv(tables: dict[str, pd.DataFrame], out_dir: Path) -> list[Path]:
    """Each table as `<out_dir>/<name>.csv` (the paper table with its metric column), each written atomically (a
    full disk leaves the earlier file whole and raises `store.WriteError` naming it); returns the paths."""
    paths = []
    for name, table in tables.items():
        path = Path(out_dir) / f"{name}.csv"
        write_atomic(path, table.to_csv(index=name == "paper"))
        paths.append(path)
    return paths


# The `--rows` columns of `gain-bench table --view backgrounds`: the shifted groups beside the background swaps.
BACKGROUND_ROW_METRICS = (
    ("shifted_auroc", "AUROC"),
    ("worst_group_accuracy", "worst group"),
    ("usual_background_accuracy", "usual ground"),
    ("random_background_accuracy", "random ground"),
    ("background_gap", "background gap"),
    ("object_only_accuracy", "object only"),
    ("object_swapped_land_accuracy", "other object on land"),
)


def format_content_effect(table: pd.DataFrame, markdown: bool = False, control: str = "shuffled") -> str:
    """`content_effect_table` against one placebo, `control` (the content effect: `shuffled`), as one line per
    true-mask configuration: per metric, true minus `control` masks with its paired 95% interval and Holm-adjusted p."""
    if control not in PLACEBOS:
        raise ValueError(f"control {control!r}: not a placebo-mask control; one of {', '.join(PLACEBOS)}")
    effect = table[table["control"] == control] if not table.empty else table
    if effect.empty:
        return f'no configuration has a twin with {control} masks (data.mask_control = "{control}"): no comparison'
    metrics = list(dict.fromkeys(effect["metric"]))
    head = ["configuration", "n", *(short_label(m) for m in metrics)]
    rows = [head]
    names = short_names(list(effect.drop_duplicates("config")["label"]))
    for _config, group in effect.groupby("config", sort=False):
        by_metric = group.set_index("metric")
        cells = [names[group.iloc[0]["label"]], str(int(group["n_seeds"].min()))]
        for m in metrics:
            if m not in by_metric.index:
                cells.append("-")
                continue
            r = by_metric.loc[m]
            cells.append(f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] p{r['p_holm']:.3f}")
        rows.append(cells)
    note = (f"true minus {control} masks, paired by seed: difference [95% paired bootstrap interval], Holm-adjusted p "
            f"over every test against {control} masks")  # fmt: skip
    return "\n".join([*grid(rows, markdown), "", note])


def format_correlation(table: pd.DataFrame, markdown: bool = False) -> str:
    """`correlation_table` as text: per setting and (localisation, robustness) pair, Spearman's rho with its
    hierarchical-bootstrap interval over configurations and seeds."""
    if table.empty:
        return "no configuration with both a localisation and a robustness metric: no correlation"
    rows = [["setting", "localisation", "robustness", "configurations", "rho [95% interval]", "p"]]
    for _, r in table.iterrows():
        rho = "-" if not np.isfinite(r["rho"]) else f"{r['rho']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        p = "-" if not np.isfinite(r["p_value"]) else f"{r['p_value']:.3f}"
        rows.append([str(r["setting"]) or "all", short_label(r["x"]), short_label(r["y"]),
                     str(int(r["n_configurations"])), rho, p])
    note = ("Spearman rank correlation across configurations (each at its mean over seeds); interval: configurations, "
            "then seeds within them, resampled")
    return "\n".join([*grid(rows, markdown), "", note])
