"""The selection rules a hyperparameter search can name (`[search] rule`): which held-out data each reads and
which metric it maximises. `benchmark.heldout` scores them after training, `benchmark.selection` chooses by them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A selection rule: the roles of the held-out data it reads, the metric it maximises, and whether its result is
    an upper bound (it sees the shift) rather than a realistic estimate."""

    name: str
    roles: tuple[str, ...]
    metric: str
    upper_bound: bool
    doc: str


RULES: dict[str, Rule] = {
    "in-distribution-val": Rule(
        "in-distribution-val",
        ("val",),
        "val_map",
        False,
        "mean average precision over every class on a held-out in-distribution split (the training bias, its own "
        "seed); no shifted-group image or label is read",
    ),
    "oracle": Rule(
        "oracle",
        ("class_without_context", "context_without_class"),
        "worst_shifted_group_accuracy",
        True,
        "the worse of the two shifted-group accuracies on held-out shifted groups (their own seed, disjoint from the "
        "test groups); an upper bound, since it selects on the shift the test measures",
    ),
}
