"""Command line: `gain-bench train ...` runs one run on the built-in data and prints its row of the paper's table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from benchmark.methods import METHODS
from benchmark.models import MODELS
from benchmark.spec import RunSpec, TrainSettings
from benchmark.summary import COLUMNS


def parse_value(text: str) -> Any:
    """`--set` values: JSON where it parses (numbers, true/false, lists), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


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
        value = parse_value(raw)
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

    spec_kwargs: dict[str, Any] = {"method": args.method, "budget": args.budget, "seed": args.seed, "model": args.model}
    train: dict[str, Any] = {}
    if args.epochs is not None:
        train["epochs"] = args.epochs
    try:
        apply_overrides(spec_kwargs, train, args.set or [])
        spec = RunSpec(train=TrainSettings.from_dict(train), **spec_kwargs)
        run_id = spec.run_id  # resolving it validates the method, model and data keys
    except ValueError as err:
        print(f"gain-bench: error: {err}", file=sys.stderr)
        return 2
    where = Path(args.out) / "runs" / run_id
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
    if m.get("val_degenerate") or m.get("shifted_degenerate"):
        print("warning: the classifier's boat decision is constant on a split (degenerate)")
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from benchmark.tables import build_tables, format_paper_table, write_csv

    try:
        tables = build_tables(args.dirs)
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
    print(format_paper_table(tables["paper"]))
    if getattr(args, "csv", None):
        paths = write_csv(tables, args.csv)
        print(f"tables written: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_methods(_: argparse.Namespace) -> int:
    for name, cls in METHODS.items():
        print(f"{name}{' (uses pixel labels)' if cls.uses_pixel_labels else ''}")
        for key, h in cls.HPARAMS.items():
            print(f"  {key} = {h.default!r}  {h.doc}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gain-bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate one run on the built-in biased-boat data")
    t.add_argument("--method", required=True, choices=sorted(METHODS))
    t.add_argument("--budget", type=int, default=0, help="pixel-labelled boat images (gain_ext): 9, 23, 78, 200, 1464")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--model", default="small_cnn", choices=sorted(MODELS))
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
    tb = sub.add_parser("table", help="the paper's table: mean [95% bootstrap interval] over seeds per configuration")
    tb.add_argument("dirs", nargs="+", type=Path, help="output roots holding runs/*/record.json")
    tb.add_argument("--csv", type=Path, metavar="DIR", help="also write the tidy, aggregated, paired and paper tables")
    tb.set_defaults(func=cmd_table)
    m = sub.add_parser("methods", help="list the methods and their hyperparameters")
    m.set_defaults(func=cmd_methods)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise ValueError(main())
