"""Every table of a results folder, built together (`build_tables`: tidy, aggregated, paired, paper, the studies) and
written as CSV (`write_csv`). The pieces live beside it: `runs`, `metric_groups`, `aggregate`, `paired`,
`studies`, `text`."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pandas as pd

from benchmark.analyse.aggregate import aggregate_table, paper_table, tidy_table
from benchmark.analyse.names import Names
from benchmark.analyse.paired import paired_table
from benchmark.analyse.runs import load_runs
from benchmark.analyse.stats import N_RESAMPLES
from benchmark.analyse.studies import content_effect_table, correlation_table, rank_agreement_table
from benchmark.core.spec import BASELINE
from benchmark.core.store import write_atomic


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
