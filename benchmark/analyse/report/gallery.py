"""Qualitative gallery in the style of GAIN's Fig. 5/6: the audited class's Grad-CAM on the same images for every
configuration of a suite, so a reader sees where each method looks when the context is missing or misleading.

Drawn from the results folder alone (`gallery.json`, `gallery.npz`, written after the runs by
`benchmark.execute.gallery_maps`, whose docstring gives their formats): no checkpoint and no data set is opened here,
and torch is not imported. Each cell is the image with its map, upsampled bilinearly to the image, blended in and the
audited class's score beneath.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np

from benchmark.analyse.report.figures import png_data_uri, style
from benchmark.core.store import GALLERY_MEND, DamagedFile, read_gallery_files

COLORMAP = "inferno"
ALPHA = 0.55

MISSING = (
    "no gallery in this results folder (gallery.json): it is written after the runs, by `gain-bench run` or by "
    "`gain-bench report` where the checkpoints and the data are"
)


@dataclass
class GalleryRow:
    """One configuration: its run and, per chosen image, the audited class's score and Grad-CAM map (or a note)."""

    name: str
    run_id: str | None
    ids: list[str] = field(default_factory=list)
    scores: np.ndarray | None = None  # [N] sigmoid of the audited class's logit
    maps: np.ndarray | None = None  # [N,H,W] in [0, 1], at the images' resolution
    images: np.ndarray | None = None  # [N,H,W,3] uint8
    note: str = ""


@dataclass
class GalleryData:
    """What the gallery shows: the chosen image ids per group header, and a row per configuration."""

    audited_class: str
    groups: dict[str, list[str]]
    rows: list[GalleryRow]


def _interpolation(n_in: int, n_out: int) -> np.ndarray:
    """`[n_out, n_in]`: the weights 1-d linear interpolation gives each output (`align_corners=False`, the source
    index clamped at 0), as torch's `F.interpolate` and `attention.upsample_bilinear` compute them."""
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(int), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    weight = src - low
    out = np.zeros((n_out, n_in))
    np.add.at(out, (np.arange(n_out), low), 1 - weight)
    np.add.at(out, (np.arange(n_out), high), weight)
    return out


def upsample(maps: np.ndarray, size: tuple[int, int], eps: float = 1e-12) -> np.ndarray:
    """`maps` ([N,h,w]) upsampled bilinearly to `size` and min-max normalised per map, as float32 in [0, 1]: the
    map `attention.inference_cam` computes at the image's resolution, from the one at the attention layer's."""
    maps = np.asarray(maps, dtype=np.float64)
    rows, cols = _interpolation(maps.shape[-2], size[0]), _interpolation(maps.shape[-1], size[1])
    up = rows @ maps @ cols.T
    lo = up.min(axis=(-2, -1), keepdims=True)
    hi = up.max(axis=(-2, -1), keepdims=True)
    return ((up - lo) / (hi - lo + eps)).astype(np.float32)


def _read(out_root: Path) -> tuple[GalleryData | None, str | None]:
    """The gallery in `out_root`, or None and why there is none."""
    try:
        found = read_gallery_files(out_root)
    except DamagedFile as err:
        return None, f"{err}; {GALLERY_MEND}"
    if found is None:
        return None, MISSING
    meta, blob = found
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as arrays:
            rows = [_row(row, meta, arrays) for row in meta["rows"]]
        return GalleryData(meta["audited_class"], dict(meta["groups"]), rows), None
    except (KeyError, IndexError, TypeError, ValueError) as err:
        return None, f"the gallery in this results folder is unreadable ({type(err).__name__}: {err}); {GALLERY_MEND}"


def _row(row: dict[str, Any], meta: dict[str, Any], arrays: Any) -> GalleryRow:
    if "maps" not in row:
        return GalleryRow(row["name"], row.get("run_id"), note=row.get("skipped", ""))
    images = arrays[meta["datasets"][row["data"]]["images"]]
    maps = arrays[row["maps"]]
    if maps.shape[0] != images.shape[0] or len(row["scores"]) != images.shape[0]:
        raise ValueError(f"{row['run_id']}: {maps.shape[0]} maps and {len(row['scores'])} scores for "
                         f"{images.shape[0]} images")  # fmt: skip
    scores = np.asarray(row["scores"], dtype=np.float32)
    return GalleryRow(row["name"], row["run_id"], list(row["ids"]), scores, upsample(maps, images.shape[1:3]), images)


def read_gallery(out_root: Path) -> GalleryData | None:
    """The gallery the post-run step wrote into `out_root`, its maps upsampled to the images; None where there is
    none or it cannot be read (`gallery_missing_reason` says why)."""
    return _read(out_root)[0]


def gallery_missing_reason(out_root: Path) -> str | None:
    """Why the results folder `out_root` shows no gallery, as a sentence for the report (no full stop); None when
    it has one."""
    return _read(out_root)[1]


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


def drawn_or_why(out_root: Path) -> tuple[str | None, str | None]:
    """The gallery of the results folder `out_root` as a PNG data URI and None, or None and why it has none (a
    sentence for the report, without its full stop): what the report's gallery section shows."""
    data, why = _read(out_root)
    return (draw(data), None) if data is not None else (None, why)


def gallery(out_root: Path) -> str | None:
    """The gallery of the suite results folder `out_root` as a PNG data URI; None where the folder holds none
    (`gallery_missing_reason` says why)."""
    return drawn_or_why(out_root)[0]
