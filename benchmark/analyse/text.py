"""The text views of `gain-bench table`: the paper table, configurations as rows, and the studies, as fixed-width
text or Markdown."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd

from benchmark.analyse.cells import TERMINAL_WIDTH, column_blocks, grid, interval_cell
from benchmark.analyse.metric_groups import shown
from benchmark.analyse.paired import significance
from benchmark.analyse.runs import PLACEBOS, short_names
from benchmark.analyse.stats import (
    ALPHA,
    MIN_REPLICATES,
)
from benchmark.analyse.studies import RANK_LABELS, RANK_METRICS
from benchmark.core import metric_defs
from benchmark.core.metric_defs import METRIC as DEFINED
from benchmark.core.metric_defs import short_label


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
