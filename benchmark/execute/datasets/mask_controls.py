"""Placebo-mask controls: does the content of the budget's masks matter, or only that a method gets some mask?

A run with `mask_control` other than "true" (`RunSpec.mask_control`, `[data] mask_control` in a suite) trains on
the same images, labels and budget as its true-mask twin, but the audited class's region in each budget image's mask
is replaced before training (`controlled_split`, called by `train.run` right after the budget is drawn):

- `shuffled`: each budget image gets the audited region of another budget image (a seeded derangement of the budget:
  no image keeps its own), resized by nearest neighbour where the two differ in size;
- `random`: a blob of exactly the true region's area at a random place: the `area` pixels nearest a uniformly drawn
  centre under an elliptic distance of random aspect (1/3 to 3) and angle; it may overlap the true object;
- `inverted`: the image's pixels that are neither the audited object, another object nor ignore (the true object's
  pixels become background);
- `empty`: no region at all: the true object's pixels become background, so the mask says the object is nowhere in
  an image whose label says it is there (GAIN_ext's `L_e` then charges every bit of the map: a control for what the
  loss does without any place to point at).

Only the audited class's region changes: other objects' labels and ignore pixels stay as they are in every control,
and a control region never covers them (a shuffled region is clipped to the recipient's background and object; the
random blob is drawn from those pixels, so it has the true area exactly). Pixels that leave the audited region become
background (0). Images outside the budget are not touched, and neither is the split the run was given (the runner
shares one split between runs): the run trains on a copy.

The draws are seeded by the run's `budget_seed` and `seed` (`numpy.random.default_rng([budget_seed, seed, SALT])`):
the seeds of one configuration get different placebos, so the paired comparison with the true masks averages over
them. With a budget of one image, `shuffled` has no other image to take a region from: the image keeps its true mask
and the record says so (`fixed`: 1).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from benchmark.core.settings import MASK_CONTROLS
from benchmark.execute.datasets.files import FileSplit
from benchmark.execute.datasets.images import IGNORE, Sample
from benchmark.execute.datasets.tensors import TensorSplit

SALT = 0x3A5C  # keeps the controls' draws apart from every other generator seeded by the run's seeds
ASPECT = 3.0  # the random blob's axes differ by up to this factor


def rng_for(budget_seed: int, seed: int) -> np.random.Generator:
    """The controls' generator of a run (`budget_seed`, `seed`)."""
    return np.random.default_rng([budget_seed, seed, SALT])


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A uniformly drawn permutation of `range(n)` without fixed points (rejection: about e draws); for n < 2 there
    is none, and the identity is returned."""
    if n < 2:
        return np.arange(n)
    while True:
        order = rng.permutation(n)
        if not bool((order == np.arange(n)).any()):
            return order


def _resized(region: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """`region` at `shape` by nearest neighbour (as is where the shapes agree)."""
    if region.shape == shape:
        return region
    ys = np.minimum((np.arange(shape[0]) * region.shape[0]) // shape[0], region.shape[0] - 1)
    xs = np.minimum((np.arange(shape[1]) * region.shape[1]) // shape[1], region.shape[1] - 1)
    return region[np.ix_(ys, xs)]


def random_blob(eligible: np.ndarray, area: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly `area` of the `eligible` pixels (at most all of them): those nearest a uniformly drawn centre of the
    image under an elliptic distance of random aspect and angle (ties in pixel order)."""
    h, w = eligible.shape
    centre = rng.uniform(0, h), rng.uniform(0, w)
    aspect = float(np.exp(rng.uniform(-np.log(ASPECT), np.log(ASPECT))))
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(float)
    y, x = y + 0.5 - centre[0], x + 0.5 - centre[1]
    u, v = np.cos(angle) * x + np.sin(angle) * y, -np.sin(angle) * x + np.cos(angle) * y
    distance = np.where(eligible, (u / aspect) ** 2 + (v * aspect) ** 2, np.inf).ravel()
    blob = np.zeros(h * w, bool)
    blob[np.argsort(distance, kind="stable")[: min(area, int(eligible.sum()))]] = True
    return blob.reshape(h, w)


def control_regions(
    masks: list[np.ndarray], value: int, kind: str, rng: np.random.Generator
) -> tuple[list[np.ndarray], np.ndarray]:
    """The audited class's new region (bool `[H,W]`) per mask of `masks` (the budget images', in budget order;
    `value` = class index + 1), and the donor of each (for `shuffled`: the image whose region it took; else the
    image itself). Every region lies within its image's background and true audited pixels."""
    if kind not in MASK_CONTROLS:
        raise ValueError(f"mask_control = {kind!r}: allowed: {', '.join(MASK_CONTROLS)}")
    true = [np.asarray(m) == value for m in masks]
    eligible = [t | (np.asarray(m) == 0) for t, m in zip(true, masks, strict=True)]
    donors = np.arange(len(masks))
    if kind == "true":
        regions = true
    elif kind == "shuffled":
        donors = derangement(len(masks), rng)
        regions = [_resized(true[j], e.shape) & e for j, e in zip(donors, eligible, strict=True)]
    elif kind == "random":
        regions = [random_blob(e, int(t.sum()), rng) for t, e in zip(true, eligible, strict=True)]
    elif kind == "inverted":
        regions = [e & ~t for t, e in zip(true, eligible, strict=True)]
    else:  # empty
        regions = [np.zeros_like(t) for t in true]
    return regions, donors


def apply_region(mask: np.ndarray, region: np.ndarray, value: int) -> np.ndarray:
    """`mask` with its `value` region replaced by `region`: pixels leaving it become background (0); every other
    label and ignore stay (a region from `control_regions` never covers them)."""
    out = np.array(mask, copy=True)
    out[(out == value) & ~region] = 0
    out[region & (out != IGNORE)] = value
    return out


def _summary(kind: str, rows: torch.Tensor, regions: list[np.ndarray], true: list[np.ndarray], donors: np.ndarray,
             seeds: tuple[int, int]) -> dict[str, Any]:  # fmt: skip
    """What the record says of a control: the kind, the images, the seeds, how far the regions moved."""
    ious = [float((r & t).sum() / u) for r, t in zip(regions, true, strict=True) if (u := (r | t).sum())]
    areas = [(int(t.sum()), int(r.sum())) for r, t in zip(regions, true, strict=True)]
    out: dict[str, Any] = {
        "kind": kind,
        "images": len(regions),
        "budget_seed": seeds[0],
        "seed": seeds[1],
        "mean_iou_with_true": float(np.mean(ious)) if ious else float("nan"),
        "true_pixels": sum(a for a, _ in areas),
        "control_pixels": sum(b for _, b in areas),
        "fixed": int((donors == np.arange(len(donors))).sum()) if kind == "shuffled" else 0,
    }
    if kind == "shuffled":
        out["donors"] = [int(rows[int(j)]) for j in donors]  # the training row each budget row took its region from
        if out["fixed"]:
            out["note"] = "one budget image: there is no other image to take a region from, so it keeps its true mask"
    return out


def controlled_split(
    split: TensorSplit | FileSplit, rows: torch.Tensor, class_index: int, kind: str, *, budget_seed: int, seed: int
) -> tuple[TensorSplit | FileSplit, dict[str, Any]]:
    """A copy of the training `split` whose budget `rows` carry the `kind` control of the audited class's region
    (class index `class_index`), and the record's summary of it; `split` itself is not changed. "true" returns
    `split` as it is."""
    if kind == "true":
        return split, {"kind": "true", "images": int(rows.numel())}
    value = class_index + 1
    rows = rows.to(torch.long).cpu()
    rng = rng_for(budget_seed, seed)
    if isinstance(split, TensorSplit):
        masks = split.masks[rows.to(split.masks.device)].cpu().numpy()
        regions, donors = control_regions(list(masks), value, kind, rng)
        new = split.masks.clone()
        if len(masks):
            controlled = np.stack([apply_region(m, r, value) for m, r in zip(masks, regions, strict=True)])
            new[rows.to(new.device)] = torch.from_numpy(controlled).to(new.device, new.dtype)
        summary = _summary(kind, rows, regions, [m == value for m in masks], donors, (budget_seed, seed))
        return dataclasses.replace(split, masks=new), summary
    if isinstance(split, FileSplit):
        originals = [split._sample(int(r)).mask for r in rows]
        missing = [split.ids[int(r)] for r, m in zip(rows, originals, strict=True) if m is None]
        if missing:
            raise ValueError(f"mask_control = {kind!r}: budget images without pixel labels: {', '.join(missing[:3])}")
        masks = [m for m in originals if m is not None]
        regions, donors = control_regions(masks, value, kind, rng)
        summary = _summary(kind, rows, regions, [m == value for m in masks], donors, (budget_seed, seed))
        return ControlledFileSplit.of(split, dict(zip(rows.tolist(), regions, strict=True)), value), summary
    raise ValueError(f"mask_control = {kind!r}: a {type(split).__name__} split cannot be controlled")


class ControlledFileSplit(FileSplit):
    """A `FileSplit` whose listed rows' masks carry a control region of class value `value`; the rest, and the
    split it was made from (whose decoded cache it shares, unchanged), as they are."""

    regions: dict[int, np.ndarray]  # packed bits
    shapes: dict[int, tuple[int, ...]]
    value: int

    @classmethod
    def of(cls, split: FileSplit, regions: dict[int, np.ndarray], value: int) -> ControlledFileSplit:
        return split.derived(
            cls,
            regions={row: np.packbits(region) for row, region in regions.items()},  # an eighth of the memory
            shapes={row: region.shape for row, region in regions.items()},
            value=value,
        )

    def _sample(self, row: int) -> Sample:
        sample = super()._sample(row)
        if row not in self.regions or sample.mask is None:
            return sample
        shape = self.shapes[row]
        region = np.unpackbits(self.regions[row], count=shape[0] * shape[1]).reshape(shape).astype(bool)
        return Sample(sample.image, apply_region(sample.mask, region, self.value), sample.context)
