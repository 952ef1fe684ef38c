"""The `[data]` keys of the file-based datasets: validation with errors that name the key and what is allowed, the
part of a configuration that changes results (for the run's config hash), and paths under the data root."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchmark.core.settings import SettingsError, boolean, check, choice, integer, number
from benchmark.execute.datasets.synthetic import default_root

C = TypeVar("C")

POOLS = ("class", "pixel")
"""Budget pools: training images with pixel labels that hold the audited class (the paper's boat table), or all
training images with pixel labels (the paper's segmentation table)."""


@dataclass(frozen=True)
class FileDataConfig:
    """The `[data]` keys every file-based dataset shares (how images are viewed, pooled, cached and checked); each
    dataset's config adds its own (datasets/README.md explains each). Each key declares what it allows: the
    settings schema (`benchmark.core.settings`) checks them."""

    image_size: integer(16, "the side of the square model input", "an integer >= 16 (pixels; the side of the square "
                        "model input)") = 224  # fmt: skip
    augment: boolean("random resized crops and flips in training") = True
    crop_scale: number("smallest share of the image a training crop covers", gt=0, le=1) = 0.5
    pool: choice(POOLS, "which training images the pixel-label budget draws from") = "class"
    cache: boolean("keep decoded images in memory") = False
    workers: integer(1, "decoding threads") = 4
    skip_bad_images: boolean("skip an unreadable image (recorded) instead of failing") = False


ROOT = "a path (relative to the data root, or absolute)"
LOCATION_KEYS = ("root", "cache", "workers")
"""Keys that say where the data is or how it is read, not what it is: left out of the config hash."""


def build(cls: type[C], params: dict[str, Any], dataset: str) -> C:
    """`cls(**params)` after checking every key against the schema its fields declare; errors name the key, the
    dataset and the allowed values."""
    try:
        check(cls, params, "data", owner=dataset)
    except SettingsError as err:
        raise ValueError(str(err)) from None
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
