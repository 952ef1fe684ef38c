"""The `[data]` keys of the file-based datasets: validation with errors that name the key and what is allowed, the
part of a configuration that changes results (for the run's config hash), and paths under the data root."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from benchmark.datasets.synthetic import default_root

C = TypeVar("C")
Rule = tuple[Callable[[Any], bool], str]

POOLS = ("class", "pixel")
"""Budget pools: training images with pixel labels that hold the audited class (the paper's boat table), or all
training images with pixel labels (the paper's segmentation table)."""


def is_int(value: Any, low: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low


def is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def is_str(value: Any) -> bool:
    return isinstance(value, str)


def one_of(*allowed: str) -> Rule:
    return (lambda v: v in allowed, ", ".join(allowed))


@dataclass(frozen=True)
class FileDataConfig:
    """The `[data]` keys every file-based dataset shares (how images are viewed, pooled, cached and checked); each
    dataset's config adds its own (datasets/README.md explains each)."""

    image_size: int = 224
    augment: bool = True
    crop_scale: float = 0.5
    pool: str = "class"
    cache: bool = False
    workers: int = 4
    skip_bad_images: bool = False


COMMON_RULES: dict[str, Rule] = {
    "root": (is_str, "a path (relative to the data root, or absolute)"),
    "image_size": (lambda v: is_int(v, 16), "an integer >= 16 (pixels; the side of the square model input)"),
    "augment": (is_bool, "true, false"),
    "crop_scale": (
        lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < v <= 1,
        "a number in (0, 1]",
    ),
    "pool": one_of(*POOLS),
    "cache": (is_bool, "true, false"),
    "workers": (lambda v: is_int(v, 1), "an integer >= 1"),
    "skip_bad_images": (is_bool, "true, false"),
}
LOCATION_KEYS = ("root", "cache", "workers")
"""Keys that say where the data is or how it is read, not what it is: left out of the config hash."""


def build(cls: type[C], params: dict[str, Any], dataset: str, rules: dict[str, Rule]) -> C:
    """`cls(**params)` after checking every key against `rules`; errors name the key and the allowed values."""
    shared = [f.name for f in fields(FileDataConfig)]
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    known = [n for n in names if n not in shared] + [n for n in names if n in shared]  # the dataset's own keys first
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(f"unknown data key(s) {', '.join(unknown)} for dataset {dataset}; allowed: {', '.join(known)}")
    for key, value in params.items():
        ok, allowed = rules[key]
        if not ok(value):
            raise ValueError(f"data.{key} = {value!r} ({dataset}): allowed: {allowed}")
    return cls(**params)


def resolved(config: Any, version: int) -> dict[str, Any]:
    """Every key that changes a result, defaults filled in, and the loader's version (bumped when reading changes)."""
    return {k: v for k, v in asdict(config).items() if k not in LOCATION_KEYS} | {"loader_version": version}


def data_path(value: str, data_root: Path | None) -> Path:
    """`value` as a path: absolute as given, relative under the data root (`--data-root`, `$GAIN_BENCH_DATA` or
    ./datasets)."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    return Path(data_root if data_root is not None else default_root()) / path
