"""The selection rules a hyperparameter search can name (`[search] rule`): which held-out data each reads and
which metric it maximises. `benchmark.execute.heldout` scores them after training, `benchmark.core.selection` chooses
by them."""

from __future__ import annotations

from dataclasses import dataclass

# The default size of `worst-group-val`'s group-labelled validation split (`[search] group_val_size`): as many images
# as the middle pixel-label budget, spread as evenly as possible over the four groups (20/20/19/19).
GROUP_VAL_SIZE = 78


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
    "worst-group-val": Rule(
        "worst-group-val",
        ("val", "class_without_context", "context_without_class"),
        "worst_group_accuracy",
        False,
        "the lowest accuracy of the four (class x context) groups on a small group-labelled validation split: "
        "[search] group_val_size images (default 78, 20/20/19/19) drawn group-balanced, once and seeded, from the "
        "held-out selection data (its own seed, disjoint from every test split): with class and context and with "
        "neither from the held-out in-distribution split, the two shifted groups from the held-out shifted groups; "
        "realistic, as a few group labels at validation time are (the model selection of Sagawa et al., ICLR 2020, "
        "and SubpopBench's worst-group selection, Yang et al., ICML 2023)",
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
