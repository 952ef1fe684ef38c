"""The gallery's post-run step: the audited class's Grad-CAM on the same images for every configuration of a suite,
computed where the checkpoints and the data are and written into the results folder (`gallery.json` and
`gallery.npz`), so that the report (`benchmark.analyse.report.gallery`) draws it from the folder alone, without torch.

Rows are the suite's configurations (one run each: the lowest complete seed with a checkpoint, `post_run.pick_run`),
columns the same images for every row: `per_group` each of "boat without water", "water without boat" and
in-distribution val images of a boat on water. Per cell the image, the audited class's score and its Grad-CAM map
at the map's own resolution (the attention layer's, min-max normalised per image): the report upsamples it to the
image bilinearly (`align_corners=False`) and normalises it again, which is the map `attention.inference_cam` gives.

`gallery.npz` (numpy arrays, no pickles):
    `images_<d>`  uint8 [N,H,W,3]: data set d's chosen images, as the models saw them (the groups in order)
    `maps_<i>`    float32 [N,h,w] in [0, 1]: configuration i's maps of those images, at the attention layer's size
`gallery.json`:
    `schema`, `written`, `audited_class`, `context`, `per_group`, `seed`, `runs` (per configuration its run id and
    config hash, or its first run id and why it is skipped: what the files were computed from), `npz_sha256` (of
    the gallery.npz written with it), `groups` ({header: image ids}, the columns), `datasets` (per data set its
    name, parameters, `images` array and per image its `split` (the role), `index` in that split and `id`), and
    `rows`, one per configuration in the suite's order: `name` (as the row is labelled), `label`, `method`,
    `budget`, `seed`, `run_id`, `config_hash`, and either `data` (its data set), `ids`, `splits`, `indices`,
    `scores` (sigmoid of the audited class's logit per image) and `maps` (its array), or `skipped` (why not).
"""

from __future__ import annotations

import hashlib
import io
import json
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.registry import METHODS
from benchmark.core.spec import RunSpec
from benchmark.core.store import (
    GALLERY_JSON,
    GALLERY_NPZ,
    GALLERY_SCHEMA,
    DamagedFile,
    read_gallery_files,
    write_atomic,
)
from benchmark.execute.attention import grad_cam_from, inference_cam
from benchmark.execute.checkpoints import load_trained
from benchmark.execute.datasets import registry
from benchmark.execute.datasets.images import DataError
from benchmark.execute.datasets.synthetic import default_root
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.models import SplitModel

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
    real dataset without a biased split has val only. Data that cannot be loaded is a DataError naming the data
    root: the gallery is a post-run step, run where the data is."""
    try:
        return registry.load(spec.dataset, spec.dataset_params, data_root, roles=tuple(role for role, _ in GROUPS))
    except (DataError, OSError) as err:
        root = str(data_root) if data_root is not None else f"{default_root()} ($GAIN_BENCH_DATA or ./datasets)"
        raise DataError(
            f"the gallery needs the {spec.dataset} data of run {spec.run_id}, which could not be loaded from the data "
            f"root {root}: {err}"
        ) from err


def _name(spec: RunSpec, seed: bool = False) -> str:
    """The configuration's name, one method parameter per line (row labels stay narrow), and the seed shown."""
    display = METHODS.entry(spec.method).display if spec.method in METHODS else spec.method
    params = (f"{k}={v}" for k, v in sorted(spec.method_params.items()))
    lines = [display + (f"-{spec.budget}" if spec.budget else ""), *params]
    return "\n".join(lines + ([f"seed {spec.seed}"] if seed else []))


def _maps(
    model: SplitModel, split: TensorSplit, rows: list[int], class_index: int, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and Grad-CAM maps of the audited class for `rows`, in eval mode as `prediction.predict` takes them; the
    maps at the attention layer's resolution (`grad_cam_from` without a size: no upsampling), min-max normalised."""
    batch = split.batch(torch.tensor(rows, dtype=torch.long), mean=model.mean, std=model.std, device=device)
    classes = torch.full((len(rows),), class_index, device=batch["image"].device)
    features, logits, _ = inference_cam(model, batch["image"], classes)
    with torch.inference_mode(False), torch.enable_grad():
        maps = grad_cam_from(features, logits, classes, head=model.head)
    return torch.sigmoid(logits[:, class_index]).detach().cpu().numpy(), maps.detach().float().cpu().numpy()


def _spec_fields(spec: RunSpec) -> dict[str, Any]:
    return {"label": spec.method_label, "method": spec.method, "budget": spec.budget, "seed": spec.seed}


def _compute(
    out_root: Path,
    picked: list[tuple[RunSpec, RunSpec | None, str]],
    data_root: Path | None,
    *,
    device: str,
    per_group: int,
    seed: int | None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
    """The gallery's JSON part and its arrays; None when the data has nothing to compare on."""
    first_run = next(s for _, s, _ in picked if s is not None)
    audited = first_run.audited_class
    context = registry.context_name(first_run.dataset, first_run.dataset_params)
    datasets: dict[str, dict[str, Any]] = {}  # by data key: its entry in the JSON, splits and chosen rows
    arrays: dict[str, np.ndarray] = {}
    groups: dict[str, list[str]] = {}
    rows: list[dict[str, Any]] = []
    for i, (first, spec, note) in enumerate(picked):
        if spec is None:
            rows.append({"name": _name(first), **_spec_fields(first), "seed": None, "run_id": None,
                         "config_hash": None, "skipped": note})  # fmt: skip
            continue
        data_key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
        if data_key not in datasets:
            splits = _load_splits(spec, data_root)
            class_index = splits["val"].classes.index(spec.audited_class)
            chosen = choose_images(splits, class_index, per_group=per_group, seed=seed)
            cells = [(role, r) for role, _ in GROUPS for r in chosen[role]]
            d = len(datasets)
            datasets[data_key] = {
                "entry": {"dataset": spec.dataset, "dataset_params": spec.dataset_params, "images": f"images_{d}",
                          "cells": [{"split": role, "index": r, "id": splits[role].ids[r]} for role, r in cells]},
                "index": d, "splits": splits, "chosen": chosen,
            }  # fmt: skip
            if not groups:
                for role, title in GROUPS:
                    if chosen[role]:
                        groups[title.format(cls=audited, ctx=context)] = [splits[role].ids[r] for r in chosen[role]]
                if not groups:  # e.g. real data without a biased split or context masks: nothing to compare on
                    return None
            if cells:
                pixels = [splits[role].pixels(chosen[role]) for role, _ in GROUPS if chosen[role]]
                arrays[f"images_{d}"] = np.concatenate([p.permute(0, 2, 3, 1).numpy() for p in pixels]).astype(np.uint8)
        data = datasets[data_key]
        splits, chosen = data["splits"], data["chosen"]
        row = {"name": _name(spec, seed=True), **_spec_fields(spec), "run_id": spec.run_id,
               "config_hash": spec.config_hash}  # fmt: skip
        scores, maps = [], []
        try:
            model = load_trained(spec, out_root / "runs" / spec.run_id / "model.pt", len(splits["val"].classes))
            model = model.to(device)
            class_index = splits["val"].classes.index(spec.audited_class)
            for role, _ in GROUPS:
                if chosen[role]:
                    s, m = _maps(model, splits[role], chosen[role], class_index, device)
                    scores.append(s)
                    maps.append(m)
        except Exception as err:  # a truncated, foreign or mismatched checkpoint must not sink the others
            rows.append(row | {"skipped": f"checkpoint unreadable ({type(err).__name__}: {err})"[:150] + ": skipped"})
            continue
        cells = data["entry"]["cells"]
        arrays[f"maps_{i}"] = np.concatenate(maps).astype(np.float32)
        rows.append(
            row
            | {
                "data": data["index"],
                "ids": [c["id"] for c in cells],
                "splits": [c["split"] for c in cells],
                "indices": [c["index"] for c in cells],
                "scores": [float(s) for s in np.concatenate(scores)],
                "maps": f"maps_{i}",
            }
        )
    meta = {
        "audited_class": audited,
        "context": context,
        "groups": groups,
        "datasets": [d["entry"] for d in datasets.values()],
        "rows": rows,
    }
    return meta, arrays


def _up_to_date(out_root: Path, key: dict[str, Any]) -> bool:
    """Whether the gallery files in `out_root` were computed from the runs and settings in `key`, and are whole."""
    try:
        found = read_gallery_files(out_root)
    except DamagedFile:  # cut off, garbled, of another format, or without its arrays: computed again
        return False
    return found is not None and all(found[0].get(k) == v for k, v in key.items())


def write_gallery(
    out_root: Path,
    picked: list[tuple[RunSpec, RunSpec | None, str]],
    data_root: Path | None = None,
    *,
    device: str = "cpu",
    per_group: int = 4,
    seed: int | None = None,
) -> Path | None:
    """Compute the gallery and write `gallery.npz`, then `gallery.json` (formats: the module's docstring) into
    `out_root`, each atomically; return the JSON's path.

    `picked` holds per configuration of the report its first spec, its representative run or None, and why not
    (`post_run.gallery_picks`: `post_run.pick_run` on each of `post_run.configurations(suite, out_root)`). Nothing is
    computed again while the files there were computed from the same runs (run ids and config hashes), `per_group`
    and `seed`. None, with any earlier gallery files removed, when no configuration has a run with a checkpoint or
    the data has nothing to compare on. Data that cannot be loaded raises a DataError naming the data root.
    """
    out_root = Path(out_root)
    runs = [[s.run_id, s.config_hash] if s is not None else [f.run_id, note] for f, s, note in picked]
    key = {"schema": GALLERY_SCHEMA, "runs": runs, "per_group": per_group, "seed": seed}
    path = out_root / GALLERY_JSON
    if _up_to_date(out_root, key):
        return path
    computed = None
    if any(spec is not None for _, spec, _ in picked):
        computed = _compute(out_root, picked, data_root, device=device, per_group=per_group, seed=seed)
    if computed is None:  # no gallery now: none of an earlier state either
        path.unlink(missing_ok=True)
        (out_root / GALLERY_NPZ).unlink(missing_ok=True)
        return None
    meta, arrays = computed
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    blob = buffer.getvalue()
    write_atomic(out_root / GALLERY_NPZ, blob)
    written = datetime.now(UTC).isoformat(timespec="seconds")
    payload = key | {"written": written, "npz_sha256": hashlib.sha256(blob).hexdigest()} | meta
    write_atomic(path, json.dumps(payload, indent=1) + "\n")
    return path
