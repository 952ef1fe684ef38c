"""`predictions.csv`: per image, everything needed to recompute a run's metrics and paired tests without the model.

Floats are written with 9 significant digits, which round-trips float32 exactly, so a metric recomputed from the
file equals the recorded one (thresholds and ties included). Columns added later (the localisation metrics, the CAM
segmentation counts) are optional when reading, so older files still load; the CAM counts are written for the roles
that have them (val) and left empty elsewhere.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from benchmark.core.metric_defs import localisation

FLOAT = "{:.9g}"


def localisation_columns() -> tuple[str, ...]:
    """Per-image localisation metrics of the audited class's map (NaN where the image has no object mask): the
    columns of `metric_defs.localisation()`, a plugin's included."""
    return tuple(m.column for m in localisation() if m.column)


def predictions_csv(preds: dict[str, dict[str, np.ndarray]], classes: tuple[str, ...]) -> str:
    """One row per evaluated image: role, id, pair, context flag, labels, logits and scores of every class, the
    audited class's attention share on the context and on the object, the context's area share, the localisation
    metrics (`localisation_columns`) where computed, and the per-label CAM segmentation counts `cam_inter_<label>` /
    `cam_union_<label>` (labels `background`, *classes) where computed."""
    local = [k for k in localisation_columns() if any(k in p for p in preds.values())]
    cam = any("cam_intersection" in p for p in preds.values())
    labels = ("background", *classes)
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
            *local,
            *([f"cam_inter_{c}" for c in labels] + [f"cam_union_{c}" for c in labels] if cam else []),
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
                    *[FLOAT.format(p[k][i]) if k in p else "" for k in local],
                    *(_counts(p, i, len(labels)) if cam else []),
                ]
            )
    return buffer.getvalue()


def _counts(p: dict[str, np.ndarray], i: int, n_labels: int) -> list[int | str]:
    if "cam_intersection" not in p:
        return [""] * (2 * n_labels)
    return [int(v) for v in p["cam_intersection"][i]] + [int(v) for v in p["cam_union"][i]]


REQUIRED = ("role", "id", "row", "pair", "has_context", "context_share", "object_share", "context_area")
INTEGER = ("row", "pair", "has_context")


def row_counts(preds: dict[str, dict[str, np.ndarray]]) -> dict[str, int]:
    """Rows per role of the `predictions.csv` written from `preds`: what a run's record keeps (`ROWS_KEY`) so that
    a file cut exactly at the end of a row is found short."""
    return {role: len(p["ids"]) for role, p in preds.items()}


ROWS_KEY = "predictions_rows"
"""The record key of `row_counts` (a record written before it has none)."""


def predictions_problem(path: Path, written: dict[str, int] | None = None) -> str | None:
    """What keeps `predictions.csv` from being read whole (None: nothing): missing, empty, cut off in a row
    (truncated), or garbled (not text, a row with another number of fields than the header, a number that is not
    one, a role whose rows do not count up from 0). `written` (the record's `ROWS_KEY`) are the rows per role the run
    wrote: a file cut exactly at the end of a row, or between roles, is then truncated too; without them (a record
    written before they were kept) such a file reads as whole, as nothing in the file says how many rows it had."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return "missing (the record says complete)"
    except OSError as err:
        return f"unreadable ({err.strerror})"
    if not data.strip():
        return f"truncated (empty: {len(data)} bytes)"
    try:
        text = data.decode()
    except UnicodeDecodeError as err:
        return f"garbled (not UTF-8 text at byte {err.start})"
    lines = text.split("\n")
    if lines[-1] != "":
        return f"truncated (it ends within row {len(lines) - 1}, after {len(data)} bytes)"
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        return f"garbled ({err})"
    header = rows[0]
    absent = [c for c in REQUIRED if c not in header]
    if absent or not any(c.startswith("score_") for c in header):
        return f"garbled (its header lacks {', '.join(absent) or 'the score columns'})"
    if len(rows) < 2:
        return "truncated (a header and no rows)"
    numeric = [i for i, c in enumerate(header) if c not in ("role", "id")]
    role_at, row_at = header.index("role"), header.index("row")
    counts: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=1):
        if len(row) != len(header):
            return f"garbled (row {number} has {len(row)} fields, the header {len(header)})"
        for i in numeric:
            if row[i] and not _is_number(row[i], header[i] in INTEGER):
                return f"garbled (row {number}: {header[i]} = {row[i][:20]!r} is not a number)"
        role, expected = row[role_at], counts.get(row[role_at], 0)
        if row[row_at] != str(expected):
            return f"garbled (row {number}: {role} row {row[row_at]!r} where {expected} comes next)"
        counts[role] = expected + 1
    short = {role: n for role, n in (written or {}).items() if counts.get(role, 0) != n}
    if short:
        role, n = next(iter(short.items()))
        return (f"truncated ({role} has {counts.get(role, 0)} rows where the run wrote {n}; it ends after "
                f"{len(data)} bytes)")  # fmt: skip
    return None


def _is_number(text: str, integer: bool) -> bool:
    try:
        int(text) if integer else float(text)
    except ValueError:
        return False
    return True


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
        for k in localisation_columns():
            if k in rows[0] and all(r[k] != "" for r in part):
                out[role][k] = np.asarray([float(r[k]) for r in part], np.float32)
        labels = ("background", *classes)
        if f"cam_inter_{labels[0]}" in rows[0] and all(r[f"cam_inter_{labels[0]}"] != "" for r in part):
            for key, prefix in (("cam_intersection", "cam_inter_"), ("cam_union", "cam_union_")):
                out[role][key] = np.asarray([[int(r[prefix + c]) for c in labels] for r in part], np.int64)
    return out, classes


def audited_view(p: dict[str, np.ndarray], class_index: int) -> dict[str, np.ndarray]:
    """The per-image arrays of the audited class that `metrics.audit_metrics` reads (plus every class's scores and
    labels for mAP, and whatever localisation and CAM columns the role has)."""
    optional = (*localisation_columns(), "cam_intersection", "cam_union")
    return {
        "score": p["scores"][:, class_index],
        "logit": p["logits"][:, class_index],
        "label": p["labels"][:, class_index],
        "has_context": p["has_context"],
        "context_share": p["context_share"],
        "context_area": p["context_area"],
        "pair": p["pair"],
        "scores_all": p["scores"],
        "labels_all": p["labels"],
        **{k: p[k] for k in optional if k in p},
    }
