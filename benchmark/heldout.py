"""The held-out selection data and the scores every search trial records on it (`record["selection"]`): one entry
per selection rule (`benchmark.selection_rules`), each from its own held-out splits only, drawn by the generator
from a seed of their own so that no image is a test or `val` image."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.datasets import synthetic
from benchmark.datasets.tensors import TensorSplit
from benchmark.metrics import auroc, mean_average_precision
from benchmark.models import SplitModel
from benchmark.selection_rules import RULES
from benchmark.spec import RunSpec

SEED_OFFSET = 2_000_003  # the selection data's generator seed = the evaluation data's seed + this


def selection_config(config: synthetic.SyntheticConfig) -> synthetic.SyntheticConfig:
    """The held-out selection data: the same generator settings (bias, sizes of val and the shifted groups) from
    its own seed, so none of its images is a test or `val` image; its train and counterfactual splits are not used
    (one image each)."""
    return dataclasses.replace(config, seed=config.seed + SEED_OFFSET, n_train=1, n_counterfactual=1)


def ensure_data(dataset: str, params: dict[str, Any], data_root: Path | None = None) -> Path:
    """Generate the selection data of a run's dataset once (before the runs, so workers do not race to do it)."""
    return synthetic.ensure_generated(selection_config(synthetic.data_config(dataset, params)), data_root)


@functools.lru_cache(maxsize=4)
def _splits(dataset: str, params_json: str, data_root: str | None, rule: str) -> dict[str, TensorSplit]:
    folder = ensure_data(dataset, json.loads(params_json), Path(data_root) if data_root else None)
    return {role: synthetic.load_split(folder, synthetic.ROLES[role]) for role in RULES[rule].roles}


def load_splits(spec: RunSpec, rule: str, data_root: Path | None = None) -> dict[str, TensorSplit]:
    """The held-out splits `rule` reads, by role (loaded once per process)."""
    params = json.dumps(spec.dataset_params, sort_keys=True)
    return _splits(spec.dataset, params, str(data_root) if data_root else None, rule)


def _logits(model: SplitModel, split: TensorSplit, batch_size: int, device: str) -> torch.Tensor:
    chunks = []
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            rows = torch.arange(start, min(start + batch_size, len(split)))
            batch = split.batch(rows, device=device, mean=model.mean, std=model.std)
            chunks.append(model(batch["image"]).float().cpu())
    return torch.cat(chunks)


def in_distribution_metrics(logits: torch.Tensor, labels: torch.Tensor, class_index: int, threshold: float) -> dict:
    """`val_map` (the rule's metric) and the audited class's accuracy, from held-out in-distribution logits."""
    scores = torch.sigmoid(logits).numpy()
    truth = labels.numpy()
    val_map, _ = mean_average_precision(scores, truth)
    decided = scores[:, class_index] >= threshold
    return {"val_map": val_map, "val_accuracy": float(np.mean(decided == (truth[:, class_index] > 0.5)))}


def oracle_metrics(with_class: torch.Tensor, without_class: torch.Tensor, class_index: int, threshold: float) -> dict:
    """The two shifted-group accuracies, the worse of them (the rule's metric) and their AUROC, from the logits of
    held-out class-without-context and context-without-class images."""
    positive, negative = with_class[:, class_index], without_class[:, class_index]
    cwc = float(np.mean(torch.sigmoid(positive).numpy() >= threshold))
    xwc = float(np.mean(torch.sigmoid(negative).numpy() < threshold))
    return {
        "class_without_context": cwc,
        "context_without_class": xwc,
        "worst_shifted_group_accuracy": min(cwc, xwc),
        "shifted_auroc": auroc(positive.numpy(), negative.numpy()),
    }


def evaluate(model: SplitModel, spec: RunSpec, data_root: Path | None = None, device: str = "cpu") -> dict:
    """Every rule's selection metrics for a trained search trial (`train.run` stores them as `record["selection"]`);
    each rule's entry comes from its own held-out splits only."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    threshold = spec.train.threshold
    for name, rule in RULES.items():
        splits = load_splits(spec, name, data_root)
        class_index = next(iter(splits.values())).classes.index(spec.audited_class)
        logits = {role: _logits(model, split, spec.train.eval_batch_size, device) for role, split in splits.items()}
        if name == "in-distribution-val":
            metrics = in_distribution_metrics(logits["val"], splits["val"].labels, class_index, threshold)
        else:
            metrics = oracle_metrics(*(logits[r] for r in rule.roles), class_index, threshold)
        splits_used = {role: len(split) for role, split in splits.items()}
        out[name] = {"metric": rule.metric, "images": splits_used, **metrics}
    model.train(was_training)
    return out
