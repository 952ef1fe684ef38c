"""Qualitative gallery in the style of GAIN's Fig. 5/6: the audited class's Grad-CAM on the same images for every
configuration of a suite, so a reader sees where each method looks when the context is missing or misleading.

Rows are the suite's configurations (one run each: the lowest complete seed with a checkpoint), columns the same
images for every row: `per_group` each of "boat without water", "water without boat" and in-distribution val images
of a boat on water. Each cell is the image with its map blended in and the audited class's score beneath.
"""

from __future__ import annotations

import json
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib as mpl
import numpy as np
import torch

from benchmark.datasets import registry
from benchmark.datasets.images import DataError
from benchmark.datasets.tensors import TensorSplit
from benchmark.models import SplitModel
from benchmark.report.figures import png_data_uri, style
from benchmark.spec import RunSpec
from benchmark.train import load_trained

# (role, header); the header's {cls}/{ctx} are the audited class and its context.
GROUPS = (
    ("class_without_context", "{cls} without {ctx}"),
    ("context_without_class", "{ctx} without {cls}"),
    ("val", "{cls} on {ctx} (val, in distribution)"),
)
COLORMAP = "inferno"
ALPHA = 0.55


@dataclass
class GalleryRow:
    """One configuration: its run and, per chosen image, the audited class's score and Grad-CAM map (or a note)."""

    name: str
    run_id: str | None
    ids: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None  # [N] sigmoid of the audited class's logit
    maps: np.ndarray | None = None  # [N,H,W] in [0, 1]
    images: np.ndarray | None = None  # [N,H,W,3] uint8
    note: str = ""


@dataclass
class GalleryData:
    """What the gallery shows: the chosen image ids per group header, and a row per configuration."""

    audited_class: str
    groups: dict[str, list[str]]
    rows: list[GalleryRow]


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
    from benchmark.report.figures import display_name

    lines = [display_name(spec.method, spec.budget), *(f"{k}={v}" for k, v in sorted(spec.method_params.items()))]
    return "\n".join(lines + ([f"seed {spec.seed}"] if seed else []))


def _maps(model: SplitModel, split: TensorSplit, rows: list[int], class_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and Grad-CAM maps of the audited class for `rows`, on CPU in eval mode, as `train.predict` takes them."""
    from benchmark.attention import inference_cam

    batch = split.batch(torch.tensor(rows, dtype=torch.long), mean=model.mean, std=model.std)
    _, logits, maps = inference_cam(model, batch["image"], torch.full((len(rows),), class_index))
    return torch.sigmoid(logits[:, class_index]).detach().numpy(), maps.numpy()


def gallery_data(
    out_root: Path, data_root: Path | None, *, per_group: int = 4, seed: int | None = None
) -> GalleryData | None:
    """Scores and maps for the gallery; None when no configuration has a complete run with a checkpoint."""
    out_root = Path(out_root)
    from benchmark.runner import configurations, pick_run, read_suite_file

    picked = [(specs[0], *pick_run(out_root, specs)) for specs in configurations(read_suite_file(out_root), out_root)]
    if not any(spec is not None for _, spec, _ in picked):
        return None
    data: dict[str, tuple[dict[str, TensorSplit], dict[str, list[int]]]] = {}
    rows: list[GalleryRow] = []
    header: dict[str, list[str]] = {}
    audited = next(spec for _, spec, _ in picked if spec is not None).audited_class
    first_run = next(s for _, s, _ in picked if s is not None)
    context = registry.context_name(first_run.dataset, first_run.dataset_params)
    for first, spec, note in picked:
        if spec is None:
            rows.append(GalleryRow(_name(first), None, note=note))
            continue
        data_key = json.dumps([spec.dataset, spec.dataset_params], sort_keys=True)
        if data_key not in data:
            try:
                splits = _load_splits(spec, data_root)
            except DataError as err:  # real data not at hand where the report is rendered: no gallery, say why
                print(f"warning: no gallery: {err}", file=sys.stderr)
                return None
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
        row = GalleryRow(_name(spec, seed=True), spec.run_id)
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
                row.ids += [split.ids[i] for i in index]
        except Exception as err:  # a truncated, foreign or mismatched checkpoint must not sink the whole report
            rows.append(
                GalleryRow(
                    row.name,
                    spec.run_id,
                    note=f"checkpoint unreadable ({type(err).__name__}: {err})"[:150] + ": skipped",
                )
            )
            continue
        row.scores, row.maps, row.images = np.concatenate(scores), np.concatenate(maps), np.concatenate(images)
        rows.append(row)
    return GalleryData(audited, header, rows)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """`image` (uint8 [H,W,3]) in grey, alpha-blended with `cam` ([H,W] in [0, 1]) through the perceptual `COLORMAP`:
    the image's own colours would otherwise be confused with the map's."""
    grey = np.repeat(image.astype(float).mean(-1, keepdims=True) / 255.0, 3, axis=-1)
    return (1 - alpha) * grey + alpha * mpl.colormaps[COLORMAP](np.clip(cam, 0, 1))[..., :3]


def draw(data: GalleryData) -> str:
    """The gallery figure of `data` as a PNG data URI (layout in inches, so it does not depend on the fonts)."""
    from matplotlib.figure import Figure

    groups = list(data.groups.items())
    widths = [len(ids) for _, ids in groups]
    n_cols = sum(widths)
    cell, gap, group_gap, caption = 0.9, 0.05, 0.25, 0.22
    longest = max(len(line) for r in data.rows for line in r.name.splitlines())
    left, right, top, bottom = max(1.1, 0.35 + 0.08 * longest), 1.05, 0.85, 0.35
    row_h = [
        cell + caption + 0.12 if r.scores is not None else 0.3 + 0.17 * len(r.name.splitlines()) for r in data.rows
    ]
    width = left + n_cols * cell + (n_cols - len(groups)) * gap + (len(groups) - 1) * group_gap + right
    height = top + sum(row_h) + bottom
    x0 = []
    x = left
    for w in widths:
        x0.append(x)
        x += w * cell + (w - 1) * gap + group_gap
    cls = data.audited_class
    with style():
        fig = Figure(figsize=(width, height))

        def box(x: float, y_top: float, w: float, h: float) -> tuple[float, float, float, float]:
            return (x / width, 1 - (y_top + h) / height, w / width, h / height)

        fig.text(
            left / width,
            1 - 0.22 / height,
            f"Grad-CAM of '{cls}' on the same images for every configuration (lowest complete seed)",
            fontsize=11,
            fontweight="bold",
            va="top",
        )
        for (title, ids), gx in zip(groups, x0, strict=True):
            span = len(ids) * cell + (len(ids) - 1) * gap
            fig.text((gx + span / 2) / width, 1 - (top - 0.12) / height, title, ha="center", va="bottom", fontsize=10)
            fig.add_artist(
                mpl.lines.Line2D(
                    [gx / width, (gx + span) / width], [1 - (top - 0.08) / height] * 2, color="0.4", lw=0.8
                )
            )
        y = top
        for row, h in zip(data.rows, row_h, strict=True):
            middle = y + (cell if row.scores is not None else h) / 2
            fig.text((left - 0.12) / width, 1 - middle / height, row.name, ha="right", va="center", fontsize=9)
            if row.scores is None:
                fig.text(left / width, 1 - middle / height, row.note, va="center", fontsize=9, color="0.35")
                y += h
                continue
            i = 0
            for (_, ids), gx in zip(groups, x0, strict=True):
                for j in range(len(ids)):
                    ax = fig.add_axes(box(gx + j * (cell + gap), y, cell, cell))
                    ax.imshow(overlay(row.images[i], row.maps[i]), interpolation="nearest")
                    ax.set_axis_off()
                    ax.text(
                        0.5, -0.04, f"{cls} score {row.scores[i]:.2f}", transform=ax.transAxes,
                        ha="center", va="top", fontsize=7.5,
                    )  # fmt: skip
                    i += 1
            y += h
        if any(r.scores is not None for r in data.rows):
            cax = fig.add_axes(box(width - right + 0.25, top, 0.12, min(2.2, sum(row_h) - 0.2)))
            fig.colorbar(mpl.cm.ScalarMappable(cmap=COLORMAP), cax=cax)
            cax.set_ylabel("Grad-CAM (min-max per image)", fontsize=8)
            cax.tick_params(labelsize=7)
        fig.text(
            left / width,
            0.12 / height,
            f"score = sigmoid of the '{cls}' logit; the map is shown whatever the prediction, over the image in grey",
            fontsize=8,
            color="0.35",
        )
        return png_data_uri(fig)


def gallery(out_root: Path, data_root: Path | None, *, per_group: int = 4, seed: int | None = None) -> str | None:
    """The gallery of the suite results folder `out_root` as a PNG data URI; None when no run has a checkpoint."""
    data = gallery_data(out_root, data_root, per_group=per_group, seed=seed)
    return draw(data) if data is not None else None
