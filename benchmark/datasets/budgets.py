"""Pixel-label budgets: nested, seeded subsets of the training images that contain the audited class."""

from __future__ import annotations

import numpy as np
import torch

PAPER_BUDGETS: tuple[int, ...] = (9, 23, 78, 200, 1464)


def budget_pool(labels: torch.Tensor, class_index: int) -> torch.Tensor:
    """Row indices of the training images labelled with the audited class (the paper's boat table draws from these)."""
    return (labels[:, class_index] > 0.5).nonzero().squeeze(1)


def nested_budget(pool: torch.Tensor, budget: int, seed: int) -> torch.Tensor:
    """The first `budget` rows of one seeded permutation of `pool`: budget 9 is inside 23, 23 inside 78, and so on.

    The permutation depends only on `seed` and the pool, so every budget of one seed is a prefix of the same order.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    if budget > pool.numel():
        raise ValueError(f"budget {budget} is larger than its pool of {pool.numel()} images")
    order = np.random.default_rng([seed, 0xB0D6E7]).permutation(pool.numel())
    return pool[torch.from_numpy(order[:budget])].sort().values
