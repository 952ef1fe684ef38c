"""Annotation types: the pixel labels a budget image carries when the annotator drew a box, clicked a point, drew a
scribble or a coarse outline instead of a full mask.

A run with `data.annotation` other than "mask" (`RunSpec.annotation`) trains on the same images, labels and budget as
its mask twin, but each budget image's mask is replaced before training by the annotation derived from it
(`annotated_split`, called by `train.run` right after the budget is drawn). Every object of every class is
annotated the same way, as an annotator would; an object is a connected region (8-neighbourhood) of one class:

- `box`: each object's tight bounding box, filled with its class. Boxes are painted largest first, so a smaller
  object's box lies on top of a larger one's; pixels the true mask marks ignore stay ignore. A box holds what lies
  around the object in it (water around a boat): methods that cut the object out take that along.
- `points`: one pixel of each object, drawn uniformly among its pixels, labelled with its class, and one background
  pixel drawn uniformly among the background; every other pixel is ignore (unknown), as in point supervision.
- `scribble`: a one-pixel stroke through each object along its longest axis (the principal axis of its pixels),
  through a pixel of the object drawn uniformly, kept where it lies inside the object, and one such stroke through
  the background; every other pixel is ignore.
- `coarse`: each class's region dilated by `annotation_dilate` pixels (a square of side 2d+1), over background pixels
  only (never over another object or ignore): a coarse outline that contains the true mask.

The draws are seeded by the run's `budget_seed` and the image's training row (`rng_for`), not by the training seed:
an image is annotated once, and every training seed of a configuration sees the same annotation (a full replicate
draws its own budget seed, so its own annotations). The rule reads the mask only, so the built-in data, the VOC
loader and a plugin's dataset give the same annotation for the same mask. The record keeps the type, its setting,
the images and the mean IoU of the audited class's annotated region with its true mask.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from benchmark.core.settings import ANNOTATIONS
from benchmark.execute.datasets.files import FileSplit
from benchmark.execute.datasets.images import IGNORE, Sample
from benchmark.execute.datasets.tensors import TensorSplit

SALT = 0xA77  # keeps the annotations' draws apart from every other generator seeded by the run's seeds
EIGHT = np.ones((3, 3), bool)  # 8-connectivity


def rng_for(budget_seed: int, row: int) -> np.random.Generator:
    """The generator of one training row's annotation."""
    return np.random.default_rng([budget_seed, row, SALT])


def objects(mask: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Every object of `mask`: (class value, bool region) per 8-connected region of one class (0 and ignore
    aside), in class order, then in the order `scipy.ndimage.label` numbers them."""
    found = []
    for value in sorted(set(np.unique(mask).tolist()) - {0, IGNORE}):
        labelled, n = ndimage.label(mask == value, structure=EIGHT)
        found += [(int(value), labelled == i) for i in range(1, n + 1)]
    return found


def _box(region: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(region)
    out = np.zeros_like(region)
    out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    return out


def _stroke(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A one-pixel line along the principal axis of `region`'s pixels through one of them (drawn uniformly), kept
    inside `region` (the drawn pixel at least)."""
    ys, xs = np.nonzero(region)
    i = int(rng.integers(len(ys)))
    points = np.stack([ys, xs], 1).astype(float)
    centred = points - points.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(ys) > 1 else np.array([0.0, 1.0])
    reach = max(region.shape)
    t = np.arange(-reach, reach + 1, 0.5)[:, None]
    line = np.rint(points[i] + t * axis).astype(int)
    inside = (line[:, 0] >= 0) & (line[:, 0] < region.shape[0]) & (line[:, 1] >= 0) & (line[:, 1] < region.shape[1])
    out = np.zeros_like(region)
    out[line[inside, 0], line[inside, 1]] = True
    out &= region
    out[ys[i], xs[i]] = True
    return out


def _pixel(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    ys, xs = np.nonzero(region)
    out = np.zeros_like(region)
    if len(ys):
        i = int(rng.integers(len(ys)))
        out[ys[i], xs[i]] = True
    return out


def annotate(mask: np.ndarray, kind: str, rng: np.random.Generator, *, dilate: int = 2) -> np.ndarray:
    """The `kind` annotation of `mask` (class index + 1 per pixel, 0 background, 255 ignore), as a mask of the same
    shape and dtype: see the module's rules. "mask" returns a copy of `mask`."""
    if kind not in ANNOTATIONS:
        raise ValueError(f"annotation = {kind!r}: allowed: {', '.join(ANNOTATIONS)}")
    mask = np.asarray(mask)
    if kind == "mask":
        return mask.copy()
    found = objects(mask)
    if kind == "box":
        out = mask.copy()
        for value, region in sorted(found, key=lambda o: -int(_box(o[1]).sum())):  # largest box first
            out[_box(region) & (mask != IGNORE)] = value
        return out
    if kind == "coarse":
        out = mask.copy()
        grown = ndimage.binary_dilation  # a square structuring element of side 2d+1
        values = sorted({v for v, _ in found}, key=lambda v: -int((mask == v).sum()))
        for value in values:
            out[grown(mask == value, np.ones((2 * dilate + 1,) * 2, bool)) & (mask == 0)] = value
        return out
    out = np.full_like(mask, IGNORE)
    mark = _pixel if kind == "points" else _stroke
    for value, region in found:
        out[mark(region, rng)] = value
    background = mask == 0
    if background.any():
        if kind == "scribble":  # the background's largest connected part
            labelled, n = ndimage.label(background, structure=EIGHT)
            background = labelled == 1 + int(np.argmax(ndimage.sum(background, labelled, range(1, n + 1))))
        out[mark(background, rng)] = 0
    return out


def iou(annotated: np.ndarray, true: np.ndarray, value: int) -> float | None:
    """IoU of class `value`'s annotated region with its true one (None where both are empty)."""
    a, t = np.asarray(annotated) == value, np.asarray(true) == value
    union = int((a | t).sum())
    return float((a & t).sum() / union) if union else None


def summary(kind: str, settings: dict[str, Any], ious: list[float | None], budget_seed: int) -> dict[str, Any]:
    """What the record says of a run's annotation."""
    found = [v for v in ious if v is not None]
    return {"type": kind, "settings": settings, "images": len(ious), "budget_seed": budget_seed,
            "mean_iou_with_true": float(np.mean(found)) if found else float("nan")}  # fmt: skip


def _annotate_all(masks: list[Any], rows: torch.Tensor, kind: str, settings: dict[str, Any], budget_seed: int
                  ) -> list[np.ndarray]:  # fmt: skip
    """Each budget row's annotation, drawn with its own row's generator."""
    return [annotate(m, kind, rng_for(budget_seed, int(r)), **settings) for m, r in zip(masks, rows, strict=True)]


def annotated_split(
    split: TensorSplit | FileSplit, rows: torch.Tensor, class_index: int, annotation: dict[str, Any], *,
    budget_seed: int,
) -> tuple[TensorSplit | FileSplit, dict[str, Any]]:  # fmt: skip
    """A copy of the training `split` whose budget `rows` carry the `annotation` (`RunSpec.annotation`: its type
    and setting) of their masks, and the record's summary; `split` itself is not changed."""
    kind = annotation.get("type", "mask")
    settings = {k: v for k, v in annotation.items() if k != "type"}
    if kind == "mask":
        return split, {"type": "mask", "images": int(rows.numel())}
    value = class_index + 1
    rows = rows.to(torch.long).cpu()
    if isinstance(split, TensorSplit):
        masks = split.masks[rows.to(split.masks.device)].cpu().numpy()
        new_masks = _annotate_all(list(masks), rows, kind, settings, budget_seed)
        new = split.masks.clone()
        if len(new_masks):
            new[rows.to(new.device)] = torch.from_numpy(np.stack(new_masks)).to(new.device, new.dtype)
        ious = [iou(a, t, value) for a, t in zip(new_masks, masks, strict=True)]
        return dataclasses.replace(split, masks=new), summary(kind, settings, ious, budget_seed)
    if isinstance(split, FileSplit):
        originals = [split._sample(int(r)).mask for r in rows]
        missing = [split.ids[int(r)] for r, m in zip(rows, originals, strict=True) if m is None]
        if missing:
            raise ValueError(f"annotation = {kind!r}: budget images without pixel labels: {', '.join(missing[:3])}")
        new_masks = _annotate_all(originals, rows, kind, settings, budget_seed)
        ious = [iou(a, t, value) for a, t in zip(new_masks, originals, strict=True)]
        return AnnotatedFileSplit.of(split, dict(zip(rows.tolist(), new_masks, strict=True))), summary(
            kind, settings, ious, budget_seed
        )
    raise ValueError(f"annotation = {kind!r}: a {type(split).__name__} split cannot be annotated")


class AnnotatedFileSplit(FileSplit):
    """A `FileSplit` whose listed rows' masks are replaced by their annotation; the rest, and the split it was made
    from (whose decoded cache it shares, unchanged), as they are."""

    annotated: dict[int, np.ndarray]

    @classmethod
    def of(cls, split: FileSplit, annotated: dict[int, np.ndarray]) -> AnnotatedFileSplit:
        return split.derived(cls, annotated=annotated)

    def _sample(self, row: int) -> Sample:
        sample = super()._sample(row)
        if row not in self.annotated or sample.mask is None:
            return sample
        return Sample(sample.image, self.annotated[row].copy(), sample.context)
