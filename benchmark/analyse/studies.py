"""The studies across configurations: localisation against robustness (`correlation_table`), whether the verdict
depends on the metric (`rank_agreement_table`), and true masks against placebo masks (`content_effect_table`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats as sps

from benchmark.analyse.aggregate import tidy_table
from benchmark.analyse.correlation import link_sentence, pairs, rank_correlation
from benchmark.analyse.metric_groups import METRIC, shown
from benchmark.analyse.names import Names
from benchmark.analyse.paired import compare, seed_pairs
from benchmark.analyse.runs import (
    TRUE_MASKS,
    Run,
    by_configuration,
    by_setting,
    mask_control,
    method_names_of,
    seeded_rng,
    setting_labels,
)
from benchmark.analyse.stats import (
    N_RESAMPLES,
    holm,
)
from benchmark.analyse.summary import record_keys
from benchmark.core.metric_defs import METRIC as DEFINED
from benchmark.core.metric_defs import short_label

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
    settings = by_setting(runs, names)
    labels = setting_labels(list(settings))
    rows = []
    for key, configs in settings.items():
        groups = list(configs.values())
        for x, y in pairs(set(tidy["metric"])):
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
    settings = by_setting(runs, names)
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


# The content effect of the masks (docs/statistics.md): the metrics compared between a configuration's true masks
# and its placebo-mask controls (`RunSpec.mask_control`; the control runs' records carry it in their spec).
CONTENT_METRICS = ("shifted_auroc", "worst_group_accuracy", "overall", "relevance_mass")


CONTENT_COLUMNS = ["setting", "config", "label", "control", "control_config", "control_label", "method", "display",
                   "budget", "metric", "higher_is_better", "n_seeds", "true_mean", "control_mean", "difference",
                   "ci_low", "ci_high", "p_value", "p_holm", "p_replicates", "p_replicates_holm",
                   "full_replicates"]  # fmt: skip


ADJUSTED = ("p_holm", "p_replicates_holm")


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
    names = method_names_of(runs, names)
    configs = by_configuration(runs, names)
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
