"""Pixel-label budgets (`benchmark.execute.datasets.budgets`) against hand-made pools: which rows a budget may draw
from, that budgets are nested prefixes of one seeded order, the manifest's name and text, and what the record says."""

import hashlib

import numpy as np
import pytest
import torch

from benchmark.execute.datasets.budgets import (
    PAPER_BUDGETS,
    POOL_NAMES,
    budget_pool,
    budget_record,
    nested_budget,
    pool_rows,
    write_manifest,
)
from benchmark.execute.datasets.images import DataError

# rows 0..5; class column 1 is the audited one
LABELS = torch.tensor([[1, 1], [0, 0], [0, 1], [1, 0.6], [0, 0.5], [1, 0.4]], dtype=torch.float32)
PIXEL = torch.tensor([True, True, False, True, True, False])


def _order(n, seed):
    """The documented seeded order: numpy's default_rng seeded with [seed, 0xB0D6E7]."""
    return np.random.default_rng([seed, 0xB0D6E7]).permutation(n)


def test_paper_budgets_and_pool_names():
    assert PAPER_BUDGETS == (9, 23, 78, 200, 1464)
    assert POOL_NAMES["class"].format(cls="boat") == "pixel-labelled boat images"
    assert POOL_NAMES["pixel"] == "pixel-labelled images"


def test_budget_pool_is_the_rows_labelled_with_the_class():
    assert budget_pool(LABELS, 1).tolist() == [0, 2, 3], "0.5 is not above the threshold"
    assert budget_pool(LABELS, 0).tolist() == [0, 3, 5]
    assert budget_pool(LABELS[:1], 1).tolist() == [0], "one row stays a 1-d index"


def test_pool_rows_class_and_pixel():
    assert pool_rows(LABELS, PIXEL, 1, "class").tolist() == [0, 3]
    assert pool_rows(LABELS, PIXEL, 0, "class").tolist() == [0, 3]
    assert pool_rows(LABELS, PIXEL, 1, "pixel").tolist() == [0, 1, 3, 4]
    assert pool_rows(LABELS[:1], PIXEL[:1], 1, "pixel").tolist() == [0]
    before = PIXEL.clone()
    pool_rows(LABELS, PIXEL, 1, "class")
    assert torch.equal(PIXEL, before), "the caller's mask is left alone"
    with pytest.raises(ValueError, match=r"^pool 'boat': allowed: class, pixel$"):
        pool_rows(LABELS, PIXEL, 1, "boat")


def test_nested_budget_is_a_sorted_prefix_of_one_seeded_order():
    pool = torch.tensor([10, 11, 12, 13, 14, 15, 16, 17])
    order = _order(8, 3)
    for budget in range(9):
        got = nested_budget(pool, budget, seed=3)
        assert got.tolist() == sorted(pool[torch.from_numpy(order[:budget])].tolist())
    assert nested_budget(pool, 8, seed=3).tolist() == pool.tolist(), "the whole pool is allowed"
    assert nested_budget(pool, 0, seed=3).tolist() == []
    assert nested_budget(pool, 4, seed=4).tolist() != nested_budget(pool, 4, seed=3).tolist()


def test_nested_budget_refuses_negative_and_oversized_budgets():
    pool = torch.tensor([1, 2, 3])
    with pytest.raises(ValueError, match=r"^budget must be >= 0, got -1$"):
        nested_budget(pool, -1, seed=0)
    with pytest.raises(ValueError, match=r"^budget 4 is larger than its pool of 3 boat images$"):
        nested_budget(pool, 4, seed=0, what="boat images")
    with pytest.raises(ValueError, match=r"^budget 4 is larger than its pool of 3 images$"):
        nested_budget(pool, 4, seed=0)


def test_manifest_name_and_text(tmp_path):
    ids = ["a", "b", "c", "d", "e"]
    pool = torch.tensor([4, 1, 3])
    path = write_manifest(tmp_path / "budgets", "train", ids, pool, seed=2, name="class-boat")
    ordered = [ids[int(pool[i])] for i in _order(3, 2)]
    digest = hashlib.sha256("\n".join(sorted(ordered)).encode()).hexdigest()[:8]
    assert path == tmp_path / "budgets" / f"train-class-boat-seed2-{digest}.csv"
    assert path.read_text() == "rank,id\n" + "".join(f"{r},{i}\n" for r, i in enumerate(ordered, start=1))
    # the same pool again: the same file, left as it is
    assert write_manifest(tmp_path / "budgets", "train", ids, pool, seed=2, name="class-boat") == path
    # budget B of the manifest is nested_budget's B
    for budget in range(4):
        rows = nested_budget(pool, budget, seed=2).tolist()
        assert sorted(ids[r] for r in rows) == sorted(ordered[:budget])


def test_manifest_that_was_edited_is_an_error(tmp_path):
    ids = ["a", "b", "c"]
    pool = torch.tensor([0, 2])
    path = write_manifest(tmp_path, "train", ids, pool, seed=0, name="pixel")
    path.write_text(path.read_text() + "3,b\n")
    with pytest.raises(DataError, match=r"^budget manifest .*differs from the pool it was written for \(edited\?\); "):
        write_manifest(tmp_path, "train", ids, pool, seed=0, name="pixel")


def test_budget_record():
    assert budget_record(None, "class", 3, ["a"]) == {"pool": "class", "pool_size": 3, "manifest": None, "ids": ["a"]}
    from pathlib import Path

    out = budget_record(Path("budgets") / "x.csv", "pixel", 5, [], error="read-only")
    assert out == {
        "pool": "pixel",
        "pool_size": 5,
        "manifest": str(Path("budgets") / "x.csv"),
        "ids": [],
        "manifest_error": "read-only",
    }
