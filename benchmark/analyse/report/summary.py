"""The report's Markdown summary (`summary.md` beside `index.html`): what a pull request or a CI job shows of a
results folder in a few dozen lines. The verdict's sentences per shifted group, each configuration against the
baseline on both shifted groups and the AUROC (mean, paired difference, interval, replicate-level Holm p), the
runs that failed or were left out, and where the full report is. It renders on GitHub and GitLab alike."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.analyse.cells import interval_cell
from benchmark.analyse.metric_groups import shown
from benchmark.analyse.paired import NOT_ENOUGH, significance
from benchmark.analyse.report.verdict import group_sentence_subjects
from benchmark.analyse.runs import row_name
from benchmark.analyse.stats import ALPHA, MIN_REPLICATES
from benchmark.core.spec import BASELINE

# The columns of the summary's table: the shifted groups (the third where measured), then the threshold-free
# separation.
SUMMARY_METRICS = ("class_without_context", "context_without_class", "object_swapped_accuracy", "shifted_auroc")
MAX_LINES = 1000  # GitHub's job summary and a pull request comment stay readable; longer lists are cut


def _cell(row: dict[str, Any] | None) -> str:
    return "–" if row is None else interval_cell(row["mean"], row["ci_low"], row["ci_high"])


def _difference(row: dict[str, Any] | None) -> str:
    if row is None or not math.isfinite(row["difference"]):
        return "–"
    call = significance(row)
    p = "" if call == NOT_ENOUGH else f", p {row['p_replicates_holm']:.3f}"
    mark = " **\\***" if call == "significant" else ""
    return (f"{row['difference']:+.3f} [{row['ci_low']:+.3f}, {row['ci_high']:+.3f}]{p}{mark}").replace("-", "−")


def regime_table(aggregated: pd.DataFrame, paired: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """One row per configuration: each summary metric's mean [interval] and, against the baseline, the paired
    difference [interval] with the Holm-adjusted sign-flip p (`*` where `paired.significance` calls it)."""
    metrics = shown(SUMMARY_METRICS, set(aggregated["metric"]))
    head = ["configuration", *(f"{labels.get(m, m)} | vs baseline" for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * (1 + 2 * len(metrics))]
    cells = {(r["config"], r["metric"]): r for r in aggregated.to_dict("records")}
    diffs = {(r["config"], r["metric"]): r for r in paired.to_dict("records")} if len(paired) else {}
    for config, group in aggregated.groupby("config", sort=False):
        first = group.iloc[0]
        name = row_name(first.to_dict())
        if first["method"] == BASELINE:
            name += " (baseline)"
        row = [name]
        for metric in metrics:
            row += [_cell(cells.get((config, metric))), _difference(diffs.get((config, metric)))]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(ctx: dict[str, Any], views: list[tuple[Any, dict[str, pd.DataFrame]]], report: Path,
             labels: dict[str, str]) -> str:  # fmt: skip
    """The summary of a report's context (`build.context`) and its regimes' tables."""
    counts, suite = ctx["counts"], ctx["suite"]
    missing = counts.get("running", 0) + counts.get("missing", 0)
    lines = [
        f"## gain-bench: {suite.name}",
        "",
        f"{ctx['total']} runs: {counts.get('complete', 0)} complete, {counts.get('failed', 0)} failed, {missing} "
        f"missing. The full report: `{report}`.",
    ]
    subjects = group_sentence_subjects(suite.audited_class, suite.context)
    for (regime, tables), view in zip(views, ctx["regimes"], strict=True):
        lines += ["", f"### Regime {regime.label}" if regime.label else "### Verdict", ""]
        summary = view["verdict"]["summary"]
        said = [s for s in summary if s.startswith(subjects)] or summary[:2]
        lines += [f"- {s}" for s in said]
        if len(tables["aggregated"]):
            lines += ["", *regime_table(tables["aggregated"], tables["paired"], labels)]
    lines += ["", "Mean over seeds [95% two-level bootstrap interval]; against the baseline, the paired difference "
              "[interval], its replicate-level sign-flip p (Holm-adjusted) and \\* where it is significant (at least "
              f"{MIN_REPLICATES} full replicates, p < {ALPHA}, the interval excluding 0)."]  # fmt: skip
    problems = [f"failed: `{p.spec.run_id}`: {(p.record or {}).get('error') or 'see its record'}"
                for p in ctx.get("failed", [])]  # fmt: skip
    problems += [f"left out: {line}" for line in ctx.get("left_out", [])]
    if problems:
        lines += ["", "### Runs that need a look", "", *(f"- {p}" for p in problems)]
    if len(lines) > MAX_LINES:
        cut = len(lines) - MAX_LINES + 1
        lines = [*lines[: MAX_LINES - 1], f"({cut} more lines: the full report)"]
    return "\n".join(lines) + "\n"
