"""The held-out selection data and the scores every search trial records on it (`record["selection"]`): one entry
per selection rule (`benchmark.core.selection_rules`), each from its own held-out splits only, drawn by the generator
from a seed of their own so that no image is a test or `val` image. `worst-group-val` reads a small group-balanced
subset of those splits (`group_val_rows`)."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.core.selection_rules import GROUP_VAL_SIZE, RULES
from benchmark.core.spec import RunSpec
from benchmark.execute.datasets import synthetic
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.metrics import GROUPS, auroc, group_accuracies, mean_average_precision
from benchmark.execute.models import SplitModel

SEED_OFFSET = 2_000_003  # the selection data's generator seed = the evaluation data's seed + this
# worst-group-val's groups (`metrics.GROUPS`): the held-out role each is drawn from, and whether its images hold the
# audited class and the context. The two majority groups come from the held-out in-distribution split, the two
# minority groups from the held-out shifted splits (as the test's worst-group accuracy, `metrics.group_accuracies`).
GROUP_ROLES: dict[str, tuple[str, bool, bool]] = {
    "class_with_context": ("val", True, True),
    "neither": ("val", False, False),
    "class_without_context": ("class_without_context", True, False),
    "context_without_class": ("context_without_class", False, True),
}
GROUP_DRAW_SEED = 78  # the seed of worst-group-val's draw (fixed: every trial of every run reads the same images)


def selection_config(config: synthetic.SyntheticConfig) -> synthetic.SyntheticConfig:
    """The held-out selection data: the same generator settings (bias, sizes of val and the shifted groups) from
    its own seed, so none of its images is a test or `val` image; its train and counterfactual splits are not used
    (one image each)."""
    return dataclasses.replace(config, seed=config.seed + SEED_OFFSET, n_train=1, n_counterfactual=1)


def ensure_data(dataset: str, params: dict[str, Any], data_root: Path | None = None) -> Path:
    """Generate the selection data of a run's dataset once (before the runs, so workers do not race to do it)."""
    return synthetic.ensure_generated(selection_config(synthetic.data_config(dataset, params)), data_root)


@functools.lru_cache(maxsize=12)
def _split(dataset: str, params_json: str, data_root: str | None, role: str) -> TensorSplit:
    folder = ensure_data(dataset, json.loads(params_json), Path(data_root) if data_root else None)
    return synthetic.load_split(folder, synthetic.ROLES[role])


def load_splits(spec: RunSpec, rule: str, data_root: Path | None = None) -> dict[str, TensorSplit]:
    """The held-out splits `rule` reads, by role (each loaded once per process, whichever rules read it)."""
    params = json.dumps(spec.dataset_params, sort_keys=True)
    root = str(data_root) if data_root else None
    return {role: _split(spec.dataset, params, root, role) for role in RULES[rule].roles}


def group_shares(size: int) -> dict[str, int]:
    """Images per group of a `size`-image group-labelled split: as even as possible, the remainder to the groups
    first in `metrics.GROUPS` (78: 20, 20, 19, 19)."""
    return {group: size // len(GROUPS) + (i < size % len(GROUPS)) for i, group in enumerate(GROUPS)}


def group_val_rows(splits: dict[str, TensorSplit], class_index: int, size: int) -> dict[str, np.ndarray]:
    """worst-group-val's group-labelled validation split: per group (`GROUP_ROLES`), the rows of its role's held-out
    split, `group_shares(size)` of them drawn without replacement by a fixed seed (all of them where the split holds
    fewer). Members are found by their labels and `has_context`, so a held-out in-distribution image of a minority
    group is never drawn. A larger size keeps the smaller one's images (the first of one permutation per group)."""
    out = {}
    for i, (group, share) in enumerate(group_shares(size).items()):
        role, with_class, with_context = GROUP_ROLES[group]
        split = splits[role]
        member = ((split.labels[:, class_index] > 0.5) == with_class) & (split.has_context == with_context)
        rows = np.flatnonzero(member.numpy())
        order = np.random.default_rng([GROUP_DRAW_SEED, i]).permutation(len(rows))
        out[group] = np.sort(rows[order[:share]])
    return out


def worst_group_metrics(
    logits: dict[str, torch.Tensor], splits: dict[str, TensorSplit], class_index: int, threshold: float, size: int
) -> dict[str, Any]:
    """worst-group-val's scores from the held-out logits by role: each group's accuracy on its drawn images
    (`group_val_rows`; decision `sigmoid(logit) >= threshold`, correct when it matches the group's class) and the
    lowest of them, `worst_group_accuracy` (the rule's metric; an empty group is left out, as in the test metric),
    with the group's name, the images per group and the size asked for."""
    rows = group_val_rows(splits, class_index, size)
    val_rows = np.concatenate([rows["class_with_context"], rows["neither"]])
    val = splits["val"]
    preds = {
        "val": {
            "label": val.labels[val_rows, class_index].numpy(),
            "has_context": val.has_context[val_rows].numpy().astype(float),
            "score": torch.sigmoid(logits["val"][val_rows, class_index]).numpy(),
        },
        **{
            role: {"score": torch.sigmoid(logits[role][rows[role], class_index]).numpy()}
            for role in ("class_without_context", "context_without_class")
        },
    }
    groups = group_accuracies(preds, threshold)
    present = {g: acc for g, (acc, n) in groups.items() if n}
    worst = min(present, key=present.__getitem__) if present else ""
    return {
        "worst_group_accuracy": present[worst] if present else float("nan"),
        "worst_group": worst,
        "group_accuracy": {g: acc for g, (acc, _) in groups.items()},
        "images": {g: n for g, (_, n) in groups.items()},
        "size": size,
    }


def split_logits(model: SplitModel, split: Any, batch_size: int, device: str) -> torch.Tensor:
    """The model's logits for every row of a split, in row order, without a graph (the caller sets eval mode)."""
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
    each rule's entry comes from its own held-out splits only (worst-group-val: at the trial's `group_val_size`,
    `spec.search`, else `GROUP_VAL_SIZE`)."""
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, Any]] = {}
    threshold = spec.train.threshold
    computed: dict[str, torch.Tensor] = {}  # a role's logits, once for every rule that reads it
    for name, rule in RULES.items():
        splits = load_splits(spec, name, data_root)
        class_index = next(iter(splits.values())).classes.index(spec.audited_class)
        for role, split in splits.items():
            if role not in computed:
                computed[role] = split_logits(model, split, spec.train.eval_batch_size, device)
        logits = {role: computed[role] for role in rule.roles}
        splits_used = {role: len(split) for role, split in splits.items()}
        if name == "in-distribution-val":
            metrics = in_distribution_metrics(logits["val"], splits["val"].labels, class_index, threshold)
        elif name == "worst-group-val":
            size = spec.search.get("group_val_size", GROUP_VAL_SIZE)
            metrics = worst_group_metrics(logits, splits, class_index, threshold, size)
            splits_used = metrics.pop("images")
        else:
            metrics = oracle_metrics(*(logits[r] for r in rule.roles), class_index, threshold)
        out[name] = {"metric": rule.metric, "images": splits_used, **metrics}
    model.train(was_training)
    return out
