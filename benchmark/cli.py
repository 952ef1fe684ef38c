"""Command line: `gain-bench run SUITE` runs a suite (resumable) and renders its report; `gain-bench train ...` runs one
run; `status`, `report`, `table`, `list` and `methods` read what is there."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from benchmark.curves import DIAGNOSTICS, LOSS_PARTS
from benchmark.denormals import flush_from_the_start
from benchmark.registry import DATASETS, METHODS, MODELS, load_plugins
from benchmark.spec import BUILTIN_DATA, RunSpec, TrainSettings
from benchmark.suites import parse_value
from benchmark.summary import (
    COLUMNS,
    compare_runs,
    curve_table,
    format_comparison,
    format_curves,
    format_table,
    load_records,
    summarise,
)


def apply_overrides(spec_kwargs: dict[str, Any], train: dict[str, Any], overrides: list[str]) -> None:
    """Apply `section.key=value` overrides; sections: method, model, data, train."""
    sections = {"method": "method_params", "model": "model_params", "data": "dataset_params"}
    train_keys = {f.name for f in dataclasses.fields(TrainSettings)}
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(
                f"--set {item!r}: expected SECTION.KEY=VALUE with SECTION one of {', '.join([*sections, 'train'])}"
            )
        value = parse_value(raw)  # the suites' parser: TOML values, else the plain string
        if section == "train":
            if name not in train_keys:
                raise ValueError(
                    f"--set {item!r}: unknown train key {name!r}; allowed: {', '.join(sorted(train_keys))}"
                )
            train[name] = value
        elif section in sections:
            spec_kwargs.setdefault(sections[section], {})[name] = value
        else:
            raise ValueError(f"--set {item!r}: unknown section {section!r}; allowed: {', '.join([*sections, 'train'])}")


def format_row(run_id: str, metrics: dict[str, Any]) -> str:
    width = max(22, len(run_id) + 2)
    header = f"{'run':<{width}}" + "".join(f"{label:>16}" for _, label in COLUMNS)
    cells = "".join(f"{metrics.get(key, float('nan')):>16.3f}" for key, _ in COLUMNS)
    return f"{header}\n{run_id:<{width}}{cells}"


def cmd_train(args: argparse.Namespace) -> int:
    from benchmark.train import run

    try:
        load_plugins(_plugin_refs(args.plugin))
        if args.data not in DATASETS:
            DATASETS.entry(args.data)  # the error lists the known datasets
    except ValueError as err:
        return _error(err)
    spec_kwargs: dict[str, Any] = {"method": args.method, "budget": args.budget, "seed": args.seed, "model": args.model}
    spec_kwargs |= {"dataset": args.data, "audited_class": args.audited_class or DATASETS[args.data].default_class}
    train: dict[str, Any] = {}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    try:
        apply_overrides(spec_kwargs, train, args.set or [])
        spec = RunSpec(train=TrainSettings.from_dict(train), **spec_kwargs)
        run_id = spec.run_id  # resolving it validates the method, model and data keys
    except ValueError as err:
        return _error(err)
    where = Path(args.out) / "runs" / run_id
    flush_from_the_start(spec.train.flush_denormal)  # before the data: torch's thread pool inherits it
    try:
        record = run(spec, Path(args.out), data_root=args.data_root, progress=not args.quiet, device=args.device)
    except (ValueError, FileNotFoundError) as err:
        print(f"gain-bench: error: {err}", file=sys.stderr)
        return 1 if (where / "record.json").exists() else 2
    if record["status"] != "complete":
        print(f"run {run_id} failed: {record['error']}\nrecord: {where / 'record.json'}", file=sys.stderr)
        return 1
    seconds = record["timings"]["train_seconds"] + record["timings"]["eval_seconds"]
    print(f"run {run_id} ({spec.label}) complete in {seconds:.1f} s -> {where}")
    print(format_row(run_id, record["metrics"]))
    m = record["metrics"]
    if "data" in record:
        _print_data_notes(record["data"], m)
    if m.get("val_degenerate") or m.get("shifted_degenerate"):
        print("warning: the classifier's boat decision is constant on a split (degenerate)")
    return 0


def _print_data_notes(data: dict[str, Any], metrics: dict[str, Any]) -> None:
    """A real-data run's val mAP, its budget and the notes and skipped files of its record."""
    budget = data["budget"]
    manifest = f", manifest {budget['manifest']}" if budget["manifest"] else ""
    print(
        f"val mAP {metrics.get('val_map', float('nan')):.3f}; budget pool: {budget['pool_size']} images "
        f"(data.pool = {budget['pool']}){manifest}"
    )
    for note in data["notes"] + ([budget["manifest_error"]] if budget.get("manifest_error") else []):
        print(f"note: {note}")
    skipped = data["skipped_images"]
    if skipped["count"]:
        names = ", ".join(f["path"] for f in skipped["files"][:3]) + (" ..." if skipped["count"] > 3 else "")
        print(f"skipped {skipped['count']} bad image(s) (data.skip_bad_images; all in record.json): {names}")


def _chosen_runs(dirs: list[Path]) -> set[str] | None:
    """Of a folder holding a searched suite (its `suite.json` has `[search]`), only the chosen trials' runs; every
    run of the other folders. None when no folder holds a search."""
    from benchmark.runner import read_suite_file
    from benchmark.selection import reported_specs

    searched: dict[Path, set[str]] = {}
    for folder in map(Path, dirs):
        if (folder / "suite.json").is_file() and (suite := read_suite_file(folder)).search is not None:
            searched[folder] = {s.run_id for s in reported_specs(suite, folder)}
            print(f"{folder}: a hyperparameter search; the trials chosen by {suite.search.rule} only", file=sys.stderr)
    if not searched:
        return None
    others = {d.name for folder in map(Path, dirs) if folder not in searched for d in folder.glob("runs/*")}
    return set().union(*searched.values()) | others


def cmd_table(args: argparse.Namespace) -> int:
    from benchmark.tables import build_tables, format_config_rows, format_paper_table, write_csv

    try:
        tables = build_tables(args.dirs, run_ids=_chosen_runs(args.dirs))
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
        return 2
    print(format_config_rows(tables) if args.rows else format_paper_table(tables["paper"]))
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
    rows = curve_table(load_records(args.dirs), keys)
    if not rows:
        print(f"gain-bench: no complete run with a curve under {', '.join(map(str, args.dirs))}", file=sys.stderr)
        return 2
    print(format_curves(rows, spread=args.spread))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    rows = compare_runs(load_records([args.first]), load_records([args.second]))
    if not rows:
        print(f"gain-bench: no complete run of {args.first} was made again in {args.second}", file=sys.stderr)
        return 2
    print(format_comparison(rows))
    return 0


def cmd_methods(_: argparse.Namespace) -> int:
    for name, cls in METHODS.items():
        print(f"{name}{' (uses pixel labels)' if cls.uses_pixel_labels else ''}")
        for key, h in cls.HPARAMS.items():
            print(f"  {key} = {h.default!r}  {h.doc}; search: {h.describe()}")
    return 0


def _error(err: Exception) -> int:
    print(f"gain-bench: error: {err}", file=sys.stderr)
    return 2


def _plan_lines(planned: list[Any]) -> list[str]:
    width = max([6, *(len(p.spec.run_id) for p in planned)])
    lines = [f"{'run':<{width}}  {'state':<9} {'action':<8} why"]
    lines += [f"{p.spec.run_id:<{width}}  {p.state:<9} {p.action:<8} {p.reason}" for p in planned]
    return lines


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark import runner, suites

    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        return _error(ValueError(f"--seeds {args.seeds!r}: expected integers separated by commas, e.g. 0,1,2"))
    try:
        suite = suites.load(args.suite, args.set or [], seeds, plugins=_plugin_refs(args.plugin))
        filters = runner.parse_filters(args.only or [])
        out = Path(args.out) if args.out else Path("reports") / suite.name
        if args.dry_run:
            planned = runner.plan(suite, out, filters=filters, retry_failed=args.retry_failed)
            print("\n".join(_plan_lines(planned)))
            todo = sum(p.action == "run" for p in planned)
            print(f"{todo} of {len(planned)} runs would run; output: {out}")
            return 0
        # before any parallel torch operation, so that torch's thread pool inherits the flag (benchmark.denormals)
        flush_from_the_start(all(spec.train.flush_denormal for spec in suite.runs()))
        result = runner.run_suite(
            suite,
            out,
            jobs=args.jobs,
            launcher=args.launcher,
            retry_failed=args.retry_failed,
            filters=filters,
            quiet=args.quiet,
            data_root=args.data_root,
            device=args.device,
            threads=args.threads,
        )
    except (ValueError, FileNotFoundError) as err:
        return _error(err)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept; run the same command again to resume ({out})", file=sys.stderr)
        return 130
    skipped = [p for p in result.planned if p.action != "run"]
    print(f"suite {suite.name}: {len(result.finished)} run(s) executed, {len(skipped)} skipped -> {out}")
    for p in skipped:
        if p.action in ("locked", "conflict") or p.state == "failed":
            print(f"  skipped {p.spec.run_id}: {p.reason}")
    _print_search(out, suite)
    if args.no_report:
        _print_summary(out, suite)
    else:
        from benchmark.report import render
        from benchmark.tables import format_paper_table

        path, tables = render(out, data_root=args.data_root)
        if len(tables["aggregated"]):
            for label, paper in tables["regime_papers"]:
                print((f"regime {label}:\n" if label else "") + format_paper_table(paper))
        print(f"report: {path.resolve()}")
    earlier = [p for p in result.planned if p.action != "run" and p.state in ("failed", "conflict")]
    return 1 if result.failed or earlier else 0


def _print_search(out: Path, suite: Any) -> None:
    """A searched suite's rule and, per (method entry, budget), the chosen trial and its hyperparameters."""
    from benchmark.selection import RULES, select_suite

    if suite.search is None:
        return
    rule = RULES[suite.search.rule]
    bound = " (an upper bound: it selects on held-out shifted groups)" if rule.upper_bound else ""
    print(f"search: {suite.search.trials} trial(s) per method entry and budget, chosen by {rule.name}{bound}:")
    for group, selection in select_suite(suite, out).items():
        chosen = selection.chosen
        if chosen is None:
            print(f"  {group}: no trial complete in every seed yet")
            continue
        values = ", ".join(f"{k}={v}" for k, v in chosen.hparams.items())
        final = "" if selection.final else " (provisional: trials still missing)"
        print(f"  {group}: trial {chosen.trial}, {rule.metric} {chosen.score:.3f}{final}; {values}")


def _print_summary(out: Path, suite: Any) -> None:
    from benchmark.selection import reported_specs
    from benchmark.store import read_record

    records = []
    for spec in reported_specs(suite, out):
        path = out / "runs" / spec.run_id / "record.json"
        if path.is_file():
            records.append(read_record(path))
    if records:
        print(format_table(summarise(records, short=True)))


def cmd_status(args: argparse.Namespace) -> int:
    from benchmark import runner

    try:
        suite = runner.read_suite_file(args.dir)
    except ValueError as err:
        return _error(err)
    planned = runner.plan(suite, args.dir)
    counts: dict[str, int] = {}
    for p in planned:
        counts[p.state] = counts.get(p.state, 0) + 1
    print(
        f"suite {suite.name} ({suite.source}): {len(planned)} runs: " + ", ".join(f"{n} {k}" for k, n in counts.items())
    )
    if args.verbose:
        print("\n".join(_plan_lines(planned)))
    for p in planned:
        if p.state == "failed" and p.record:
            print(f"  failed {p.spec.run_id}: {p.record.get('error')}")
    known = {p.spec.run_id for p in planned}
    extra = sorted(d.name for d in Path(args.dir).glob("runs/*") if d.is_dir() and d.name not in known)
    if extra:
        print(
            f"{len(extra)} run folder(s) not in the suite as it is now (earlier configurations, not reported): "
            + ", ".join(extra[:5])
            + (" ..." if len(extra) > 5 else "")
        )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from benchmark import runner  # the post-run steps, where the checkpoints and the data are
    from benchmark.gallery_maps import write_gallery
    from benchmark.report import write_report

    try:
        suite = runner.read_suite_file(args.dir)
        if not suite.sweep:
            try:
                write_gallery(args.dir, runner.gallery_picks(suite, args.dir), args.data_root)
            except (ValueError, OSError) as err:  # e.g. real data not at hand: the report says the gallery is missing
                print(f"warning: the gallery was not written: {err}", file=sys.stderr)
        path = write_report(args.dir, args.output, args.data_root)
    except (ValueError, FileNotFoundError) as err:
        return _error(err)
    print(f"report: {path.resolve()}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from benchmark.suites import available, load

    try:
        load_plugins(_plugin_refs(args.plugin))
    except ValueError as err:
        return _error(err)
    print("methods:")
    for entry in METHODS.entries():
        pixels = " uses pixel labels;" if entry.obj.uses_pixel_labels else ""
        print(f"  {entry.name} ({entry.display};{pixels} {entry.origin})")
    print("datasets:")
    for entry in DATASETS.entries():
        print(f"  {entry.name} ({entry.obj.description}; {entry.origin})")
    print("models:")
    for entry in MODELS.entries():
        print(f"  {entry.name} ({entry.origin})")
    print("suites:")
    for name in available():
        try:
            suite = load(name)
            print(f"  {name}: {len(suite.runs())} runs; {suite.description}")
        except ValueError as err:
            print(f"  {name}: invalid ({err})")
    return 0


def _plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE|FILE.py",
        help="import a plugin that registers methods, models or datasets first (repeatable; see docs/plugins.md)",
    )


def _plugin_refs(refs: list[str] | None) -> list[str]:
    """`--plugin` values as every process imports them: files made absolute (against the working folder)."""
    return [str(Path(r).resolve()) if r.endswith(".py") or "/" in r else r for r in refs or []]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gain-bench", description=__doc__)
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
        metavar="SECTION.KEY=VALUE",
        help="override a setting, e.g. method.alpha=0.3, train.lr=1e-3, data.rho=0.95, "
        "model.attention_layer=block3 (repeatable)",
    )
    t.add_argument("--out", default="reports/adhoc", help="output root (default: reports/adhoc)")
    t.add_argument("--data-root", type=Path, help="data root (default: $GAIN_BENCH_DATA or ./datasets)")
    t.add_argument("--device", default="cpu")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)
    tb = sub.add_parser("table", help="the paper's table: mean [95%% bootstrap interval] over seeds per configuration")
    tb.add_argument("dirs", nargs="+", type=Path, help="output roots holding runs/*/record.json")
    tb.add_argument("--csv", type=Path, metavar="DIR", help="also write the tidy, aggregated, paired and paper tables")
    tb.add_argument(
        "--rows",
        action="store_true",
        help="one line per configuration (method parameters in its name) with the paired difference to the baseline",
    )
    tb.set_defaults(func=cmd_table)
    cu = sub.add_parser("curves", help="per-epoch loss parts and training diagnostics, mean over seeds")
    cu.add_argument("dirs", nargs="+", type=Path, help="output roots holding runs/*/record.json")
    cu.add_argument("--keys", help="comma-separated curve keys (default: every loss part and diagnostic)")
    cu.add_argument("--spread", action="store_true", help="also the smallest and largest seed's value")
    cu.set_defaults(func=cmd_curves)
    cp = sub.add_parser("compare", help="the same runs made twice: mean and largest |difference| of each metric")
    cp.add_argument("first", type=Path, help="an output root holding runs/*/record.json")
    cp.add_argument("second", type=Path, help="another one, holding runs with the same run ids")
    cp.set_defaults(func=cmd_compare)
    m = sub.add_parser("methods", help="list the methods and their hyperparameters")
    m.set_defaults(func=cmd_methods)
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
    r.add_argument("--quiet", action="store_true", help="no progress bars; one line per finished run (for CI logs)")
    r.add_argument("--no-report", action="store_true", help="do not write index.html at the end")
    r.add_argument("--data-root", type=Path, help="data root (default: $GAIN_BENCH_DATA or ./datasets)")
    r.add_argument("--device", help="override the suite's device (cpu, cuda, cuda:N)")
    _plugin_option(r)
    r.set_defaults(func=cmd_run)
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
    rp.set_defaults(func=cmd_report)
    ls = sub.add_parser("list", help="methods, datasets, models and suites")
    _plugin_option(ls)
    ls.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
