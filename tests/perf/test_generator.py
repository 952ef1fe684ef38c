"""The synthetic generator writing a small config from scratch (group "generator"): 160 scenes, PNGs and manifest."""

import itertools

import pytest

from benchmark.execute.datasets.synthetic import SyntheticConfig, ensure_generated, load_split, splits

SMALL = SyntheticConfig(n_train=64, n_val=16, n_shifted=16, n_counterfactual=16)


@pytest.mark.benchmark(group="generator")
def test_generate_small_config(benchmark, tmp_path):
    counter = itertools.count()

    def fresh_root():
        return (SMALL, tmp_path / f"round{next(counter)}"), {}

    out = benchmark.pedantic(ensure_generated, args=None, setup=fresh_root, rounds=3, warmup_rounds=0, iterations=1)
    assert (out / "COMPLETE").is_file()
    assert {split: len(load_split(out, split)) for split in splits(SMALL)}["train"] == SMALL.n_train
