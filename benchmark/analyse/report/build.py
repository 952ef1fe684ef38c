"""The HTML report of a results folder: `context` reads the folder (tables, records, figures, the views of
`views`), `render` writes `index.html` (one self-contained file, figures inline) and `summary.md` beside it."""

from __future__ import annotations

import math
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from benchmark import __version__
from benchmark.analyse.cells import interval_cell, plural
from benchmark.analyse.losses import rising_losses
from benchmark.analyse.names import Names
from benchmark.analyse.paired import significance as significance_call
from benchmark.analyse.report import figures, gallery, summary
from benchmark.analyse.report.verdict import (
    PAPER_TABLE4,
    beats_baseline_sentence,
    effect,
    group_sentence_subjects,
    p_text,
    verdict,
)
from benchmark.analyse.report.views import (
    SIGNIFICANCE_METRICS,
    content_view,
    correlation_view,
    effects,
    environment_view,
    merged_tables,
    other_rules,
    paper_view,
    record_throughput,
    run_level_means,
    search_summary,
    tables_by_regime,
    throughput_view,
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
from benchmark.analyse.runs import load_runs, row_name
from benchmark.analyse.studies import content_effect_table
from benchmark.analyse.summary import configuration, environments
from benchmark.core import metric_defs
from benchmark.core.metric_defs import labels
from benchmark.core.phases import say
from benchmark.core.provenance import git_commit
from benchmark.core.selection import reported_specs, select_rules, trials_table
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
    views = tables_by_regime(suite, out_root, reported, n_resamples, method_names)
    sweep = bool(suite.sweep)
    tables = merged_tables(views)
    tables["trials"] = pd.concat([trials_table(s) for s in by_rule.values()] or [pd.DataFrame()], ignore_index=True)
    paired = tables["paired"]
    context_name = suite.context
    names = labels(suite.audited_class, context_name)
    run_level = run_level_means(records, ("context_attention_share", "context_area_share", "cam_miou"))
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
                "paper": paper_view(regime_tables["paper"], names),
                "correlation": correlation_view(regime_tables, names, method_names),
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
    localised = [m.name for m in metric_defs.localisation(set(aggregated["metric"]) if len(aggregated) else set())]
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
    throughput = measured if measured else record_throughput([r for r in records if r["status"] == "complete"])
    environment = environment_view(environments(records))
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
        "search": search_summary(
            suite, selections, method_names, other_rules(suite, out_root, by_rule, unreadable, n_resamples,
                                                          method_names, names)
        ),
        "counts": counts,
        "total": len(runs),
        "regimes": regimes,
        "sweep": sweep,
        "paper_voc": PAPER_TABLE4,
        "significance": significance,
        "effects": effects(significance, names),
        "localisation": localisation,
        "localisation_metrics": [(key, names[key]) for key in localised],
        "content": content_view(tables["content_effect"], records, names),
        "attention_layer": attention,
        "failed": [p for p in runs if p.state == FAILED],
        "missing": [p for p in runs if p.state in (MISSING, RUNNING)],
        "left_out": left_out,
        "no_checkpoint": no_checkpoint,
        "no_checkpoint_note": NO_CHECKPOINT,
        "excluded": tables["excluded"].to_dict("records"),
        "throughput": throughput_view(throughput, method_names) if throughput else None,
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
        "regime_tables": views,
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
    views = ctx.pop("regime_tables")
    tables["regime_papers"] = [(regime.label, t["paper"]) for regime, t in views]  # type: ignore[assignment]
    html = _environment().get_template("report.html.j2").render(**ctx)
    path = Path(output) if output else out_root / "index.html"
    write_atomic(path, html)
    suite = ctx["suite"]
    names = labels(suite.audited_class, suite.context)
    write_atomic(path.parent / SUMMARY_FILE, summary.markdown(ctx, views, path, names))
    written = (("results.csv", "aggregated"), ("results_runs.csv", "tidy"), ("results_paired.csv", "paired"),
               ("results_correlation.csv", "correlation"),
               ("results_content_effect.csv", "content_effect"))  # fmt: skip
    for name, key in written:
        write_atomic(path.parent / name, tables[key].to_csv(index=False))
    if ctx["search"] is not None:
        write_atomic(path.parent / "results_trials.csv", tables["trials"].to_csv(index=False))
    return path, tables
