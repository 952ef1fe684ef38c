"""Mean and standard deviation over seeds of every configuration's metrics, read from run records on disk."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmark.spec import RunSpec, configuration_key
from benchmark.store import read_record

COLUMNS = [
    ("val_accuracy", "val acc"),
    ("class_without_context", "boat w/o water"),
    ("context_without_class", "water w/o boat"),
    ("overall", "overall"),
    ("shifted_auroc", "AUROC"),
    ("context_attention_share", "attn on water"),
    ("context_flip_rate", "ctx flip"),
]


def load_records(roots: list[Path]) -> list[dict[str, Any]]:
    """Every `runs/*/record.json` under the given output roots."""
    return [read_record(p) for root in roots for p in sorted(Path(root).glob("runs/*/record.json"))]


def configuration(record: dict[str, Any], short: bool = False) -> tuple[str, str]:
    """(key, label) of a run's configuration: everything in its spec but the seed and the suite's name. `short`
    labels name only the method, budget and method parameters (enough within one suite)."""
    run_spec = RunSpec.from_dict(record["spec"])
    return configuration_key(record["spec"]), run_spec.method_label if short else run_spec.label


def summarise(records: list[dict[str, Any]], short: bool = False) -> list[dict[str, Any]]:
    """One row per configuration: seeds done, seeds failed, and mean/sd of each column over complete runs."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    labels: dict[str, str] = {}
    for record in records:
        key, labels[key] = configuration(record, short)
        groups[key].append(record)
    rows = []
    for config_key, group in groups.items():
        label = labels[config_key]
        done = [r for r in group if r["status"] == "complete"]
        row: dict[str, Any] = {"config": label, "seeds": len(done), "failed": len(group) - len(done)}
        for key, _ in COLUMNS:
            values = [r["metrics"][key] for r in done if key in r["metrics"] and math.isfinite(r["metrics"][key])]
            row[key] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            )
        rows.append(row | {"_order": _order(group[0]["spec"], label)})
    rows.sort(key=lambda r: r.pop("_order"))
    return rows


def _order(spec: dict[str, Any], label: str) -> tuple[int, int, str]:
    """Baseline first, then the registry's order of methods, budgets ascending."""
    from benchmark.methods import METHODS

    names = list(METHODS)
    return (names.index(spec["method"]) if spec["method"] in names else len(names), spec["budget"], label)


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    lines = [f"{'config':<{width}} {'n':>3}" + "".join(f"{label:>16}" for _, label in COLUMNS)]
    for row in rows:
        cells = "".join(f"{row[k][0]:>9.3f} ±{row[k][1]:.3f}" if row[k] else f"{'-':>16}" for k, _ in COLUMNS)
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(f"{row['config']:<{width}} {row['seeds']:>3}{cells}{failed}")
    return "\n".join(lines)
