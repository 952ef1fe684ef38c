"""Mean and standard deviation over seeds of every configuration's metrics, read from run records on disk."""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

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


def configuration(record: dict[str, Any]) -> str:
    """A readable label of everything but the seed: method, budget, non-default parameters, data and model."""
    spec = record["spec"]
    label = spec["method"] + (f"-{spec['budget']}" if spec["budget"] else "")
    extras = {**spec["method_params"], **spec["dataset_params"], **spec["model_params"]}
    if extras:
        label += " " + json.dumps(extras, sort_keys=True, separators=(",", "="))
    return label


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration: seeds done, seeds failed, and mean/sd of each column over complete runs."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[configuration(record)].append(record)
    rows = []
    for label, group in groups.items():
        done = [r for r in group if r["status"] == "complete"]
        row: dict[str, Any] = {"config": label, "seeds": len(done), "failed": len(group) - len(done)}
        for key, _ in COLUMNS:
            values = [r["metrics"][key] for r in done if key in r["metrics"]]
            row[key] = (
                (statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0) if values else None
            )
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    width = max([len("config"), *(len(r["config"]) for r in rows)])
    lines = [f"{'config':<{width}} {'n':>3}" + "".join(f"{label:>16}" for _, label in COLUMNS)]
    for row in rows:
        cells = "".join(f"{row[k][0]:>9.3f} ±{row[k][1]:.3f}" if row[k] else f"{'-':>16}" for k, _ in COLUMNS)
        failed = f" ({row['failed']} failed)" if row["failed"] else ""
        lines.append(f"{row['config']:<{width}} {row['seeds']:>3}{cells}{failed}")
    return "\n".join(lines)
