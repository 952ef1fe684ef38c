"""The gallery's post-run step: the audited class's Grad-CAM on the same images for every configuration of a suite,
computed where the checkpoints and the data are and written into the results folder (`gallery.json` and
`gallery.npz`), so that the report (`benchmark.report.gallery`) draws it from the folder alone.

Rows are the suite's configurations (one run each: the lowest complete seed with a checkpoint), columns the same
images for every row: `per_group` each of "boat without water", "water without boat" and in-distribution val images
of a boat on water; per cell the image, its map at the model's input resolution and the audited class's score.
"""

from __future__ import annotations

import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.attention import inference_cam
from benchmark.datasets import registry
from benchmark.datasets.tensors import TensorSplit
from benchmark.models import SplitModel
from benchmark.registry import METHODS
from benchmark.spec import RunSpec
from benchmark.store import write_atomic
from benchmark.train import load_trained

GALLERY_JSON = "gallery.json"
GALLERY_NPZ = "gallery.npz"

# (role, header); the header's {cls}/{ctx} are the audited class and its context.
GROUPS = (
    ("class_without_context", "{cls} without {ctx}"),
    ("context_without_class", "{ctx} without {cls}"),
    ("val", "{cls} on {ctx} (val, in distribution)"),
)
def choose_images(
    splits: dict[str, TensorSplit], class_index: int, *, per_group: int = 4, seed: int | None = None
) -> dict[str, list[int]]:
    """Row indices per role of `GROUPS`: the first `per_group` by image id, or a `seed`ed draw (shown in id order).

    From `val` only images of the audited class on its context qualify. Deterministic, so every configuration and
    every rendering shows the same images.
    """
    chosen: dict[str, list[int]] = {}
    for role, _ in GROUPS:
        if role not in splits:
            chosen[role] = []
            continue
        split = splits[role]
        rows = np.arange(len(split))
        if role == "val":
            keep = (split.labels[:, class_index] > 0.5) & split.has_context
            rows = rows[keep.numpy()]
        rows = np.array(sorted(rows, key=lambda r: split.ids[r]), dtype=int)
        if seed is not None and len(rows) > per_group:
            rows = np.sort(
                np.random.default_rng([seed, zlib.crc32(role.encode())]).choice(rows, per_group, replace=False)
            )
            rows = np.array(sorted(rows, key=lambda r: split.ids[r]), dtype=int)
        chosen[role] = [int(r) for r in rows[:per_group]]
    return chosen


def _load_splits(spec: RunSpec, data_root: Path | None) -> dict[str, TensorSplit]:
    """Only the evaluation splits the gallery shows (the training split is the slow part of `train.load_data`); a
    real dataset without a biased split has val only."""
    return registry.load(spec.dataset, spec.dataset_params, data_root, roles=tuple(role for role, _ in GROUPS))


def _name(spec: RunSpec, seed: bool = False) -> str:
    """The configuration's name, one method parameter per line (row labels stay narrow), and the seed shown."""
    display = METHODS.entry(spec.method).display if spec.method in METHODS else spec.method
    params = (f"{k}={v}" for k, v in sorted(spec.method_params.items()))
    lines = [display + (f"-{spec.budget}" if spec.budget else ""), *params]
    return "\n".join(lines + ([f"seed {spec.seed}"] if seed else []))


def _maps(model: SplitModel, split: TensorSplit, rows: list[int], class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and Grad-CAM maps of the audited class for `rows`, on CPU in eval mode, as `train.predict` takes them."""
    batch = split.batch(torch.tensor(rows, dtype=torch.long), mean=model.mean, std=model.std)
    _, logits, maps = inference_cam(model, batch["image"], torch.full((len(rows),), class_index))
    return torch.sigmoid(logits[:, class_index]).detach().numpy(), maps.numpy()


def gallery_data(
    out_root: Path,
    picked: list[tuple[RunSpec, RunSpec | None, str]],
    data_root: Path | None,
    *,
    per_group: int = 4,
    seed: int | None = None,
) -> dict[str, Any] | None:
    """Scores, maps and images for the gallery, per configuration (`picked`: its first spec, its representative run
    or None, and why not); None when no configuration has a run with a checkpoint, or the data has nothing to
    compare on. A dataset that cannot be loaded raises its DataError (the caller says why there is no gallery)."""
    out_root = Path(out_root)
    if not any(spec is not None for _, spec, _ in picked):
        return None
    data: dict[str, tuple[dict[str, TensorSplit], dict[str, list[int]]]] = {}
    rows: list[dict[str, Any]] = []
    header: dict[str, list[str]] = {}
    audited = next(spec for _, spec, _ in picked if spec is not None).audited_class
    first_run = next(s for _, s, _ in picked if s is not None)
    context = registry.context_name(first_run.dataset, first_run.dataset_params)
    for first, spec, note in picked:
        if spec is None:
            rows.append({"name": _name(first), "run_id": None, "note": note})
            continue
        data_key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
        if data_key not in data:
            splits = _load_splits(spec, data_root)
            class_index = splits["val"].classes.index(spec.audited_class)
            data[data_key] = (splits, choose_images(splits, class_index, per_group=per_group, seed=seed))
            if not header:
                for role, title in GROUPS:
                    ids = [splits[role].ids[i] for i in data[data_key][1][role]]
                    if ids:
                        header[title.format(cls=audited, ctx=context)] = ids
                if not header:  # e.g. real data without a biased split or context masks: nothing to compare on
                    return None
        splits, chosen = data[data_key]
        class_index = splits["val"].classes.index(spec.audited_class)
        checkpoint = out_root / "runs" / spec.run_id / "model.pt"
        row: dict[str, Any] = {"name": _name(spec, seed=True), "run_id": spec.run_id, "config_hash": spec.config_hash,
                               "ids": [], "note": ""}  # fmt: skip
        scores, maps, images = [], [], []
        try:
            model = load_trained(spec, checkpoint, len(splits["val"].classes))
            for role, _ in GROUPS:
                index = chosen[role]
                if not index:
                    continue
                split = splits[role]
                s, m = _maps(model, split, index, class_index)
                scores.append(s)
                maps.append(m)
                images.append(split.pixels(index).permute(0, 2, 3, 1).numpy())
                row["ids"] += [split.ids[i] for i in index]
        except Exception as err:  # a truncated, foreign or mismatched checkpoint must not sink the whole report
            note = f"checkpoint unreadable ({type(err).__name__}: {err})"[:150] + ": skipped"
            rows.append({"name": row["name"], "run_id": spec.run_id, "note": note})
            continue
        row["arrays"] = (np.concatenate(scores), np.concatenate(maps), np.concatenate(images))
        rows.append(row)
    return {"audited_class": audited, "groups": header, "rows": rows}


def write_gallery(
    out_root: Path,
    picked: list[tuple[RunSpec, RunSpec | None, str]],
    data_root: Path | None = None,
    *,
    per_group: int = 4,
    seed: int | None = None,
) -> Path | None:
    """Compute the gallery and write `gallery.json` (the groups' image ids, per configuration its name, run id,
    config hash and image ids, or why it is skipped) and `gallery.npz` (per configuration `scores_<i>` [N],
    `maps_<i>` [N,H,W] float16 in [0, 1], `images_<i>` [N,H,W,3] uint8) into `out_root`; nothing is computed again
    while the representative runs and their config hashes are those of the files there. None without a gallery."""
    out_root = Path(out_root)
    wanted = [[s.run_id, s.config_hash] if s is not None else [f.run_id, note] for f, s, note in picked]
    path = out_root / GALLERY_JSON
    if path.is_file() and (out_root / GALLERY_NPZ).is_file():
        try:
            if json.loads(path.read_text()).get("runs") == wanted:
                return path
        except (json.JSONDecodeError, AttributeError):
            pass
    data = gallery_data(out_root, picked, data_root, per_group=per_group, seed=seed)
    if data is None:  # no gallery now: none of an earlier state either
        path.unlink(missing_ok=True)
        (out_root / GALLERY_NPZ).unlink(missing_ok=True)
        return None
    arrays: dict[str, np.ndarray] = {}
    for i, row in enumerate(data["rows"]):
        if "arrays" in row:
            scores, maps, images = row.pop("arrays")
            arrays |= {f"scores_{i}": scores, f"maps_{i}": maps.astype(np.float16), f"images_{i}": images}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_atomic(out_root / GALLERY_NPZ, buffer.getvalue())
    write_atomic(path, json.dumps(data | {"runs": wanted}, indent=1))
    return path


