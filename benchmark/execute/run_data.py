"""A run's data, loaded once per process and data setting (`cached_data`): the runs of a suite that share a
dataset and its parameters share the loaded splits, in the runner and in the post-run steps."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from benchmark.core.spec import RunSpec
from benchmark.execute.train import load_data


def cached_data(spec: RunSpec, data_root: Path | str | None) -> dict[str, Any]:
    """`spec`'s splits, loaded once per process and shared by its runs (they never modify them); runs that differ
    only in the budget's pool share one copy."""
    params = {k: v for k, v in spec.dataset_params.items() if k != "pool"}
    return _cached_data(spec.dataset, json.dumps(params, sort_keys=True), str(data_root) if data_root else None)


@functools.lru_cache(maxsize=2)
def _cached_data(dataset: str, params_json: str, data_root: str | None) -> dict[str, Any]:
    spec = RunSpec(method="gradcam", dataset=dataset, dataset_params=json.loads(params_json))
    return load_data(spec, Path(data_root) if data_root else None)
