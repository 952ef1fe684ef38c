"""A check on the training curves the report flags: configurations whose mean total loss rose by the last epoch
(`rising_losses`), read from the records' curves alone."""

from __future__ import annotations

from typing import Any

from benchmark.analyse.summary import curve_table

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
