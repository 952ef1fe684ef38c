"""The same configurations trained by two versions of the code (main's results folder and a pull request's): per
configuration and metric, the paired difference over the seeds both have, its interval and the replicate-level
sign-flip p, Holm-adjusted over the table, and whether it moved beyond the seeds' noise (its interval excludes 0).
`gain-bench compare MAIN PR --paired` prints it; plain `compare` checks that the same runs made twice are equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.analyse.cells import grid
from benchmark.analyse.metric_groups import METRIC
from benchmark.analyse.paired import call, compare, seed_pairs
from benchmark.analyse.runs import config_names, load_runs, seeded_rng
from benchmark.analyse.stats import ALPHA, MIN_REPLICATES, N_RESAMPLES, holm
from benchmark.core.metric_defs import SHIFTED

# What a pull request is asked about first: the two shifted groups, the AUROC, and the in-distribution cost.
VERSION_METRICS = (*SHIFTED, "shifted_auroc", "val_accuracy")
COLUMNS = ["config", "name", "metric", "n_seeds", "main", "pr", "difference", "ci_low", "ci_high", "p_replicates",
           "p_replicates_holm", "full_replicates", "moved", "call"]  # fmt: skip


def versions_table(main: Path, pr: Path, *, n_resamples: int = N_RESAMPLES, seed: int = 0) -> pd.DataFrame:
    """Every configuration of `pr` that `main` holds too, run by run (main's run of the same id, which hashes the
    configuration, else of the same configuration key and seed), paired by seed: `pr - main` per metric of
    `VERSION_METRICS`."""
    main_runs, _ = load_runs([Path(main)], short=True)
    pr_runs, _ = load_runs([Path(pr)], short=True)
    names = config_names(pr_runs)
    by_id = {r.record["run_id"]: r for r in main_runs}
    by_config_seed = {(r.config, r.spec["seed"]): r for r in main_runs}
    by_config: dict[str, tuple[list, list]] = {}
    for run in pr_runs:  # its twin: main's run of the same id (the same config hash), else of the same key and seed
        twin = by_id.get(run.record["run_id"]) or by_config_seed.get((run.config, run.spec["seed"]))
        if twin is not None:
            pair = by_config.setdefault(run.config, ([], []))
            pair[0].append(run)
            pair[1].append(twin)
    rows = []
    for config in (c for c in names if c in by_config):  # the registry's order (`runs.config_names`)
        new, old = by_config[config]
        for metric in VERSION_METRICS:
            m = METRIC[metric]
            pairs = seed_pairs(new, old, m)
            if not pairs:
                continue
            c = compare(pairs, m, rng=seeded_rng(seed, "versions", config, metric), n_resamples=n_resamples)
            rows.append({"config": config, "name": names[config], "metric": metric, "n_seeds": len(pairs),
                         "main": float(np.mean(c.second)), "pr": float(np.mean(c.first)), "difference": c.difference,
                         "ci_low": c.low, "ci_high": c.high, "p_replicates": c.p_replicates,
                         "full_replicates": c.full_replicates})  # fmt: skip
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_replicates_holm", "moved", "call")])
    if table.empty:
        return pd.DataFrame(columns=COLUMNS)
    table["p_replicates_holm"] = holm(table["p_replicates"].to_numpy())
    table["moved"] = (table["ci_low"] > 0) | (table["ci_high"] < 0)
    table["call"] = [call(r)[0] for r in table.to_dict("records")]
    return table[COLUMNS]


def format_versions(table: pd.DataFrame, markdown: bool = False) -> str:
    """One line per configuration and metric: main, the pull request, the difference [interval], the Holm p and
    whether it moved; then how to read it."""
    head = ["configuration", "metric", "seeds", "main", "PR", "PR − main [95% interval]", "Holm p", "moved"]
    body = [[r["name"], r["metric"], str(r["n_seeds"]), f"{r['main']:.3f}", f"{r['pr']:.3f}",
             f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]", f"{r['p_replicates_holm']:.3f}",
             ("yes, " + r["call"]) if r["moved"] else "no"] for r in table.to_dict("records")]  # fmt: skip
    moved = int(table["moved"].sum())
    notes = [
        f"{moved} of {len(table)} moved beyond the seeds' noise (the paired two-level bootstrap interval excludes 0); "
        f"the call beside it is the suite's rule (significant only with at least {MIN_REPLICATES} full replicates, the "
        f"sign-flip p Holm-adjusted over this table below {ALPHA} and the interval excluding 0)",
    ]
    return "\n".join([*grid([head, *body], markdown), "", *(f"- {n}" if markdown else n for n in notes)])
