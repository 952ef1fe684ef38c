"""Command line: `gain-bench run SUITE` runs a suite (resumable) and renders its report; `gain-bench train ...` runs one
run; `status`, `report`, `table`, `list` and `methods` read what is there."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys
import tempfile
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmark.analyse.cells import TERMINAL_WIDTH
from benchmark.analyse.claims import FAILS, INCONCLUSIVE, evaluate, summary_line
from benchmark.analyse.names import Names
from benchmark.analyse.report import SUMMARY_FILE, write_report
from benchmark.analyse.report.build import label_figure
from benchmark.analyse.report.figures import write_png
from benchmark.analyse.results import ResultsError, planned, read_suite, status_lines
from benchmark.analyse.rule_ranks import format_rule_ranks, rule_rank_agreement
from benchmark.analyse.runs import PLACEBOS
from benchmark.analyse.summary import (
    compare_runs,
    curve_table,
    format_comparison,
    format_curves,
    load_records,
    provenance,
    provenance_text,
)
from benchmark.analyse.tables import build_tables, write_csv
from benchmark.analyse.text import (
    BACKGROUND_ROW_METRICS,
    format_config_rows,
    format_content_effect,
    format_correlation,
    format_paper_table,
    format_rank_agreement,
    localisation_rows,
)
from benchmark.analyse.versions import format_versions, versions_table
from benchmark.core.curves import DIAGNOSTICS, LOSS_PARTS
from benchmark.core.metric_defs import labels as metric_labels
from benchmark.core.selection import RULES, reported_specs, select_suite, unrecorded_note
from benchmark.core.spec import BASELINE, BUILTIN_DATA
from benchmark.core.store import FULL, SUITE_FILE, WriteError

TABLE_VIEWS = ("paper", "rows", "backgrounds", "localisation", "content", "correlation", "ranks", "rules", "labels")


def _chosen_runs(dirs: list[Path], rule: str | None = None) -> tuple[set[str] | None, list[str]]:
    """Of a folder holding a searched suite (its `suite.json` has `[search]`), only the runs of the trials chosen by
    `rule` (default: the suite's `[search] rule`); every run of the other folders. None when no folder holds a
    search. Also a line per searched folder naming the rule that chose its numbers."""
    searched: dict[Path, set[str]] = {}
    lines = []
    for folder in map(Path, dirs):
        if (folder / SUITE_FILE).is_file() and (suite := read_suite(folder)).search is not None:
            chosen_by = rule or suite.search.rule
            selections = select_suite(suite, folder, chosen_by)
            searched[folder] = {s.run_id for s in reported_specs(suite, folder, selections)}
            kind = "an upper bound" if RULES[chosen_by].upper_bound else "realistic"
            default = "" if rule else "; the suite's [search] rule, --rule reads another"
            lines.append(f"{folder}: search trials chosen by {chosen_by} ({kind}{default})")
            if note := unrecorded_note(chosen_by, selections):
                print(f"gain-bench: warning: {folder}: {note}", file=sys.stderr)
    if rule and not searched:
        raise ValueError(f"--rule {rule}: none of {', '.join(map(str, dirs))} holds a searched suite (no [search])")
    if not searched:
        return None, lines
    others = {d.name for folder in map(Path, dirs) if folder not in searched for d in folder.glob("runs/*")}
    return set().union(*searched.values()) | others, lines


def _label_cells(dirs: list[Path], tidy: Any) -> dict[str, str]:
    """`table --view labels`: per configuration, what its labels are and the annotation time they took
    ("67 box, 22 min"), from each folder's `suite.json` (`SuiteView.label_time`)."""
    config_of = dict(zip(tidy["run_id"], tidy["config"], strict=True))
    cells = {}
    for folder in map(Path, dirs):
        if (folder / SUITE_FILE).is_file():
            for config, (kind, n, seconds) in read_suite(folder).config_label_time(config_of).items():
                cells[config] = f"{n} {kind}, {seconds / 60:.0f} min"
    return cells


def _rule_ranks(dirs: list[Path], markdown: bool) -> int:
    """`table --view rules`: the rank agreement across a searched folder's selection rules (`rule_ranks`)."""
    if len(dirs) != 1:
        print("gain-bench: error: --view rules reads one searched results folder", file=sys.stderr)
        return 2
    try:
        table, trials = rule_rank_agreement(Path(dirs[0]))
    except (ValueError, ResultsError) as err:
        print(f"gain-bench: error: {err}", file=sys.stderr)
        return 2
    print(format_rule_ranks(table, trials, markdown))
    if markdown:
        print("\n" + provenance_text(provenance(load_records([dirs[0]]))))
    return 0


def _warn_left_out(reasons: Iterable[str]) -> None:
    """One warning line per damaged run file a command left out (`gain-bench run` trains such a run again)."""
    for reason in reasons:
        print(f"gain-bench: warning: left out (damaged): {reason}; `gain-bench run` trains it again", file=sys.stderr)


def cmd_table(args: argparse.Namespace) -> int:
    if getattr(args, "control", None) and getattr(args, "view", None) != "content":
        print("gain-bench: error: --control: only with --view content (the placebo the true masks are held against)",
              file=sys.stderr)  # fmt: skip
        return 2
    view = getattr(args, "view", None) or ("rows" if args.rows else "paper")
    baseline = getattr(args, "baseline", None)
    if baseline and view not in ("rows", "backgrounds"):
        print("gain-bench: error: --baseline: only with --rows or --view rows|backgrounds (the views that print the "
              "paired difference)", file=sys.stderr)  # fmt: skip
        return 2
    if view == "rules":
        return _rule_ranks(args.dirs, getattr(args, "markdown", False))
    try:
        chosen, chosen_by = _chosen_runs(args.dirs, getattr(args, "rule", None))
        if only := getattr(args, "method", None):  # the runs of these methods, among those chosen
            records = [r for r in load_records(args.dirs) if r.get("spec", {}).get("method") in only]
            chosen = {r["run_id"] for r in records if chosen is None or r["run_id"] in chosen}
        tables = build_tables(args.dirs, run_ids=chosen, baseline=baseline or BASELINE)
    except ValueError as err:
        print(f"gain-bench: error: {err}", file=sys.stderr)
        return 2
    if tables["tidy"].empty:
        excluded = len(tables["excluded"])
        print(
            f"gain-bench: no complete run records under {', '.join(map(str, args.dirs))} (expected runs/*/record.json"
            f" beside predictions.csv{f'; {excluded} run(s) excluded' if excluded else ''})",
            file=sys.stderr,
        )
        for line in chosen_by:  # a search whose rule has chosen nothing (yet, or not recorded)
            print(f"gain-bench: {line}: none chosen yet", file=sys.stderr)
        return 2
    _warn_left_out(tables["excluded"].loc[tables["excluded"]["kind"] == "damaged", "reason"])
    methods = sorted(set(tables["tidy"]["method"]))
    if baseline and baseline not in methods:
        print(f"gain-bench: error: --baseline {baseline}: no run of that method under "
              f"{', '.join(map(str, args.dirs))}; its methods: {', '.join(methods)}", file=sys.stderr)  # fmt: skip
        return 2
    markdown = getattr(args, "markdown", False)
    width = None if getattr(args, "wide", False) else TERMINAL_WIDTH
    print({
        "paper": lambda: format_paper_table(tables["paper"], markdown, width),
        "rows": lambda: format_config_rows(tables, markdown=markdown, baseline=baseline),
        "labels": lambda: format_config_rows(tables, markdown=markdown, baseline=baseline,
                                             extra=("labels", _label_cells(args.dirs, tables["tidy"]))),
        "backgrounds": lambda: format_config_rows(tables, BACKGROUND_ROW_METRICS, markdown=markdown, baseline=baseline),
        "localisation": lambda: format_config_rows(tables, localisation_rows(), markdown=markdown, baseline=baseline),
        "content": lambda: format_content_effect(tables["content_effect"], markdown, args.control or "shuffled"),
        "correlation": lambda: format_correlation(tables["correlation"], markdown),
        "ranks": lambda: format_rank_agreement(tables["rank_agreement"], markdown),
    }[view]())
    if plot := getattr(args, "plot", None):  # the annotation-time figure, as a PNG file
        if view != "labels":
            print("gain-bench: error: --plot: only with --view labels", file=sys.stderr)
            return 2
        dirs = [Path(d) for d in args.dirs if (Path(d) / SUITE_FILE).is_file()]
        view_of = read_suite(dirs[0]) if dirs else None
        figure = label_figure(view_of, tables, Names.of_components(view_of.components), metric_labels(
            view_of.audited_class, view_of.context)) if view_of else None  # fmt: skip
        if figure is None:
            print("gain-bench: error: --plot: the runs pay for fewer than two kinds of label (annotation types, group "
                  "labels): no annotation-time figure to draw", file=sys.stderr)  # fmt: skip
            return 2
        write_png(figure, plot)
        print(f"figure written: {plot}")
    for line in chosen_by:  # the rule that chose every number of a search
        print(("\n" if markdown else "") + line)
    if markdown:
        chosen = set(tables["tidy"]["run_id"])
        print("\n" + provenance_text(provenance([r for r in load_records(args.dirs) if r["run_id"] in chosen])))
    if getattr(args, "csv", None):
        paths = write_csv(tables, args.csv)
        print(f"tables written: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    known = [*LOSS_PARTS, *DIAGNOSTICS]
    keys = args.keys.split(",") if args.keys else known
    unknown = [k for k in keys if k not in known]
    if unknown:
        print(
            f"gain-bench: error: unknown curve key(s) {', '.join(unknown)}; allowed: {', '.join(known)}",
            file=sys.stderr,
        )
        return 2
    damaged: list[str] = []
    rows = curve_table(load_records(args.dirs, damaged), keys)
    _warn_left_out(damaged)
    if args.only:
        labels = {row["config"] for row in rows}
        missing = [label for label in args.only if label not in labels]
        if missing:
            raise ValueError(f"--only {', '.join(map(repr, missing))}: no such configuration; there are: "
                             f"{', '.join(sorted(labels))}")
        rows = [row for row in rows if row["config"] in args.only]
    if not rows:
        print(f"gain-bench: no complete run with a curve under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    print(format_curves(rows, spread=args.spread))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    if args.paired:
        table = versions_table(args.first, args.second)
        if table.empty:
            print(f"gain-bench: no configuration of {args.second} has runs of the same seeds in {args.first}",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(format_versions(table, args.markdown))
        return 0
    damaged: list[str] = []
    ignore = tuple(getattr(args, "ignore", []))
    rows = compare_runs(load_records([args.first], damaged), load_records([args.second], damaged), ignore=ignore)
    _warn_left_out(damaged)
    if not rows:
        print(f"gain-bench: no complete run of {args.first} was made again in {args.second}", file=sys.stderr)
        return 2
    print(format_comparison(rows))
    return 0


def _error(err: Exception) -> int:
    print(f"gain-bench: error: {err}", file=sys.stderr)
    return 2


def cmd_status(args: argparse.Namespace) -> int:
    try:
        suite = read_suite(args.dir)
    except ValueError as err:
        return _error(err)
    runs = planned(suite, args.dir)
    counts: dict[str, int] = {}
    for p in runs:
        counts[p.state] = counts.get(p.state, 0) + 1
    print(f"suite {suite.name} ({suite.source}): {len(runs)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if args.verbose:
        width = max([6, *(len(p.spec.run_id) for p in runs)])
        print("\n".join([f"{'run':<{width}}  state", *(f"{p.spec.run_id:<{width}}  {p.state}" for p in runs)]))
    for line in status_lines(suite, args.dir, runs):  # failed and damaged runs, damaged files, with the reason
        print(line)
    known = {p.spec.run_id for p in runs}
    extra = sorted(d.name for d in Path(args.dir).glob("runs/*") if d.is_dir() and d.name not in known)
    if extra:
        print(
            f"{len(extra)} run folder(s) not in the suite as it is now (earlier configurations, not reported): "
            + ", ".join(extra[:5])
            + (" ..." if len(extra) > 5 else "")
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    try:
        steps = _lazy("report")
    except ImportError as err:  # an analysis-only install: render what the folder holds
        print(f"note: no post-run steps here ({err}); rendering the results folder as it is", file=sys.stderr)
        steps = None
    if steps is not None and (Path(args.dir) / SUITE_FILE).is_file():
        try:
            steps.complete_folder(args.dir, args.data_root)
        except ValueError as err:  # e.g. a plugin of the suite not installed here: the folder still renders
            print(f"note: the post-run steps were skipped ({err}); rendering the results folder as it is",
                  file=sys.stderr)  # fmt: skip
    path = write_report(args.dir, args.output)  # its errors are main's: bad input exit 2, a full disk exit 1
    if args.summary:  # stdout carries the Markdown alone, e.g. `>> "$GITHUB_STEP_SUMMARY"`
        print((path.parent / SUMMARY_FILE).read_text(), end="")
        print(f"report: {path.resolve()}", file=sys.stderr)
        return 0
    print(f"report: {path.resolve()}")
    return 0


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE|FILE.py",
        help="import a plugin that registers methods, models or datasets first (repeatable; see docs/plugins.md)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gain-bench",
        description=__doc__,
        epilog="Exit status: 0 done; 2 bad input (one line on stderr); 1 a run failed, `docs --check` found a problem, "
        "a file could not be written (a full disk; the file is named), or an internal error: one line on stderr "
        "names it and the file its traceback was written to, "
        "$TMPDIR/gain-bench-<time>-<pid>.traceback (please report it).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate one run (the built-in biased boats unless --data says)")
    t.add_argument("--method", required=True, help="a registered method (`gain-bench list`), e.g. gain")
    t.add_argument(
        "--data",
        default=BUILTIN_DATA,
        help="dataset (default synthetic-boats); its keys with --set data.KEY=VALUE, e.g. data.biased_split=DIR",
    )
    t.add_argument("--audited-class", help="the class audited (default: the dataset's: boat, or waterbird)")
    t.add_argument("--budget", type=int, default=0, help="pixel-labelled boat images (gain_ext): 9, 23, 78, 200, 1464")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--model", default="small_cnn", help="a registered model (`gain-bench list`)")
    _plugin_option(t)
    t.add_argument("--epochs", type=int)
    t.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any key a suite takes, e.g. train.lr=1e-3, data.rho=0.95, model.attention_layer=block3, "
        'seed_scope="full"; method.KEY for the method\'s own, e.g. method.alpha=0.3 (repeatable)',
    )
    t.add_argument("--out", default="reports/adhoc", help="output root (default: reports/adhoc)")
    t.add_argument("--data-root", type=Path, help="data root (default: $GAIN_BENCH_DATA or ./datasets)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    tb = sub.add_parser("table", help="the paper's table: mean [95%% bootstrap interval] over seeds per configuration")
    tb.add_argument("dirs", nargs="+", type=Path, help="output roots holding runs/*/record.json")
    tb.add_argument("--csv", type=Path, metavar="DIR", help="also write the tidy, aggregated, paired and paper tables")
    tb.add_argument("--plot", type=Path, metavar="FILE.png",
                    help="with --view labels: also write the shifted groups against annotation time as a PNG")
    tb.add_argument(
        "--rows",
        action="store_true",
        help="one line per configuration (method parameters in its name) with the paired difference to the baseline",
    )
    tb.add_argument(
        "--view",
        choices=TABLE_VIEWS,
        help="what to print: paper (the paper's layout, default), rows (as --rows), backgrounds (the shifted groups "
        "beside the background swaps, per configuration), localisation (every localisation metric, a plugin's "
        "included, per configuration), content (true minus shuffled masks, or --control), "
        "correlation (localisation against robustness), ranks (Kendall tau between the metrics' rankings), rules (a "
        "searched folder: Kendall tau across metrics x selection rules), labels (as rows, with each configuration's "
        "labels and their annotation time)",
    )
    tb.add_argument(
        "--baseline",
        metavar="METHOD",
        help=f"with --rows or --view rows|backgrounds: hold every configuration against the configuration of this "
        f"method with its setting, e.g. gain (default {BASELINE}, the Grad-CAM baseline)",
    )
    tb.add_argument(
        "--control",
        choices=PLACEBOS,
        help="with --view content: the placebo masks the true masks are held against (default shuffled, the content "
        "effect; the others where the suite ran them)",
    )
    tb.add_argument(
        "--markdown",
        action="store_true",
        help="a Markdown table with a line of provenance (runs, dates, commit, versions): what findings pages show",
    )
    tb.add_argument(
        "--wide",
        action="store_true",
        help=f"the paper's layout in one block however wide (default: blocks of columns that fit {TERMINAL_WIDTH})",
    )
    tb.add_argument(
        "--method",
        action="append",
        metavar="NAME",
        help="only the runs of this method (repeatable; keep the baseline's to pair against it; Holm's adjustment then "
        "runs over the configurations shown), e.g. --method gradcam --method jtt",
    )
    tb.add_argument(
        "--rule",
        choices=tuple(RULES),
        help="of a searched suite's folder, the trials chosen by this selection rule (default: the suite's "
        "[search] rule; every trial records every rule, docs/usage.md)",
    )
    tb.set_defaults(func=cmd_table)
    cu = sub.add_parser("curves", help="per-epoch loss parts and training diagnostics, mean over seeds")
    cu.add_argument("dirs", nargs="+", type=Path, help="output roots holding runs/*/record.json")
    cu.add_argument("--keys", help="comma-separated curve keys (default: every loss part and diagnostic)")
    cu.add_argument("--spread", action="store_true", help="also the smallest and largest seed's value")
    cu.add_argument(
        "--only", action="append", metavar="CONFIGURATION", help="only this configuration, e.g. 'gain masked_bn=batch' "
        "(as the table names it; repeatable)"
    )
    cu.set_defaults(func=cmd_curves)
    cp = sub.add_parser("compare", help="the same runs made twice: mean and largest |difference| of each metric")
    cp.add_argument("first", type=Path, help="an output root holding runs/*/record.json (e.g. main's)")
    cp.add_argument("second", type=Path, help="another one, holding runs with the same run ids (e.g. a pull request's)")
    cp.add_argument("--paired", action="store_true",
                    help="per configuration both hold and per shifted group, AUROC and val accuracy: second - first "
                    "over the seeds both have, its interval, the Holm-adjusted sign-flip p and whether it moved beyond "
                    "the seeds' noise (the same configurations trained by two versions of the code)")  # fmt: skip
    cp.add_argument("--markdown", action="store_true", help="with --paired: a Markdown table")
    cp.add_argument("--except", dest="ignore", action="append", default=[], metavar="KEY",
                    help="pair runs whose specs agree but for this suite key, e.g. data.generator_version "
                    "(repeatable): what else the key changed")  # fmt: skip
    cp.set_defaults(func=cmd_compare)
    cl = sub.add_parser(
        "claims",
        help="evaluate the claims a findings page declares on its results folder: holds, fails or inconclusive",
        description="Every claim of each page's ```toml claims block (docs/usage.md#claims-checked-against-their-"
        "tables), evaluated on the page's results folder: one line per claim beginning holds, fails or "
        "inconclusive (with the reason). Exit 1 when a claim fails (with --strict, also when one is inconclusive).",
    )
    cl.add_argument("pages", nargs="+", type=Path,
                    help="findings pages (findings/verdict.md), or claims files of their own (claims.toml: the block's "
                    "TOML alone, e.g. a CI gate)")  # fmt: skip
    cl.add_argument("--root", type=Path, default=Path("."), help="the repository (default: the working folder)")
    cl.add_argument("--folder", type=Path,
                    help="evaluate on this results folder instead of the one the page names (e.g. a CI job's)")
    cl.add_argument("--strict", action="store_true", help="exit 1 also when a claim is inconclusive (a CI gate "
                    "that needs every claim to hold)")  # fmt: skip
    cl.set_defaults(func=cmd_claims)
    sub.add_parser("methods", help="list the methods and their hyperparameters")
    r = sub.add_parser("run", help="run a suite: every method x budget x seed, resumable")
    r.add_argument("suite", help="a suite file, or the name of one in suites/ (quick, smoke, ...)")
    r.add_argument("--out", help="results folder (default: reports/<suite name>)")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a suite key, e.g. train.epochs=2, methods.gain.alpha=0.3, data.rho=0.95 (repeatable)",
    )
    r.add_argument("--seeds", help="comma-separated seeds, replacing the suite's, e.g. 0,1,2")
    r.add_argument(
        "--only",
        action="append",
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="run a subset: method=gain_ext,budget=78 (keys: method, budget, seed, trial; a repeated key ORs)",
    )
    r.add_argument("--jobs", type=int, default=1, help="runs at once (local processes; torch threads split)")
    r.add_argument(
        "--launcher",
        default="inprocess",
        choices=["inprocess", "local", "submitit-local", "slurm"],
        help="where runs execute: this process (or a pool with --jobs), submitit's local executor, SLURM",
    )
    r.add_argument("--threads", type=int, help="torch threads per run (default: all cores / jobs)")
    r.add_argument("--retry-failed", action="store_true", help="run failed runs again")
    r.add_argument("--dry-run", action="store_true", help="list what would run and what is done, run nothing")
    r.add_argument(
        "--cache-key",
        action="store_true",
        help="print a key of what the runs read from the data root (the built-in data sets and pre-trained starts "
        "they need) and run nothing: a CI cache of the data root keyed by it (docs/ci.md)",
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars; one line per finished run (for CI logs)")
    r.add_argument("--verbose", action="store_true", help="also a line as each run starts")
    r.add_argument("--no-report", action="store_true", help="do not write index.html at the end")
    r.add_argument("--data-root", type=Path, help="data root (default: $GAIN_BENCH_DATA or ./datasets)")
    r.add_argument("--device", help="override the suite's device (cpu, cuda, cuda:N)")
    _plugin_option(r)
    st = sub.add_parser("status", help="what a suite results folder holds: complete, failed, running, missing")
    st.add_argument("dir", type=Path)
    st.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    st.set_defaults(func=cmd_status)
    rp = sub.add_parser("report", help="render DIR/index.html and DIR/results.csv from a suite results folder")
    rp.add_argument("dir", type=Path)
    rp.add_argument("-o", "--output", type=Path, help="the HTML file (default: DIR/index.html)")
    rp.add_argument(
        "--data-root", type=Path, help="data root for the gallery (default: $GAIN_BENCH_DATA or ./datasets)"
    )
    rp.add_argument(
        "--summary",
        action="store_true",
        help="print the report's Markdown summary (summary.md: the verdict per shifted group, each configuration "
        "against the baseline, failed runs) on stdout, for a pull request or a CI job summary",
    )
    rp.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="methods, datasets, models, metrics and suites")
    _plugin_option(ls)
    ex = sub.add_parser(
        "export-voc",
        help="write the built-in biased boats as a VOCdevkit tree (VOC 2012's sizes at 224 px by default)",
        description="Write the built-in generator's biased boats as DATA_ROOT/VOCdevkit/VOC2012 (JPEGs, XML "
        "annotations, palette PNG masks, split lists, SBD's train_aug list) and DATA_ROOT/voc-biased-boats (the "
        "shifted groups, as folders and as a CSV manifest with masks), for `gain-bench run voc-paper`.",
    )
    ex.add_argument("--data-root", type=Path, help="where to write (default: $GAIN_BENCH_DATA or ./datasets)")
    sizes = {"image_size": "224", "train_aug": "10582", "seg_train": "1464", "val": "1449", "shifted": "300"}
    for key, default in (sizes | {"seed": "0", "quality": "95 (JPEG)"}).items():
        ex.add_argument(f"--{key.replace('_', '-')}", type=int, dest=key, help=f"default: {default}")
    for key, default in (("rho", "0.99: P(water | boat)"), ("q", "0.05: P(water | no boat)")):
        ex.add_argument(f"--{key}", type=float, help=f"default: {default}")
    dc = sub.add_parser(
        "docs",
        help="rewrite the repository's generated docs (--check: fail on stale pages, broken links, bad commands)",
        description="Rewrite the generated pages and blocks of the repository's documentation (the suite reference, "
        "the methods' hyperparameters, the metrics; with --tables also the findings' tables whose results folders "
        "are here), or with --check list every stale page, hand-edited block, broken link and shown command that "
        "would not run, and exit 1 if there is one.",
    )
    dc.add_argument("pages", nargs="*", help="rewrite only these pages, e.g. findings/quick.md (default: every page)")
    dc.add_argument("--check", action="store_true", help="change nothing; exit 1 on any problem (every page)")
    dc.add_argument(
        "--tables", action="store_true", help="also run the findings' `gain-bench table` blocks on their results"
    )
    dc.add_argument("--root", type=Path, default=Path("."), help="the repository (default: the working folder)")
    return parser


def cmd_claims(args: argparse.Namespace) -> int:
    failed = False
    stop = (FAILS, INCONCLUSIVE) if args.strict else (FAILS,)
    for page in args.pages:
        results = evaluate(page, args.root, folder=args.folder)
        print(f"{page}: {summary_line(results)}")
        for result in results:
            print(result.line())
        failed |= any(r.unexpected or (r.status in stop and r.status != FAILS) for r in results)
    return 1 if failed else 0


TRAINING_COMMANDS = ("train", "run", "list", "methods", "export-voc", "docs")


def _lazy(command: str) -> Any:
    """The module of a command that needs the training stack (torch): `benchmark.commands`, or `benchmark.docs` for
    `docs`; imported when the command runs, so that `report`, `table`, `status`, `curves` and `compare` run in an
    install without torch (an optional dependency, not a cycle: neither imports the commands of this module)."""
    return importlib.import_module("benchmark.docs" if command == "docs" else "benchmark.commands")


def traceback_path() -> Path:
    """Where an internal error's traceback goes: `$TMPDIR/gain-bench-<UTC time>-<pid>.traceback` (the system's
    temporary folder; one file per failed process, never inside a results folder)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(tempfile.gettempdir()) / f"gain-bench-{stamp}-{os.getpid()}.traceback"


def _internal_error(err: Exception, argv: list[str]) -> int:
    """An exception no command handles (a bug of ours or of a plugin): its traceback written to `traceback_path()`,
    one line on stderr naming the exception and the file, exit status 1."""
    text = "".join(traceback.format_exception(err))
    first = (str(err).strip().splitlines() or [""])[0]
    what = f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__
    path = traceback_path()
    try:
        path.write_text(f"{shlex.join(['gain-bench', *argv])}\n\n{text}")
    except OSError as write_err:  # nowhere to write it: the traceback itself, rather than nothing
        print(text, end="", file=sys.stderr)
        print(f"gain-bench: internal error: {what} (the traceback above could not be written to {path}: "
              f"{write_err}; please report it)", file=sys.stderr)  # fmt: skip
        return 1
    print(f"gain-bench: internal error: {what} (traceback: {path}; please report it)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run a command; bad input (a ValueError, a missing file, a file that may not be overwritten) is one line on
    stderr and exit status 2; any other exception (an internal error) is one line naming it and the file its
    traceback was written to (`traceback_path()`), and exit status 1."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in TRAINING_COMMANDS:
            return int(getattr(_lazy(args.command), f"cmd_{args.command.replace('-', '_')}")(args))
        return int(args.func(args))
    except WriteError as err:  # a full disk is not bad input: the file named, nothing half-written, exit 1
        _error(err)
        return 1
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        return _error(err)
    except BrokenPipeError:  # the reader went away (`gain-bench methods | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:  # the last resort: one line and a file, not a wall of Python
        if isinstance(err, OSError) and err.errno in FULL:  # a write outside the results folder's own writers
            _error(err)
            return 1
        return _internal_error(err, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
