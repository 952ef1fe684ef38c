"""The datasets a run can name (`[data] name = ...`): one entry each, so validation, the config hash, loading and the
report treat the built-in data and the real datasets alike.

Every loader returns the splits by role (docs/layout.md, "Contracts"): `train`, `val`, the shifted groups
`class_without_context` / `context_without_class` where the data has them, and the built-in data's counterfactual
splits `cf_*`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core.registry import DATASETS, register_dataset
from benchmark.execute.datasets import manifest, params, synthetic, voc, waterbirds


@dataclass(frozen=True)
class Dataset:
    """A dataset's entry: how to validate its keys, what of them changes results, its classes and context, how to
    get it ready before a suite runs and how to load its splits (all or only `roles`)."""

    name: str
    description: str
    default_class: str
    config: Callable[[dict[str, Any]], Any]
    resolved: Callable[[Any], dict[str, Any]]
    classes: tuple[str, ...]
    context: Callable[[Any], str]
    prepare: Callable[[Any, Path | None], Any]
    load: Callable[[Any, Path | None, tuple[str, ...] | None], dict[str, Any]]


def _synthetic_resolved(config: synthetic.SyntheticConfig) -> dict[str, Any]:
    return {**config.to_dict(), "digest": config.digest()}


def _synthetic_load(
    config: synthetic.SyntheticConfig, data_root: Path | None, roles: tuple[str, ...] | None
) -> dict[str, Any]:
    folder = synthetic.ensure_generated(config, data_root)
    if roles is not None:
        return {role: synthetic.load_split(folder, synthetic.ROLES[role]) for role in roles}
    splits = synthetic.load(config, data_root)
    return {"train": splits["train"]} | {role: splits[name] for role, name in synthetic.roles(config).items()}


def _voc_prepare(config: voc.VOCConfig, data_root: Path | None) -> None:
    """Fail before any run starts when the VOC folder or the biased split is missing or malformed."""
    voc.find_root(config, data_root)
    if config.biased_split:
        manifest.read_biased_split(params.data_path(config.biased_split, data_root), voc.CLASSES)


def _waterbirds_prepare(config: waterbirds.WaterbirdsConfig, data_root: Path | None) -> None:
    waterbirds.read_metadata(params.data_path(config.root, data_root))


for _dataset in (
    Dataset(
        synthetic.NAME,
        "built in, generated on first use",
        "boat",
        lambda p: synthetic.data_config(synthetic.NAME, p),
        _synthetic_resolved,
        synthetic.CLASSES,
        lambda _: "water",
        synthetic.ensure_generated,
        _synthetic_load,
    ),
    Dataset(
        voc.NAME,
        "PASCAL VOC 2012 (+ SBD train_aug) from <data root>/VOCdevkit/VOC2012, biased split from data.biased_split",
        "boat",
        voc.config,
        lambda c: params.resolved(c, voc.LOADER_VERSION),
        voc.CLASSES,
        lambda c: c.context,
        _voc_prepare,
        voc.load,
    ),
    Dataset(
        waterbirds.NAME,
        "Waterbirds from <data root>/waterbird_complete95_forest2water2 (metadata.csv)",
        waterbirds.AUDITED_CLASS,
        waterbirds.config,
        lambda c: params.resolved(c, waterbirds.LOADER_VERSION),
        waterbirds.CLASSES,
        lambda _: waterbirds.CONTEXT,
        _waterbirds_prepare,
        waterbirds.load,
    ),
):
    register_dataset(_dataset)


def dataset(name: str) -> Dataset:
    """The entry of `name`; an unknown name is a ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return DATASETS[name]


def load(
    name: str, dataset_params: dict[str, Any], data_root: Path | None = None, roles: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The splits of a dataset by role (all of them, or only `roles`)."""
    entry = dataset(name)
    return entry.load(entry.config(dataset_params), data_root, roles)


def pool(name: str, dataset_params: dict[str, Any]) -> str | None:
    """The budget pool of a file-based dataset's configuration; None for the built-in data (its class pool)."""
    config = dataset(name).config(dataset_params)
    return getattr(config, "pool", None)


def context_name(name: str, dataset_params: dict[str, Any]) -> str:
    """The audited context's name (for the report's words), "context" where the configuration does not resolve."""
    try:
        entry = dataset(name)
        return entry.context(entry.config(dataset_params))
    except ValueError:
        return "context"
