"""Pixel-label budgets: nested, seeded subsets of the training images that may use their pixel labels.

The built-in data draws from the images that contain the audited class. The file-based datasets choose their pool
(`data.pool`): "class" (pixel-labelled images holding the audited class: the paper's boat table, 9/23/78) or
"pixel" (every pixel-labelled image: the paper's segmentation table, 200/1464), and write the seeded order of the
pool as a manifest under `<data root>/<dataset>/budgets/`, so which images a run used can be read and re-used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.store import write_atomic
from benchmark.execute.datasets.images import DataError

PAPER_BUDGETS: tuple[int, ...] = (9, 23, 78, 200, 1464)
POOL_NAMES = {"class": "pixel-labelled {cls} images", "pixel": "pixel-labelled images"}


def budget_pool(labels: torch.Tensor, class_index: int) -> torch.Tensor:
    """Row indices of the training images labelled with the audited class (the paper's boat table draws from these)."""
    return (labels[:, class_index] > 0.5).nonzero().squeeze(1)


def pool_rows(labels: torch.Tensor, pixel_labelled: torch.Tensor, class_index: int, pool: str) -> torch.Tensor:
    """Rows of a file-based training split that a budget may draw from: pixel-labelled ones holding the audited
    class (`pool = "class"`) or all pixel-labelled ones (`"pixel"`)."""
    keep = pixel_labelled.clone()
    if pool == "class":
        keep &= labels[:, class_index] > 0.5
    elif pool != "pixel":
        raise ValueError(f"pool {pool!r}: allowed: class, pixel")
    return keep.nonzero().squeeze(1)


def _order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xB0D6E7]).permutation(n)


def nested_budget(pool: torch.Tensor, budget: int, seed: int, what: str = "") -> torch.Tensor:
    """The first `budget` rows of one seeded permutation of `pool`: budget 9 is inside 23, 23 inside 78, and so on.

    The permutation depends only on `seed` and the pool, so every budget of one seed is a prefix of the same order.
    `what` names the pool in the error of a budget larger than it.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if budget > pool.numel():
        raise ValueError(f"budget {budget} is larger than its pool of {pool.numel()} {what or 'images'}".rstrip())
    order = _order(pool.numel(), seed)
    return pool[torch.from_numpy(order[:budget])].sort().values


def write_manifest(folder: Path, split: str, ids: list[str], pool: torch.Tensor, seed: int, name: str) -> Path:
    """The pool of a training split in its seeded budget order, as `<folder>/<split>-<name>-seed<seed>-<digest>.csv`
    (`rank,id`; budget B is ranks 1..B). Written once (atomically); an existing file that disagrees is an error."""
    ordered = [ids[int(pool[i])] for i in _order(pool.numel(), seed)]
    digest = hashlib.sha256("\n".join(sorted(ordered)).encode()).hexdigest()[:8]
    path = Path(folder) / f"{split}-{name}-seed{seed}-{digest}.csv"
    text = "rank,id\n" + "".join(f"{rank},{image_id}\n" for rank, image_id in enumerate(ordered, start=1))
    if path.is_file():
        if path.read_text() != text:
            raise DataError(f"budget manifest {path} differs from the pool it was written for (edited?); delete it")
        return path
    write_atomic(path, text)
    return path


def budget_record(path: Path | None, pool: str, pool_size: int, ids: list[str], error: str = "") -> dict[str, Any]:
    """What the run record says about its budget."""
    out: dict[str, Any] = {"pool": pool, "pool_size": pool_size, "manifest": str(path) if path else None, "ids": ids}
    return out | ({"manifest_error": error} if error else {})
