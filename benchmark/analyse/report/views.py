"""The report's views: each section's data (throughput, effects, environment, search, paper table, regimes,
correlation, content effect) shaped from the tables and the records into what the template shows. `build`
assembles them into the page."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.analyse.cells import plural
from benchmark.analyse.names import Names
from benchmark.analyse.paired import replicates_note
from benchmark.analyse.paired import significance as significance_call
from benchmark.analyse.report import costs, figures
from benchmark.analyse.report.verdict import (
    effect,
    p_text,
    signed_points,
)
from benchmark.analyse.results import (
    RegimeView,
    SuiteView,
)
from benchmark.analyse.runs import TRUE_MASKS, mask_control, row_name
from benchmark.analyse.summary import configuration
from benchmark.analyse.tables import build_tables
from benchmark.core.selection import RULES, Selection, reported_specs, unrecorded_note
from benchmark.core.spec import RunSpec

SIGNIFICANCE_METRICS = ("val_accuracy", "class_without_context", "context_without_class", "object_swapped_accuracy",
                        "overall", "shifted_auroc", "worst_group_accuracy", "context_flip_rate", "background_gap",
                        "object_only_accuracy", "object_swapped_land_accuracy")  # fmt: skip


def display(method_names: Names, method: str, budget: int) -> str:
    return method_names.display(method) + (f"-{budget}" if budget else "")



def record_throughput(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: its lowest seed's figures, taken right after that run trained."""
    rows: dict[str, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: r["spec"]["seed"]):
        t = r.get("timings", {}).get("throughput")
        spec = RunSpec.from_dict(r["spec"])
        if t and spec.method_label not in rows:
            rows[spec.method_label] = {"config": spec.method_label, "method": spec.method, "budget": spec.budget, **t}
    return list(rows.values())


MEMORY_KINDS = {
    "process_peak_rss": "the process's peak resident memory so far (CPU; it includes what the process held before)",
    "cuda_max_allocated": "the peak of CUDA memory allocated",
    "cuda_max_allocated_own": "the peak of CUDA memory allocated, less what was allocated before this configuration",
}


def throughput_view(rows: list[dict[str, Any]], method_names: Names) -> dict[str, Any]:
    """The throughput table's rows (`costs.with_costs`: one cost per row, against the baseline figure it names,
    the chart's too) under the report's configuration names, and the settings they share, said once."""
    rows = sorted(costs.with_costs(rows), key=lambda r: (method_names.rank(r["method"]), int(r.get("budget", 0))))
    for row in rows:
        label = str(row["config"])
        row["name"] = method_names.display(row["method"]) + label[len(row["method"]) :]
    shared = {}
    for key in ("device_name", "device", "precision", "batch_size", "image_size", "threads"):
        values = {json.dumps(r.get(key)) for r in rows}
        if len(values) == 1 and rows[0].get(key) is not None:
            shared[key] = rows[0][key]
    kinds = sorted({str(r.get("memory_kind")) for r in rows if r.get("memory_kind")})
    return {
        "rows": rows,
        "shared": shared,
        "memory": "; ".join(MEMORY_KINDS.get(k, k) for k in kinds),
        "paired": any(r["paired"] for r in rows),
    }


def effects(significance: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
    """The significance table at a glance: one row per configuration, one cell per metric, the difference in points
    (hundredths for AUROC) coloured by `verdict.effect`, the interval and p in the cell's title."""
    metrics = [m for m in SIGNIFICANCE_METRICS if any(r["metric"] == m for r in significance)]
    rows: dict[str, dict[str, Any]] = {}
    for r in significance:
        rows.setdefault(r["name"], {})[r["metric"]] = r
    out = []
    for name, by_metric in rows.items():
        cells = []
        for metric in metrics:
            r = by_metric.get(metric)
            if r is None or not isinstance(r.get("difference"), int | float) or not math.isfinite(r["difference"]):
                cells.append({"text": "–", "kind": "ns", "title": ""})
                continue
            title = (f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}], sign-flip Holm p "
                     f"{p_text(r['p_replicates_holm'])} over {r['n_seeds']} seeds, {significance_call(r)}")  # fmt: skip
            cells.append({"text": signed_points(r["difference"], zero="±0"), "kind": r["effect"], "title": title})
        out.append({"name": name, "cells": cells})
    return {"metrics": [(m, names.get(m, m)) for m in metrics], "rows": out}


def environment_view(environment: dict[str, Any]) -> dict[str, Any]:
    """The runs' environment (`summary.environments`: every value each key took) as the report lists it: the CUDA
    version only where a run used CUDA, and torch's threads named for what they are (each run's; the timing section
    gives its own)."""
    view = dict(environment)
    if not str(view.get("device", "")).startswith("cuda"):
        view.pop("cuda", None)
    if "threads" in view:
        view["torch threads per run"] = view.pop("threads")
    return view


def run_level_means(records: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Mean over seeds of record-level metrics that have no per-image form (CAM mIoU, context attention share),
    keyed by configuration (the aggregated table's `config`)."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in records:
        config = configuration(r)[0]
        for key in keys:
            value = r.get("metrics", {}).get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                out.setdefault(config, {}).setdefault(key, []).append(value)
    return {config: {k: sum(v) / len(v) for k, v in d.items()} for config, d in out.items()}


def search_summary(
    suite: Any, selections: dict[str, Selection], method_names: Names, others: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The search as the report states it: the rule, the trials every method entry got, and per (method entry,
    budget) the chosen trial, its selection score and hyperparameters; `others`: the same search read with the
    other rules its records hold (`other_rules`)."""
    if suite.search is None:
        return None
    rule = RULES[suite.search.rule]
    return {
        **rule_view(suite, rule.name, selections, method_names),
        "trials": suite.search.trials,
        "seed": suite.search.seed,
        "group_val_size": suite.search.group_val_size,
        "searched": ", ".join(suite.search.keys)
        if suite.search.keys
        else "lr, weight_decay and each method hyperparameter with a declared distribution (but those its entry sets)",
        "others": others or [],
    }


def rule_view(suite: Any, rule_name: str, selections: dict[str, Selection], method_names: Names) -> dict[str, Any]:
    """One rule's reading of the search: its definition and, per (method entry, budget), the trial it chose."""
    rule = RULES[rule_name]
    regime_of = {run_id: r.label for r in suite.regimes() for run_id in r.run_ids} if suite.sweep else {}
    groups = []
    for selection in selections.values():
        chosen, first = selection.chosen, selection.trials[0]
        regime = regime_of.get(first.run_ids[0], "")
        groups.append(
            {
                "name": (f"{regime}: " if regime else "") + display(method_names, first.method, first.budget),
                "entry": first.entry,
                "trials": len(selection.trials),
                "eligible": sum(t.score is not None for t in selection.trials),
                "final": selection.final,
                "chosen": chosen.trial if chosen else None,
                "score": chosen.score if chosen else None,
                "hparams": ", ".join(f"{k}={v}" for k, v in chosen.hparams.items()) if chosen else "",
            }
        )
    return {
        "rule": rule.name,
        "metric": rule.metric,
        "doc": rule.doc,
        "upper_bound": rule.upper_bound,
        "groups": groups,
        "unrecorded": unrecorded_note(rule.name, selections),
    }


def other_rules(
    suite: SuiteView,
    out_root: Path,
    by_rule: dict[str, dict[str, Selection]],
    skip: set[str],
    n_resamples: int,
    method_names: Names,
    names: dict[str, str],
) -> list[dict[str, Any]]:
    """The search read with every rule its records hold beside the suite's own: per rule, the trials it chose and
    the paper's table of their runs (per regime), so each number says which rule chose it. `skip`: run ids left out
    (damaged or conflicting)."""
    out = []
    for rule, selections in list(by_rule.items())[1:]:
        chosen = {s.run_id for s in reported_specs(suite, out_root, selections)} - skip
        papers = [
            {"label": regime.label, "paper": paper_view(tables["paper"], names)}
            for regime, tables in tables_by_regime(suite, out_root, chosen, n_resamples, method_names)
            if len(tables["aggregated"])
        ]
        out.append(rule_view(suite, rule, selections, method_names) | {"papers": papers})
    return out


def paper_view(paper: pd.DataFrame, names: dict[str, str]) -> dict[str, Any]:
    paper.index = pd.Index(
        [names.get(key, label) for key, label in zip(paper.attrs["metrics"], paper.index, strict=True)], name="metric"
    )
    return {
        "columns": list(paper.columns),
        "rows": [(index, list(row)) for index, row in zip(paper.index, paper.to_numpy(), strict=True)],
        "footnotes": paper.attrs.get("footnotes", []),
    }


def tables_by_regime(
    suite: SuiteView, out_root: Path, run_ids: set[str], n_resamples: int, method_names: Names
) -> list[tuple[RegimeView, dict[str, pd.DataFrame]]]:
    """The tables of each regime of the suite on its own runs: a method is compared with its own regime's baseline
    and Holm's adjustment runs over one regime's comparisons (one suite without `[sweep]` is one regime)."""
    out = []
    for regime in suite.regimes():
        ids = set(regime.run_ids) & run_ids
        tables = build_tables([out_root], run_ids=ids, short=True, n_resamples=n_resamples, names=method_names)
        out.append((regime, tables))
    return out


def merged_tables(views: list[tuple[RegimeView, dict[str, pd.DataFrame]]]) -> dict[str, pd.DataFrame]:
    """One table per kind over every regime, with a leading `regime` column (for the CSV files and the sections that
    list every configuration)."""
    if len(views) == 1 and not views[0][0].label:
        return views[0][1]
    merged: dict[str, pd.DataFrame] = {"paper": views[0][1]["paper"]}
    for key in ("tidy", "aggregated", "paired", "correlation", "excluded"):
        frames = [tables[key].assign(regime=regime.label) for regime, tables in views]
        frame = pd.concat(frames, ignore_index=True)
        merged[key] = frame[["regime", *[c for c in frame.columns if c != "regime"]]]
    return merged


def correlation_view(
    tables: dict[str, pd.DataFrame], names: dict[str, str], method_names: Names
) -> dict[str, Any] | None:
    """One regime's answer to "does localisation predict robustness?": the rows of `studies.correlation_table` with
    the metrics' names, and the scatter of its configurations (`figures.correlation_scatter`)."""
    correlation = tables.get("correlation")
    if correlation is None or correlation.empty or tables["aggregated"].empty:
        return None
    rows = [
        r | {"x_name": names.get(r["x"], r["x"]), "y_name": names.get(r["y"], r["y"])}
        for r in correlation.to_dict("records")
    ]
    return {
        "rows": rows,
        "several_settings": correlation["setting"].nunique() > 1,
        "figure": figures.correlation_scatter(tables["aggregated"], correlation, names, names=method_names),
    }


def content_view(table: pd.DataFrame, records: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
    """"Does the masks' content matter?": the rows of `studies.content_effect_table` with their names and effect
    classes, the controls the suite ran, and a plain sentence where it has none (or none with a true-mask twin)."""
    controls = sorted({mask_control(r.get("spec", {})) for r in records} - {TRUE_MASKS})
    rows = [] if table.empty else [
        r | {"name": (f"{r['setting']}: " if r["setting"] else "") + row_name(r),
             "metric_name": names.get(r["metric"], r["metric"]), "effect": effect(r) or "ns"}
        for r in table.to_dict("records")
    ]  # fmt: skip
    if rows:
        shuffled = [r for r in rows if r["control"] == "shuffled"]
        found = sum(r["effect"] in ("better", "worse") for r in shuffled)
        few = [r for r in shuffled if r["effect"] == "few"]
        if not shuffled:
            sentence = "No shuffled-mask control: the rows compare the true masks with the other controls"
        elif len(few) == len(shuffled):
            sentence = (f"{plural(len(shuffled), 'content-effect test')} (true minus shuffled masks): not enough "
                        f"replicates to call any ({replicates_note(few[0])})")  # fmt: skip
        else:
            sentence = (f"{found} of {plural(len(shuffled), 'content-effect test')} (true minus shuffled masks) "
                        "significant after Holm's adjustment")  # fmt: skip
            sentence += f"; {len(few)} with too few replicates" if few else ""
    elif controls:
        sentence = (
            f"The suite ran placebo-mask controls ({', '.join(controls)}), but no control run has a complete "
            "true-mask twin (the same configuration and seed with the true masks) yet"
        )
    else:
        sentence = (
            'This suite has no placebo-mask control runs: set data.mask_control = "shuffled" (in [data] or a method '
            "entry's data) to test whether the masks' content matters"
        )
    return {"rows": rows, "controls": controls, "sentence": sentence}
