"""The throughput table's arithmetic: each configuration's cost (time per image over the baseline's) against the
baseline figure it is measured against, paired round by round where the runner timed it so (`with_costs`). No
drawing here: `figures.throughput_chart` draws it and the report's table shows it."""

from __future__ import annotations

import re
from typing import Any

from benchmark.core.spec import BASELINE

THROUGHPUT_KEYS = (
    ("train_images_per_s", "training step (images/s)"),
    ("attention_images_per_s", "attention maps (images/s)"),
)


def row_method(row: dict[str, Any]) -> str:
    if row.get("method"):
        return str(row["method"])
    match = re.match(r"[^\s-]+", str(row.get("config", "")))
    return match.group(0) if match else ""


def row_budget(row: dict[str, Any]) -> int:
    if "budget" in row:
        return int(row["budget"])
    match = re.match(r"[^\s-]+-(\d+)", str(row.get("config", "")))
    return int(match.group(1)) if match else 0


# throughput key -> (the cost key: time per image over the baseline's, the baseline's images/s it is measured against)
COSTS = {
    "train_images_per_s": ("train_cost_ratio", "baseline_train_images_per_s"),
    "attention_images_per_s": ("attention_cost_ratio", "baseline_attention_images_per_s"),
}


def with_costs(rows: list[dict[str, Any]], *, baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Each row with, per throughput key, its cost (time per image over the baseline's) and the baseline's images/s
    that cost is measured against, so that cost = baseline images/s / images/s holds in every row, table and chart.

    A row timed round by round with its baseline (`post_run.measure_throughput`: `train_cost_ratio` and
    `attention_speed_ratio` of those rounds) keeps its paired ratio, and its baseline figure is the baseline's speed in
    those same rounds (`paired` True), which differs from the baseline's own row (the median over all its pairings).
    Otherwise the cost is against the baseline row (`paired` False); None where a figure or the baseline is missing.
    """
    base = next((r for r in rows if row_method(r) == baseline), None)
    out = []
    for row in rows:
        row = dict(row)
        paired = isinstance(row.get("train_cost_ratio"), int | float) and isinstance(
            row.get("attention_speed_ratio"), int | float
        )
        if paired:
            row["attention_cost_ratio"] = 1.0 / row["attention_speed_ratio"] if row["attention_speed_ratio"] else None
        for key, (cost, against) in COSTS.items():
            value = row.get(key)
            if not isinstance(value, int | float) or value <= 0:
                row[cost] = row[against] = None
            elif paired:
                row[against] = value * row[cost] if row[cost] else None
            else:
                reference = base.get(key) if base else None
                ok = isinstance(reference, int | float) and reference > 0
                row[against] = float(reference) if ok else None
                row[cost] = float(reference) / float(value) if ok else None
        row["paired"] = paired and row_method(row) != baseline
        out.append(row)
    return out
