"""The commands that train, write data or resolve suites (`gain-bench train`, `run`, `list`, `methods`,
`export-voc`) and the post-run steps `gain-bench report` runs where the checkpoints and the data are: the training
stack, imported only by the commands that need it (`benchmark.cli` dispatches here), so that the analysis commands
run in an install without torch.

Bad input (a ValueError: an unknown key, a plugin that does not import, a bad value) propagates to `cli.main`, which
prints it and exits 2, as for every command."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

from benchmark.analyse.report import render
from benchmark.analyse.summary import COLUMNS, format_table, summarise
from benchmark.analyse.text import format_paper_table
from benchmark.core import metric_defs
from benchmark.core.phases import phase
from benchmark.core.plugins import plugin_refs
from benchmark.core.registry import METHODS, MODELS, load_plugins
from benchmark.core.selection import RULES, reported_specs, select_rules, unrecorded_note
from benchmark.core.spec import RunSpec
from benchmark.core.store import COMPLETE, DAMAGED, FAILED, FULL, WriteError, run_state
from benchmark.execute import post_run, runner, suite_file, suites
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.registry import DATASETS
from benchmark.execute.datasets.synthetic import default_root
from benchmark.execute.datasets.voc_export import ExportSettings, export
from benchmark.execute.denormals import flush_from_the_start
from benchmark.execute.gallery_maps import write_gallery
from benchmark.execute.methods.base import BUDGET_WORDS
from benchmark.execute.pretrain import pretrain_spec, start_checkpoint
from benchmark.execute.suites import available, load
from benchmark.execute.train import run


def complete_folder(out_root: Path, data_root: Path | None = None) -> None:
    """The post-run steps for a results folder (as `gain-bench run` takes them after its runs): `suite.json`
    rewritten with the run list the analysis reads, and the gallery's maps computed from the checkpoints."""
    suite = suite_file.read_suite_file(out_root)
    suite_file.write_suite_file(suite, out_root)
    if not suite.sweep:
        try:
            write_gallery(out_root, post_run.gallery_picks(suite, out_root), data_root)
        except (ValueError, OSError) as err:  # e.g. real data not at hand: the report says the gallery is missing
            print(f"warning: the gallery was not written: {err}", file=sys.stderr)


def train_spec(args: argparse.Namespace) -> RunSpec:
    """The one run `gain-bench train` trains, read through the suite schema: the command's options make a one-run
    suite (`suites.from_dict`) and `--set` overrides its keys as `gain-bench run --set` does (`train.lr=1e-3`,
    `model.pretrain.epochs=1`, `seed_scope="full"`), so both commands take the same keys with the same messages.
    `method.KEY` is the method's own key (`methods.<method>.KEY` in a suite)."""
    raw: dict[str, Any] = {
        "name": RunSpec.suite,  # "adhoc"
        "seeds": [args.seed],
        "data": {"name": args.data},
        "model": {"name": args.model},
        "train": {} if args.epochs is None else {"epochs": args.epochs},
        "methods": {args.method: {}},
        "timing": {"enabled": False},
    }
    if args.audited_class:
        raw["audited_class"] = args.audited_class
    counts = METHODS[args.method].budget_labels if args.method in METHODS else None  # what a budget counts
    if args.budget and not counts:
        raise suites.SuiteError(f"--method {args.method} uses no pixel labels (nor group labels): leave --budget out")
    if args.budget or counts:
        if not args.budget:
            raise suites.SuiteError(f"--method {args.method} {BUDGET_WORDS.get(counts, counts)}: give how many "
                                    "images carry them with --budget N, e.g. --budget 78")  # fmt: skip
        raw["budgets"] = [args.budget]
    overrides = [f"methods.{args.method}.{item[len('method.') :]}" if item.startswith("method.") else item
                 for item in args.set or []]  # fmt: skip
    runs = suites.resolve(raw, "gain-bench train's options", overrides).runs()
    if len(runs) != 1:  # e.g. --set search.trials=4 or --set seeds=[0,1]
        raise suites.SuiteError(f"gain-bench train trains one run; these options make {len(runs)}: run them as a "
                                "suite (gain-bench run FILE)")  # fmt: skip
    return runs[0]


def format_row(run_id: str, metrics: dict[str, Any]) -> str:
    width = max(22, len(run_id) + 2)
    header = f"{'run':<{width}}" + "".join(f"{label:>16}" for _, label in COLUMNS)
    cells = "".join(f"{metrics.get(key, float('nan')):>16.3f}" for key, _ in COLUMNS)
    return f"{header}\n{run_id:<{width}}{cells}"


def cmd_train(args: argparse.Namespace) -> int:
    load_plugins(plugin_refs(args.plugin))
    if args.data not in DATASETS:
        DATASETS.entry(args.data)  # the error lists the known datasets
    spec = train_spec(args)
    run_id = spec.run_id
    where = Path(args.out) / "runs" / run_id
    flush_from_the_start(spec.train.flush_denormal)  # before the data: torch's thread pool inherits it
    try:
        start = start_checkpoint(spec, args.data_root, device=args.device)
        record = run(
            spec, Path(args.out), data_root=args.data_root, progress=not args.quiet, device=args.device, start=start
        )
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


def cmd_methods(_: argparse.Namespace) -> int:
    for name, cls in METHODS.items():
        print(f"{name}{f' ({BUDGET_WORDS[cls.budget_labels]})' if cls.budget_labels else ''}")
        for key, h in cls.HPARAMS.items():
            print(f"  {key} = {h.default!r}  {h.doc}; search: {h.describe()}")
    return 0


def _plan_lines(planned: list[Any]) -> list[str]:
    width = max([6, *(len(p.spec.run_id) for p in planned)])
    lines = [f"{'run':<{width}}  {'state':<9} {'action':<8} why"]
    lines += [f"{p.spec.run_id:<{width}}  {p.state:<9} {p.action:<8} {p.reason}" for p in planned]
    return lines


def suite_of(args: argparse.Namespace) -> tuple[suites.Suite, list[Any]]:
    """The suite a `gain-bench run` command line names (with its `--set`, `--seeds` and `--plugin`) and its `--only`
    filters; a bad value is a ValueError (a SuiteError) naming it."""
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise ValueError(f"--seeds {args.seeds!r}: expected integers separated by commas, e.g. 0,1,2") from None
    suite = suites.load(args.suite, args.set or [], seeds, plugins=plugin_refs(args.plugin))
    return suite, runner.parse_filters(args.only or [])


def cache_key(suite: suites.Suite) -> str:
    """16 hex digits that change exactly when what the suite's runs read from the data root changes: the built-in
    data sets they draw (their config digests, generator version included) and the pre-trained starts they name
    (their run ids, which hash the pre-training's configuration). A CI cache of the data root keyed by it is reused
    until one of those changes (docs/ci.md)."""
    made = set()
    for spec in suite.runs():
        if spec.dataset == synthetic.NAME:
            made.add(f"data:{synthetic.data_config(spec.dataset, spec.dataset_params).digest()}")
        if spec.model_params.get("init", "scratch") == "pretrained-synthetic":
            pre = pretrain_spec(spec)
            made |= {f"data:{synthetic.data_config(pre.dataset, pre.dataset_params).digest()}", f"start:{pre.run_id}"}
    return hashlib.sha256("\n".join(sorted(made)).encode()).hexdigest()[:16]


def cmd_run(args: argparse.Namespace) -> int:
    try:
        suite, filters = suite_of(args)
        out = Path(args.out) if args.out else Path("reports") / suite.name
        if args.cache_key:
            print(cache_key(suite))
            return 0
        if args.dry_run:
            planned = runner.plan(suite, out, filters=filters, retry_failed=args.retry_failed)
            print("\n".join(_plan_lines(planned)))
            todo = sum(p.action == "run" for p in planned)
            print(f"{todo} of {len(planned)} runs would run; output: {out}")
            return 0
        # before any parallel torch operation, so that torch's thread pool inherits the flag
        # (benchmark.execute.denormals)
        flush_from_the_start(all(spec.train.flush_denormal for spec in suite.runs()))
        result = runner.run_suite(
            suite,
            out,
            jobs=args.jobs,
            launcher=args.launcher,
            retry_failed=args.retry_failed,
            filters=filters,
            quiet=args.quiet,
            verbose=args.verbose,
            data_root=args.data_root,
            device=args.device,
            threads=args.threads,
        )
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished runs are kept; run the same command again to resume ({out})", file=sys.stderr)
        return 130
    except OSError as err:  # a full disk: a WriteError names the file (a data set being generated: the OSError)
        if not isinstance(err, WriteError) and err.errno not in FULL:
            raise
        return _cannot_write(err, out)
    skipped = [p for p in result.planned if p.action != "run"]
    print(f"suite {suite.name}: {len(result.finished)} run(s) executed, {len(skipped)} skipped -> {out}")
    again = (DAMAGED, COMPLETE)  # a complete run is trained again only when its checkpoint is missing
    for p in result.planned:
        if p.action in ("locked", "conflict") or p.state == "failed" or (p.action == "run" and p.state in again):
            print(f"  {'trained again' if p.action == 'run' else 'skipped'} {p.spec.run_id}: {p.reason}")
    _print_search(out, suite)
    if args.no_report:
        _print_summary(out, suite)
    else:
        try:
            with phase("rendering the report"):
                path, tables = render(out)
        except WriteError as err:
            return _cannot_write(err, out)
        if len(tables["aggregated"]):
            for label, paper in tables["regime_papers"]:
                print((f"regime {label}:\n" if label else "") + format_paper_table(paper))
        print(f"report: {path.resolve()}")
    earlier = [p for p in result.planned if p.action != "run" and p.state in ("failed", "conflict")]
    return 1 if result.failed or earlier else 0


def _cannot_write(err: OSError, out: Path) -> int:
    """A write the disk refused, as one line naming the file (exit status 1): what is finished is kept, and the same
    command resumes once there is space."""
    if isinstance(err, WriteError):
        text = str(err)
    else:
        why = f" ({FULL[err.errno]})" if err.errno in FULL else ""
        text = f"cannot write {err.filename or out}: {err.strerror or err}{why}"
    print(f"gain-bench: error: {text}\nfinished runs are kept; run the same command again to resume ({out})",
          file=sys.stderr)  # fmt: skip
    return 1


def _print_search(out: Path, suite: Any) -> None:
    """A searched suite's rule and, per (method entry, budget), the chosen trial and its hyperparameters."""
    if suite.search is None:
        return
    rule = RULES[suite.search.rule]
    bound = " (an upper bound: it selects on held-out shifted groups)" if rule.upper_bound else ""
    print(f"search: {suite.search.trials} trial(s) per method entry and budget, chosen by {rule.name}{bound}:")
    by_rule = select_rules(suite, out)
    for group, selection in by_rule[rule.name].items():
        chosen = selection.chosen
        if chosen is None:
            print(f"  {group}: no trial complete in every seed yet")
            continue
        values = ", ".join(f"{k}={v}" for k, v in chosen.hparams.items())
        final = "" if selection.final else " (provisional: trials still missing)"
        print(f"  {group}: trial {chosen.trial}, {rule.metric} {chosen.score:.3f}{final}; {values}")
    if note := unrecorded_note(rule.name, by_rule[rule.name]):
        print(f"  note: {note}")
    others = [r for r in by_rule if r != rule.name]
    if others:
        print(f"  the same trials read with {', '.join(others)}: the report, or gain-bench table {out} --rule RULE")


def _print_summary(out: Path, suite: Any) -> None:
    records = []
    for spec in reported_specs(suite, out):
        state, record = run_state(out, spec.run_id, spec.config_hash)  # a damaged or conflicting record: not here
        if record is not None and state in (COMPLETE, FAILED):
            records.append(record)
    if records:
        print(format_table(summarise(records, short=True)))


def cmd_list(args: argparse.Namespace) -> int:
    load_plugins(plugin_refs(args.plugin))
    print("methods:")
    for entry in METHODS.entries():
        pixels = f" {BUDGET_WORDS[entry.obj.budget_labels]};" if entry.obj.budget_labels else ""
        print(f"  {entry.name} ({entry.display};{pixels} {entry.origin})")
    print("datasets:")
    for entry in DATASETS.entries():
        print(f"  {entry.name} ({entry.obj.description}; {entry.origin})")
    print("models:")
    for entry in MODELS.entries():
        print(f"  {entry.name} ({entry.origin})")
    print("metrics:")
    for m in metric_defs.metrics():
        print(f"  {m.name} ({m.kind}; {m.origin})")
    print("suites:")
    for name in available():
        try:
            suite = load(name)
            print(f"  {name}: {len(suite.runs())} runs; {suite.description}")
        except ValueError as err:
            print(f"  {name}: invalid ({err})")
    return 0


def cmd_export_voc(args: argparse.Namespace) -> int:
    """`gain-bench export-voc`: the built-in data as a VOCdevkit tree under the data root."""
    keys = ("image_size", "train_aug", "seg_train", "val", "shifted", "seed", "quality", "rho", "q")
    settings = ExportSettings(**{k: getattr(args, k) for k in keys if getattr(args, k) is not None})
    root = args.data_root if args.data_root is not None else default_root()
    voc = export(root, settings)
    print(f"wrote {voc} ({settings.train_aug} train_aug, {settings.seg_train} with masks, {settings.val} val) and "
          f"{root / 'voc-biased-boats'}; run it with: gain-bench run voc-paper --data-root {root}")  # fmt: skip
    return 0
