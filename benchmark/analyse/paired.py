"""Paired comparisons: a configuration against its baseline seed by seed (`paired_table`), the two-level bootstrap
and the replicate-level sign-flip test, and the call a comparison earns (`call`, `significance`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from benchmark.analyse.metric_groups import METRIC, MetricDef, metric_value
from benchmark.analyse.names import Names
from benchmark.analyse.runs import Run, by_configuration, config_columns, config_names, method_names_of, seeded_rng
from benchmark.analyse.stats import (
    ALPHA,
    MIN_REPLICATES,
    N_RESAMPLES,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    probability_of_improvement,
    sign_flip_test,
)
from benchmark.analyse.summary import record_keys
from benchmark.core.spec import BASELINE


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
    names = method_names_of(runs, names)
    configs = by_configuration(runs, names)
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
                config_columns(config, first, names, short)
                | {
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
