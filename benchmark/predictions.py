"""`predictions.csv`: per image, everything needed to recompute a run's metrics and paired tests without the model.

Floats are written with 9 significant digits, which round-trips float32 exactly, so a metric recomputed from the
file equals the recorded one (thresholds and ties included).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

FLOAT = "{:.9g}"


def predictions_csv(preds: dict[str, dict[str, np.ndarray]], classes: tuple[str, ...]) -> str:
    """One row per evaluated image: role, id, pair, context flag, labels, logits and scores of every class, and the
    audited class's attention share on the context and on the object, and the context's area share."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "role",
            "id",
            "row",
            "pair",
            "has_context",
            *[f"label_{c}" for c in classes],
            *[f"logit_{c}" for c in classes],
            *[f"score_{c}" for c in classes],
            "context_share",
            "object_share",
            "context_area",
        ]
    )
    for role, p in preds.items():
        for i in range(len(p["ids"])):
            writer.writerow(
                [
                    role,
                    p["ids"][i],
                    i,
                    int(p["pair"][i]),
                    int(p["has_context"][i]),
                    *[int(v) for v in p["labels"][i]],
                    *[FLOAT.format(v) for v in p["logits"][i]],
                    *[FLOAT.format(v) for v in p["scores"][i]],
                    *[FLOAT.format(p[k][i]) for k in ("context_share", "object_share", "context_area")],
                ]
            )
    return buffer.getvalue()


def read_predictions(path: Path) -> tuple[dict[str, dict[str, np.ndarray]], tuple[str, ...]]:
    """`predictions.csv` back into the per-role arrays `predictions_csv` was written from, and the class names."""
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no predictions")
    classes = tuple(k.removeprefix("label_") for k in rows[0] if k.startswith("label_"))
    out: dict[str, dict[str, np.ndarray]] = {}
    for role in dict.fromkeys(r["role"] for r in rows):
        part = [r for r in rows if r["role"] == role]
        out[role] = {
            "ids": np.asarray([r["id"] for r in part]),
            "pair": np.asarray([int(r["pair"]) for r in part]),
            "has_context": np.asarray([int(r["has_context"]) for r in part], np.int8),
            "labels": np.asarray([[float(r[f"label_{c}"]) for c in classes] for r in part], np.float32),
            "logits": np.asarray([[float(r[f"logit_{c}"]) for c in classes] for r in part], np.float32),
            "scores": np.asarray([[float(r[f"score_{c}"]) for c in classes] for r in part], np.float32),
            **{
                k: np.asarray([float(r[k]) for r in part], np.float32)
                for k in ("context_share", "object_share", "context_area")
            },
        }
    return out, classes


def audited_view(p: dict[str, np.ndarray], class_index: int) -> dict[str, np.ndarray]:
    """The per-image arrays of the audited class that `metrics.audit_metrics` reads."""
    return {
        "score": p["scores"][:, class_index],
        "logit": p["logits"][:, class_index],
        "label": p["labels"][:, class_index],
        "has_context": p["has_context"],
        "context_share": p["context_share"],
        "context_area": p["context_area"],
        "pair": p["pair"],
    }
