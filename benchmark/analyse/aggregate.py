"""The tidy table (one row per run and metric, recomputed from the predictions), each configuration's mean with its
two-level bootstrap interval (`aggregate_table`), and the paper's layout of it (`paper_table`: Table 4 of GAIN,
with intervals).

Every interval is recomputed from the per-image predictions, not from the record's numbers, so it holds both the
seed-to-seed and the test-set variation (`stats.hierarchical_bootstrap`). Each bootstrap draws from a generator
seeded by (`seed`, configuration, metric) (`runs.seeded_rng`), so adding a configuration or a metric never changes
the others' intervals. The runs left out (incomplete, failed, without predictions, duplicates) are `runs.load_runs`'
`excluded` table.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmark.analyse.cells import interval_cell, plural
from benchmark.analyse.metric_groups import METRIC, metric_value, shown
from benchmark.analyse.names import Names
from benchmark.analyse.runs import (
    Run,
    by_configuration,
    config_columns,
    config_names,
    method_names_of,
    row_name,
    run_columns,
    seeded_rng,
)
from benchmark.analyse.stats import (
    N_RESAMPLES,
    hierarchical_bootstrap,
    seed_mean_sd,
)

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


def tidy_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run x metric: the metrics (`METRIC`) recomputed from the predictions (role = the splits they
    read), then every other numeric metric of the record (role `record`, e.g. `val_map`, `cam_miou`)."""
    rows = []
    for run in runs:
        base = run_columns(run)
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
    names = method_names_of(runs, names)
    short = config_names(runs, names)
    for config, group in by_configuration(runs, names).items():
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
                config_columns(config, first, names, short)
                | {
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
