"""Does a searched suite's ranking of its configurations depend on the selection rule, or on the metric?

One search is read with every selection rule its records hold (`selection.select_rules`); under each rule, each
searched configuration (a search group: method entry, budget and regime) is its chosen trial's mean over the seeds,
per metric of `studies.RANK_METRICS`. Kendall's tau-b (`scipy.stats.kendalltau`) is taken between the rankings of the
configurations at every pair of (metric, rule) points, within each regime of a sweep. `format_rule_ranks` prints
the same metric across rules (does the rule reorder the configurations?), then the spread over every pair of points,
and how often the rules chose the same trial. `gain-bench table DIR --view rules` shows it;
`studies.rank_agreement_table` is the one-rule view (metrics against metrics).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.stats as sps

from benchmark.analyse.aggregate import tidy_table
from benchmark.analyse.cells import grid
from benchmark.analyse.results import read_suite
from benchmark.analyse.runs import load_runs, setting_labels
from benchmark.analyse.studies import RANK_LABELS, RANK_METRICS
from benchmark.analyse.summary import record_keys
from benchmark.core.selection import reported_specs, select_rules

RULE_RANK_COLUMNS = ["setting", "x_metric", "x_rule", "y_metric", "y_rule", "n_configurations", "tau", "p_value"]


def rule_means(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per rule, setting (the regime's pairing key) and search group: each metric's mean over the chosen trial's
    seeds; and per rule and group, the trial it chose. A folder without `[search]` is a ValueError."""
    suite = read_suite(folder)
    if suite.search is None:
        raise ValueError(f"{folder}: not a searched suite (no [search]): one configuration per method, nothing to "
                         "choose; --view ranks compares its metrics")  # fmt: skip
    runs, _ = load_runs([folder])
    tidy = tidy_table(runs)
    setting = {r.record["run_id"]: record_keys(r.record)["pairing"] for r in runs}
    means, trials = [], []
    for rule, selections in select_rules(suite, folder).items():
        chosen = reported_specs(suite, folder, selections)
        group = {spec.run_id: spec.search["group"] for spec in chosen}
        rows = tidy[tidy["run_id"].isin(group)].assign(rule=rule)
        rows = rows.assign(group=rows["run_id"].map(group), setting=rows["run_id"].map(setting))
        means.append(rows.groupby(["rule", "setting", "group", "metric"], sort=False)["value"].mean().reset_index())
        trials += [{"rule": rule, "group": g, "trial": s.chosen.trial} for g, s in selections.items() if s.chosen]
    table = pd.concat(means, ignore_index=True) if means else pd.DataFrame(columns=["rule", "setting", "group",
                                                                                      "metric", "value"])
    return table, pd.DataFrame(trials, columns=["rule", "group", "trial"])


def rule_rank_agreement(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Kendall's tau between the configurations' rankings at every pair of (metric, rule) points, per setting
    (`RULE_RANK_COLUMNS`), and the trials each rule chose (`rule_means`)."""
    means, trials = rule_means(folder)
    measured = set(means.loc[means["value"].notna(), "metric"])
    metrics = [m for m in RANK_METRICS if m in measured]
    labels = setting_labels(list(dict.fromkeys(means["setting"])))
    rows = []
    for key, block in means.groupby("setting", sort=False):
        value = block.set_index(["rule", "metric", "group"])["value"]
        rules = list(dict.fromkeys(block["rule"]))
        groups = list(dict.fromkeys(block["group"]))
        points = [(m, r) for m in metrics for r in rules]
        for (xm, xr), (ym, yr) in itertools.combinations(points, 2):
            pairs = [(value.get((xr, xm, g), np.nan), value.get((yr, ym, g), np.nan)) for g in groups]
            pairs = [(a, b) for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
            tau, p = sps.kendalltau(*zip(*pairs, strict=True)) if len(pairs) >= 3 else (np.nan, np.nan)
            rows.append({"setting": labels[key], "x_metric": xm, "x_rule": xr, "y_metric": ym, "y_rule": yr,
                         "n_configurations": len(pairs), "tau": float(tau), "p_value": float(p)})  # fmt: skip
    return pd.DataFrame(rows, columns=RULE_RANK_COLUMNS), trials


def format_rule_ranks(table: pd.DataFrame, trials: pd.DataFrame, markdown: bool = False) -> str:
    """The same metric under each pair of rules (tau), the spread of tau over every pair of (metric, rule) points,
    and how many search groups each pair of rules chose the same trial for."""
    if table.empty:
        return "no searched configurations chosen yet (or fewer than two rules recorded)"
    out = []
    for setting, block in table.groupby("setting", sort=False):
        n = int(block["n_configurations"].max())
        same = block[(block["x_metric"] == block["y_metric"]) & (block["x_rule"] != block["y_rule"])]
        rule_pairs = list(dict.fromkeys(zip(same["x_rule"], same["y_rule"], strict=True)))
        rows = [[f"{setting or 'all'} ({n} configurations)", *(f"{a} / {b}" for a, b in rule_pairs)]]
        for metric, by_metric in same.groupby("x_metric", sort=False):
            tau = {(r["x_rule"], r["y_rule"]): r["tau"] for r in by_metric.to_dict("records")}
            rows.append([RANK_LABELS.get(metric, metric), *(_cell(tau.get(pair, np.nan)) for pair in rule_pairs)])
        out += [*grid(rows, markdown), ""]
        finite = block["tau"][np.isfinite(block["tau"])]
        if len(finite):
            low = block.loc[finite.idxmin()]
            x, y = (RANK_LABELS.get(low[k], low[k]) for k in ("x_metric", "y_metric"))
            out.append(f"Over all {len(finite)} pairs of (metric, rule) points: median tau {finite.median():+.2f}, "
                       f"lowest {finite.min():+.2f} ({x} by {low['x_rule']} against {y} by {low['y_rule']}).")
            out.append("")
    chosen = trials.pivot_table(index="group", columns="rule", values="trial", aggfunc="first")
    for a, b in itertools.combinations(chosen.columns, 2):
        both = chosen[[a, b]].dropna()
        out.append(f"{a} and {b} chose the same trial in {int((both[a] == both[b]).sum())} of {len(both)} "
                   "searched configurations.")  # fmt: skip
    out.append("Kendall's tau-b between the rankings of the searched configurations (each its chosen trial's mean "
               "over seeds) by a metric under one selection rule and under another (the same metric: does the rule "
               "reorder them?)")  # fmt: skip
    return "\n".join(out)


def _cell(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:+.2f}"
