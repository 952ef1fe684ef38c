"""Collect a suite results folder (its `suite.json`, run records and predictions) into the report's context and
render one self-contained HTML page with `results.csv` (and the run-level and paired tables) beside it."""

from __future__ import annotations

import json
import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from benchmark import __version__
from benchmark.analyse.cells import interval_cell, plural
from benchmark.analyse.names import Names
from benchmark.analyse.paired import replicates_note
from benchmark.analyse.paired import significance as significance_call
from benchmark.analyse.report import costs, figures, gallery, summary
from benchmark.analyse.report.verdict import (
    PAPER_TABLE4,
    beats_baseline_sentence,
    effect,
    group_sentence_subjects,
    p_text,
    signed_points,
    verdict,
)
from benchmark.analyse.results import (
    RERUN,
    RegimeView,
    SuiteView,
    folder_problems,
    planned,
    read_suite,
    read_throughput,
    reference_share,
)
from benchmark.analyse.runs import TRUE_MASKS, load_runs, mask_control, row_name
from benchmark.analyse.studies import content_effect_table
from benchmark.analyse.summary import configuration, curve_table, environments
from benchmark.analyse.tables import build_tables
from benchmark.core import metric_defs
from benchmark.core.metric_defs import labels
from benchmark.core.phases import say
from benchmark.core.provenance import git_commit
from benchmark.core.selection import RULES, Selection, reported_specs, select_rules, trials_table, unrecorded_note
from benchmark.core.spec import RunSpec
from benchmark.core.store import (
    COMPLETE,
    CONFLICT,
    DAMAGED,
    FAILED,
    MISSING,
    RUNNING,
    STATES,
    DamagedFile,
    read_references,
    write_atomic,
)

TEMPLATES = Path(__file__).parent / "templates"
SIGNIFICANCE_METRICS = ("val_accuracy", "class_without_context", "context_without_class", "object_swapped_accuracy",
                        "overall", "shifted_auroc", "worst_group_accuracy", "context_flip_rate", "background_gap",
                        "object_only_accuracy", "object_swapped_land_accuracy")  # fmt: skip
SWEEP_METRICS = ("shifted_auroc", "class_without_context", "context_without_class", "val_accuracy")
CURVE_METRICS = (
    "val_accuracy", "class_without_context", "context_without_class", "shifted_auroc", "context_flip_rate",
    "relevance_mass",
)  # fmt: skip


NO_CHECKPOINT = "its results are in the report; the gallery and the suite-level timing could not use it"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    env.filters["plural"] = lambda n, word: plural(int(n), word)
    env.filters["pval"] = lambda p: p_text(p, missing="–")
    env.filters["iv"] = _interval
    return env


def _interval(cell: dict[str, Any] | None, digits: int = 3) -> str:
    """An aggregated cell (mean, ci_low, ci_high) as `cells.interval_cell` writes it; "–" where there is none."""
    keys = ("mean", "ci_low", "ci_high")
    if not cell or not all(isinstance(cell.get(k), int | float) and math.isfinite(cell[k]) for k in keys):
        return "–"
    return interval_cell(cell["mean"], cell["ci_low"], cell["ci_high"], digits)


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _display(method_names: Names, method: str, budget: int) -> str:
    return method_names.display(method) + (f"-{budget}" if budget else "")


def metric_names(cls: str, context: str) -> dict[str, str]:
    """Readable metric names for the audited class and its context (`metric_defs.labels`)."""
    return labels(cls, context)


def _throughput(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
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


def _throughput_view(rows: list[dict[str, Any]], method_names: Names) -> dict[str, Any]:
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


def _effects(significance: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
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


def _environment_view(environment: dict[str, Any]) -> dict[str, Any]:
    """The runs' environment (`summary.environments`: every value each key took) as the report lists it: the CUDA
    version only where a run used CUDA, and torch's threads named for what they are (each run's; the timing section
    gives its own)."""
    view = dict(environment)
    if not str(view.get("device", "")).startswith("cuda"):
        view.pop("cuda", None)
    if "threads" in view:
        view["torch threads per run"] = view.pop("threads")
    return view


def _run_level(records: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, dict[str, float]]:
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


def _search_summary(
    suite: Any, selections: dict[str, Selection], method_names: Names, others: list[dict[str, Any]] | None = None
) -> dict[str, Any] | None:
    """The search as the report states it: the rule, the trials every method entry got, and per (method entry,
    budget) the chosen trial, its selection score and hyperparameters; `others`: the same search read with the
    other rules its records hold (`_other_rules`)."""
    if suite.search is None:
        return None
    rule = RULES[suite.search.rule]
    return {
        **_rule_view(suite, rule.name, selections, method_names),
        "trials": suite.search.trials,
        "seed": suite.search.seed,
        "group_val_size": suite.search.group_val_size,
        "searched": ", ".join(suite.search.keys)
        if suite.search.keys
        else "lr, weight_decay and each method hyperparameter with a declared distribution (but those its entry sets)",
        "others": others or [],
    }


def _rule_view(suite: Any, rule_name: str, selections: dict[str, Selection], method_names: Names) -> dict[str, Any]:
    """One rule's reading of the search: its definition and, per (method entry, budget), the trial it chose."""
    rule = RULES[rule_name]
    regime_of = {run_id: r.label for r in suite.regimes() for run_id in r.run_ids} if suite.sweep else {}
    groups = []
    for selection in selections.values():
        chosen, first = selection.chosen, selection.trials[0]
        regime = regime_of.get(first.run_ids[0], "")
        groups.append(
            {
                "name": (f"{regime}: " if regime else "") + _display(method_names, first.method, first.budget),
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


def _other_rules(
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
            {"label": regime.label, "paper": _paper_view(tables["paper"], names)}
            for regime, tables in _regime_tables(suite, out_root, chosen, n_resamples, method_names)
            if len(tables["aggregated"])
        ]
        out.append(_rule_view(suite, rule, selections, method_names) | {"papers": papers})
    return out


RISE = 1.25  # a configuration's losses "rose" when its last epoch's mean total loss is this many times its lowest


def rising_losses(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Configurations whose mean total loss (over seeds) at the last epoch is at least `RISE` times, and 0.01 above,
    the lowest of the epochs before it that optimised the same loss (once the attention losses are on, only those
    epochs: switching a loss on raises the total by design), with the largest mean gap between `L_cl` under running
    and under batch statistics (`cl_running - cl_batch`, the diagnostics) where the runs measured it: a sign that a
    loss evaluated under one normalisation was lowered by the difference between the two."""
    out = []
    rows = curve_table(records, ["total", "cl", "cl_batch", "cl_running"])
    by_config: dict[str, dict[str, list]] = {}
    for row in rows:
        by_config.setdefault(row["config"], {})[row["key"]] = [c[0] if c else None for c in row["epochs"]]
    for config, curves in by_config.items():
        total, cl = curves.get("total", []), curves.get("cl", [])
        if len(total) < 2 or None in total:
            continue
        guided = [len(cl) == len(total) and cl[i] is not None and t - cl[i] > 1e-9 for i, t in enumerate(total)]
        same_loss = [i for i in range(len(total) - 1) if guided[i] == guided[-1]]
        if not same_loss:
            continue
        lowest = min(same_loss, key=lambda i: total[i])
        if total[-1] >= RISE * total[lowest] and total[-1] - total[lowest] >= 0.01:
            gaps = [
                r - b
                for r, b in zip(curves.get("cl_running", []), curves.get("cl_batch", []), strict=False)
                if r is not None and b is not None
            ]
            out.append(
                {
                    "config": config,
                    "lowest": total[lowest],
                    "lowest_epoch": lowest + 1,
                    "last": total[-1],
                    "epochs": len(total),
                    "mode_gap": max(gaps) if gaps else None,
                }
            )
    return out


def _curve_metrics(cls: str, context: str) -> list[tuple[str, str]]:
    names = labels(cls, context)
    return [(key, names[key]) for key in CURVE_METRICS]


def _figures(
    tables: dict[str, pd.DataFrame],
    records: list[dict[str, Any]],
    throughput: list[dict],
    out_root: Path,
    cls: str,
    context: str,
    sweep: bool,
    method_names: Names,
) -> dict[str, str | None]:
    aggregated = tables["aggregated"]
    metrics = _curve_metrics(cls, context)
    complete = [r for r in records if r["status"] == "complete"]
    drawn, missing = gallery.drawn_or_why(out_root) if not sweep else (None, None)
    return {
        "budget_curves": figures.budget_curves(aggregated, metrics, names=method_names)
        if len(aggregated) and not sweep
        else None,
        "training_curves": figures.training_curves(complete, names=method_names) if complete and not sweep else None,
        "training_diagnostics": figures.training_curves(complete, diagnostics=True, names=method_names)
        if complete and not sweep
        else None,
        "throughput": figures.throughput_chart(throughput, names=method_names) if throughput else None,
        "gallery": drawn,
        "gallery_missing": missing,
    }


def _paper_view(paper: pd.DataFrame, names: dict[str, str]) -> dict[str, Any]:
    paper.index = pd.Index(
        [names.get(key, label) for key, label in zip(paper.attrs["metrics"], paper.index, strict=True)], name="metric"
    )
    return {
        "columns": list(paper.columns),
        "rows": [(index, list(row)) for index, row in zip(paper.index, paper.to_numpy(), strict=True)],
        "footnotes": paper.attrs.get("footnotes", []),
    }


def _regime_tables(
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


def _merged(views: list[tuple[RegimeView, dict[str, pd.DataFrame]]]) -> dict[str, pd.DataFrame]:
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


def _correlation_view(
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


def _content_view(table: pd.DataFrame, records: list[dict[str, Any]], names: dict[str, str]) -> dict[str, Any]:
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


LABEL_METRICS = ("class_without_context", "context_without_class", "object_swapped_accuracy")
"""The shifted groups the annotation-time figure draws (each where measured)."""


def label_figure(suite: SuiteView, tables: dict[str, pd.DataFrame], method_names: Names,
                 names: dict[str, str]) -> str | None:  # fmt: skip
    """The shifted groups against annotation time (`figures.label_curves`), for a suite whose runs pay for more
    than one kind of label (annotation types, group labels); None otherwise."""
    tidy = tables["tidy"]
    if tidy.empty:
        return None
    time = suite.config_label_time(dict(zip(tidy["run_id"], tidy["config"], strict=True)))
    if len({kind for kind, _, _ in time.values()}) < 2:
        return None
    measured = set(tables["aggregated"]["metric"])
    metrics = [(key, names.get(key, key)) for key in LABEL_METRICS if key in measured]
    labels = {config: (kind, seconds) for config, (kind, _, seconds) in time.items()}
    return figures.label_curves(tables["aggregated"], metrics, labels, names=method_names)


def _sweep_figure(
    suite: SuiteView,
    views: list[tuple[RegimeView, dict[str, pd.DataFrame]]],
    names: dict[str, str],
    method_names: Names,
) -> str | None:
    axis = suite.numeric_axis
    if axis is None:
        return None
    token = f"{axis.split('.', 1)[-1]}="
    frames = []
    for regime, tables in views:
        facet = " ".join(p for p in regime.parts if not p.startswith(token))
        frames.append(tables["aggregated"].assign(x=float(regime.settings[axis]), facet=facet))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    metrics = [(key, names[key]) for key in SWEEP_METRICS]
    return figures.sweep_curves(rows, axis, metrics, names=method_names)


def context(out_root: Path, *, n_resamples: int = 2000) -> dict[str, Any]:
    """Everything the template shows, from the folder alone (a partial suite renders too, saying what is missing)."""
    out_root = Path(out_root)
    suite = read_suite(out_root)
    runs = planned(suite, out_root)
    by_rule = select_rules(suite, out_root)  # the suite's rule first; the headline reads its choice
    selections = next(iter(by_rule.values()), {})
    damaged = [p for p in runs if p.state == DAMAGED]
    unreadable = {p.spec.run_id for p in runs if p.state in (DAMAGED, CONFLICT) and p.problem}
    reported_runs = [  # a search: its chosen trials only; never a damaged run
        s for s in reported_specs(suite, out_root, selections) if s.run_id not in unreadable
    ]
    reported = {s.run_id for s in reported_runs}
    records = [
        p.record
        for p in runs
        if p.record is not None and p.state in (COMPLETE, FAILED) and p.spec.run_id in reported
    ]
    counts = {state: sum(p.state == state for p in runs) for state in STATES}
    left_out = [f"run {p.spec.run_id} left out: {p.problem}; {RERUN}" for p in damaged]
    left_out += [f"run {p.spec.run_id} left out: {p.problem}; not touched" for p in runs
                 if p.state == CONFLICT and p.problem]  # fmt: skip
    left_out += [f"{name}: {reason}" for name, reason in folder_problems(out_root)]
    no_checkpoint = [p for p in runs if p.state == COMPLETE and p.problem]
    method_names = Names.of_components(suite.components).merged(Names.of_records(records))
    views = _regime_tables(suite, out_root, reported, n_resamples, method_names)
    sweep = bool(suite.sweep)
    tables = _merged(views)
    tables["trials"] = pd.concat([trials_table(s) for s in by_rule.values()] or [pd.DataFrame()], ignore_index=True)
    paired = tables["paired"]
    context_name = suite.context
    names = metric_names(suite.audited_class, context_name)
    run_level = _run_level(records, ("context_attention_share", "context_area_share", "cam_miou"))
    try:
        references = read_references(out_root)
    except DamagedFile:  # in `left_out` (folder_problems)
        references = {}
    reference_of = {configuration(r)[0]: suite.reference_key(r["run_id"]) for r in records}
    unbiased = {
        c: share for c, key in reference_of.items() if math.isfinite(share := reference_share(references, key))
    }
    regimes = []
    group_subjects = group_sentence_subjects(suite.audited_class, context_name)  # each regime's answer per group
    for regime, regime_tables in views:
        aggregated = regime_tables["aggregated"]
        curves = None
        if sweep and len(aggregated):
            curves = figures.budget_curves(
                aggregated, _curve_metrics(suite.audited_class, context_name), names=method_names
            )
        regime_verdict = verdict(
            aggregated,
            regime_tables["paired"],
            n_seeds=int(aggregated["n_seeds"].min()) if len(aggregated) else 0,
            cls=suite.audited_class,
            context=context_name,
            shares={c: v.get("context_attention_share", math.nan) for c, v in run_level.items()},
            unbiased=next(iter(unbiased.values()), math.nan),
        )
        answer = "no complete baseline and method runs yet"
        if len(regime_tables["paired"]):  # each regime's answer per group, then whether any beats it on all three
            groups = [s for s in regime_verdict["summary"] if s.startswith(group_subjects)]
            beats = beats_baseline_sentence(regime_tables["paired"], suite.audited_class, context_name)
            answer = " ".join([*groups, beats])
        regimes.append(
            {
                "label": regime.label,
                "beats": answer,
                "budget_curves": curves,
                "paper": _paper_view(regime_tables["paper"], names),
                "correlation": _correlation_view(regime_tables, names, method_names),
                "verdict": regime_verdict,
            }
        )

    def name(row: dict[str, Any]) -> str:
        return (f"{row['regime']}: " if sweep else "") + row_name(row)

    significance = [
        r | {"name": name(r), "metric_name": names.get(r["metric"], r["metric"]), "effect": effect(r) or "ns",
             "call": significance_call(r)}
        for r in (paired[paired["metric"].isin(SIGNIFICANCE_METRICS)].to_dict("records") if len(paired) else [])
    ]
    aggregated = tables["aggregated"]
    localisation = []
    localised = [m.name for m in metric_defs.localisation()]  # a plugin's, or one the folder declared, included
    if len(aggregated):
        for config, group in aggregated.groupby("config", sort=False):
            by_metric = group.set_index("metric")
            first = group.iloc[0].to_dict()
            row = {"config": first["label"], "name": name(first)}
            for key in localised:
                row[key] = by_metric.loc[key].to_dict() if key in by_metric.index else None
            row |= run_level.get(str(config), {})
            row["unbiased_share"] = reference_share(references, reference_of.get(str(config)))
            localisation.append(row)
    try:
        measured = read_throughput(out_root, suite, reported_runs)
    except DamagedFile:  # in `left_out` (folder_problems)
        measured = None
    throughput = measured if measured else _throughput([r for r in records if r["status"] == "complete"])
    environment = _environment_view(environments(records))
    attention = next((r["attention"] for r in records if r.get("attention")), None)
    drawn = _figures(
        tables, records, throughput, out_root, suite.audited_class, context_name, sweep, method_names
    )
    drawn["sweep"] = _sweep_figure(suite, views, names, method_names) if sweep else None
    drawn["label_curves"] = label_figure(suite, tables, method_names, names) if not sweep else None
    if sweep:  # a control and its true-mask twin may be in two regimes (a sweep over data.mask_control)
        every, _ = load_runs([out_root], run_ids=reported, short=True)
        tables["content_effect"] = content_effect_table(every, n_resamples=n_resamples, names=method_names)
    return {
        "suite": suite,
        "search": _search_summary(
            suite, selections, method_names, _other_rules(suite, out_root, by_rule, unreadable, n_resamples,
                                                          method_names, names)
        ),
        "counts": counts,
        "total": len(runs),
        "regimes": regimes,
        "sweep": sweep,
        "paper_voc": PAPER_TABLE4,
        "significance": significance,
        "effects": _effects(significance, names),
        "localisation": localisation,
        "localisation_metrics": [(key, names[key]) for key in localised],
        "content": _content_view(tables["content_effect"], records, names),
        "attention_layer": attention,
        "failed": [p for p in runs if p.state == FAILED],
        "missing": [p for p in runs if p.state in (MISSING, RUNNING)],
        "left_out": left_out,
        "no_checkpoint": no_checkpoint,
        "no_checkpoint_note": NO_CHECKPOINT,
        "excluded": tables["excluded"].to_dict("records"),
        "throughput": _throughput_view(throughput, method_names) if throughput else None,
        "throughput_after_suite": measured is not None,
        "figures": drawn,
        "rising_losses": rising_losses([r for r in records if r["status"] == "complete"]),
        "environment": environment,
        "provenance": {
            "gain-bench": __version__,
            "git commit (rendered)": git_commit(),
            "suite file": suite.source,
            "suite digest": suite.digest,
            "seeds": ", ".join(map(str, suite.seeds)),
            "rendered": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
        },
        "_tables": tables,
        "_regime_tables": views,
    }


def write_report(
    out_root: Path | str, output: Path | str | None = None, *, n_resamples: int = 2000
) -> Path:
    """Render `<out_root>/index.html` (or `output`), with `results.csv` (per configuration and metric: mean, sd and
    interval), `results_runs.csv` (per run and metric), `results_paired.csv` (against the baseline),
    `results_correlation.csv` (localisation against robustness), `results_content_effect.csv` (true against
    placebo masks) and `summary.md` (the Markdown summary for a pull request or a CI job) beside it; returns the HTML
    path."""
    return render(out_root, output, n_resamples=n_resamples)[0]


SUMMARY_FILE = "summary.md"  # beside the report: the Markdown a pull request or a CI job shows (`report.summary`)


def render(
    out_root: Path | str, output: Path | str | None = None, *, n_resamples: int = 2000
) -> tuple[Path, dict[str, pd.DataFrame]]:
    """`write_report`, also returning the tables it was built from (for the terminal summary)."""
    out_root = Path(out_root)
    ctx = context(out_root, n_resamples=n_resamples)
    for line in ctx["left_out"]:
        say(f"note: {line}")
    for p in ctx["no_checkpoint"]:
        say(f"note: run {p.spec.run_id}: {p.problem}; {NO_CHECKPOINT}")
    tables = ctx.pop("_tables")
    views = ctx.pop("_regime_tables")
    tables["regime_papers"] = [(regime.label, t["paper"]) for regime, t in views]  # type: ignore[assignment]
    html = _environment().get_template("report.html.j2").render(**ctx)
    path = Path(output) if output else out_root / "index.html"
    write_atomic(path, html)
    suite = ctx["suite"]
    labels = metric_names(suite.audited_class, suite.context)
    write_atomic(path.parent / SUMMARY_FILE, summary.markdown(ctx, views, path, labels))
    written = (("results.csv", "aggregated"), ("results_runs.csv", "tidy"), ("results_paired.csv", "paired"),
               ("results_correlation.csv", "correlation"),
               ("results_content_effect.csv", "content_effect"))  # fmt: skip
    for name, key in written:
        write_atomic(path.parent / name, tables[key].to_csv(index=False))
    if ctx["search"] is not None:
        write_atomic(path.parent / "results_trials.csv", tables["trials"].to_csv(index=False))
    return path, tables
