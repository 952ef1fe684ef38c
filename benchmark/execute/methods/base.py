"""What every training method shares: declared hyperparameters and the loss-dict contract."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.core.settings import ANNOTATIONS
from benchmark.execute.models import SplitModel, batchnorm_mode

if TYPE_CHECKING:
    from benchmark.core.spec import RunSpec

BUDGET_PIXEL, BUDGET_GROUP = "pixel", "group"
# The annotation types that cover a whole object, and why a method that cuts objects out needs one of them.
WHOLE_OBJECT = tuple(a for a in ANNOTATIONS if a not in ("points", "scribble"))
CUTS_OUT = ("it cuts each object out of its image by its label, to paste it elsewhere or fill it in; a few clicked "
            "pixels or a stroke cover too little of the object, so the boat would stay in place under a changed "
            "label: use mask, box or coarse")
BUDGET_LABELS: tuple[str | None, ...] = (BUDGET_PIXEL, BUDGET_GROUP, None)
"""What a method's budget counts (`Method.budget_labels`): pixel labels, group labels, or no budget at all."""
BUDGET_WORDS: dict[str | None, str] = {
    BUDGET_PIXEL: "uses pixel labels",
    BUDGET_GROUP: "uses group labels",
    None: "no pixel labels",
}
"""`budget_labels` in the words `gain-bench methods`, `list` and docs/methods.md show."""

__all__ = [
    "BUDGET_GROUP",
    "BUDGET_LABELS",
    "BUDGET_PIXEL",
    "BUDGET_WORDS",
    "HParam",
    "Method",
    "TrainingPhase",
    "batch_mean_of_image_means",
    "batchnorm_mode",
    "classification_loss",
]


@dataclass(frozen=True)
class HParam:
    """A hyperparameter's default and its random-search distribution: uniform on [low, high] (log-uniform when
    `log`; uniform over the integers low..high when `integer`), or uniform over `choices`; neither: fixed."""

    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    doc: str = ""
    choices: tuple[Any, ...] | None = None

    def kind_error(self, value: Any) -> str | None:
        """What a value must be where it is not of the default's kind (a number for a numeric default, a whole
        number for an integer one, true or false for a flag, a text for a text); None where it is. A default of
        None, or `choices` (which the method checks itself), allows anything here."""
        default = self.default
        if self.choices is not None:  # a method says what its choices are in its own words
            return None
        if isinstance(default, bool):
            return None if isinstance(value, bool) else "true or false"
        if isinstance(default, int) or self.integer:
            ok = isinstance(value, int) and not isinstance(value, bool)
            return None if ok else "a whole number"
        if isinstance(default, float):
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            return None if ok else "a finite number"
        if isinstance(default, str):
            return None if isinstance(value, str) else "a text"
        return None

    @property
    def searched(self) -> bool:
        """Whether a random search draws this hyperparameter (it has a distribution)."""
        return self.choices is not None or (self.low is not None and self.high is not None)

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw from the search distribution (the default when there is none)."""
        if self.choices is not None:
            return self.choices[int(rng.integers(len(self.choices)))]
        if self.low is None or self.high is None:
            return self.default
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        value = float(rng.uniform(lo, hi))
        return math.exp(value) if self.log else value

    def describe(self) -> str:
        """The distribution in words, e.g. `log-uniform [0.1, 3]`."""
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        if self.low is None or self.high is None:
            return "fixed"
        kind = "integer" if self.integer else "log-uniform" if self.log else "uniform"
        return f"{kind} [{self.low:g}, {self.high:g}]"


class Method:
    """Base class: `training_loss(model, batch, epoch=...)` returns `{"total": ..., "cl": ..., ...}`.

    Subclasses declare `HPARAMS` next to their loss; unknown parameters are an error that lists the known ones.
    """

    name: ClassVar[str] = ""
    # Whether the method reads masks (pixel labels), in training or after it; a placebo mask control needs it.
    uses_pixel_labels: ClassVar[bool] = False
    # Which labels the budget (`RunSpec.budget`) counts: "pixel" (masks of the budget's training images), "group"
    # (group-labelled held-out images, no masks: `dfr`) or None (the method uses no budget: it runs at budget 0 only).
    # Left out, it follows `uses_pixel_labels` ("pixel" or None), so a method that only declares that keeps working.
    budget_labels: ClassVar[str | None] = None
    # Whether the training loop sees the budget (`has_mask` rows, `train.mask_batch`); False for a method that uses
    # its budget only in `after_training` (`dfr`, `dfr_counterfactual`), which then trains exactly like `gradcam`.
    budget_in_training: ClassVar[bool] = True
    # The annotation types (`settings.ANNOTATIONS`) the method can train with, and why it refuses the others.
    annotations: ClassVar[tuple[str, ...]] = ANNOTATIONS
    annotation_refusal: ClassVar[str] = ""
    # The smallest budget the method runs at (0: any).
    min_budget: ClassVar[int] = 0
    HPARAMS: ClassVar[dict[str, HParam]] = {}
    # Hyperparameters declared after results existed: left out of `params` at their default, so every earlier run of
    # the method keeps its config hash (as `spec.ADDED_LATER` does for train keys).
    ADDED_LATER: ClassVar[tuple[str, ...]] = ()
    # Whether the run trains the model at all; False: the start (the pre-trained model) is evaluated as it is.
    fine_tunes: ClassVar[bool] = True
    # Detached per-step measurements `training_loss` may return beside the loss parts (not part of "total"); the
    # training loop averages each over the steps that report it and records it per epoch, under its key.
    DIAGNOSTICS: ClassVar[dict[str, str]] = {}
    # Whether the training loop scores the held-out selection splits after every epoch for the method (`epoch_end`
    # gets them), with or without `train.diagnostics`; the built-in data only (a real dataset has none to spare).
    needs_heldout: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "budget_labels" not in cls.__dict__ and "uses_pixel_labels" in cls.__dict__:
            cls.budget_labels = BUDGET_PIXEL if cls.uses_pixel_labels else None
        if cls.budget_labels not in BUDGET_LABELS:
            raise ValueError(f"method {cls.name!r}: budget_labels must be one of {BUDGET_LABELS}, got "
                             f"{cls.budget_labels!r}")

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.HPARAMS))
        if unknown:
            allowed = ", ".join(sorted(self.HPARAMS)) or "none"
            raise ValueError(f"method {self.name!r}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        for key, value in params.items():
            if (kind := self.HPARAMS[key].kind_error(value)) is not None:
                raise ValueError(f"method {self.name!r}: {key} must be {kind}, got {value!r}")
        self.params: dict[str, Any] = {k: h.default for k, h in self.HPARAMS.items()} | params
        for key in self.ADDED_LATER:
            if key in self.params and self.params[key] == self.HPARAMS[key].default:
                del self.params[key]

    def __getattr__(self, key: str) -> Any:
        if "params" not in self.__dict__:  # e.g. while unpickling, before __init__ ran
            raise AttributeError(key)
        params = self.__dict__["params"]
        if key in params:
            return params[key]
        if key in self.ADDED_LATER and key in self.HPARAMS:  # left out of params at its default
            return self.HPARAMS[key].default
        raise AttributeError(key)

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def exact_variant(self) -> Method | None:
        """The same method whose update is the exact gradient of its total loss, where its own update is not
        (GAIN's constant Grad-CAM weights); None where it already is. The training diagnostics compare the two."""
        return None

    def before_training(
        self, model: SplitModel, train: Any, spec: RunSpec, *, phase: TrainingPhase, device: str = "cpu"
    ) -> dict[str, Any] | None:
        """A step before the training loop (`train.run` calls it right before `fit`, the start in `model`): it may
        run training phases of its own, `phase(a_model, a_method, epochs)` (the run's training loop on `a_model` with
        `a_method` for `epochs` epochs, from the run's seed, without the budget, returning its curve), and prepare
        what its loss reads (`jtt`: the identification model and the up-weights). What it returns is stored as the
        record's `before_training` entry; None (the default: nothing to do) stores none."""
        return None

    def epoch_end(self, model: SplitModel, epoch: int, heldout: dict[str, dict[str, Any]] | None) -> None:
        """Called after each epoch of the training loop with `heldout.evaluate`'s scores (every selection rule's
        metrics on its held-out splits) where the loop computed them (`needs_heldout`, `train.diagnostics`), else
        None. The default does nothing."""

    def after_training(
        self,
        model: SplitModel,
        train: Any,
        budget_rows: torch.Tensor,
        spec: RunSpec,
        *,
        data_root: Path | None = None,
        device: str = "cpu",
    ) -> dict[str, Any] | None:
        """A step after the training loop, before evaluation (`train.run` calls it right after `fit`): it may change
        `model` in place (`dfr`: refit the last layer). `train` is the training split the loop saw (with a placebo
        control's masks where the run has one), `budget_rows` the budget's rows of it, `spec` the `RunSpec`. What
        it returns is stored as the record's `after_training` entry; None (the default: nothing to do) stores none."""
        return None

    def erased_images(self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int) -> torch.Tensor | None:
        """The images a method runs a second pass on (GAIN: the erased images), detached, for the diagnostics'
        BatchNorm statistics; None for a method without such a pass, or while it is off."""
        return None


TrainingPhase = Callable[[SplitModel, Method, int], list[dict[str, float]]]
"""`Method.before_training`'s `phase(model, method, epochs)`: the run's training loop for that many epochs."""


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`L_cl`: the multi-label soft-margin loss, i.e. BCE on logits averaged over classes and images."""
    return F.binary_cross_entropy_with_logits(logits, labels)


def batch_mean_of_image_means(values: torch.Tensor, image_index: torch.Tensor, n_images: int) -> torch.Tensor:
    """`(1/B) sum_b (1/n_b) sum_{pairs p of b} values[p]`: the batch mean of per-image losses.

    The paper trains with batch 1, so each image's loss is `L_cl + alpha L_am + omega_e L_e`; a batch of B images
    averages those per-image losses. An image without pairs (no label, or no pixel label for `L_e`) contributes 0,
    so a pixel-labelled image weighs `omega_e / B`, exactly as in the paper, however few of them a batch holds.
    """
    sums = values.new_zeros(n_images).index_add(0, image_index, values)
    counts = torch.bincount(image_index, minlength=n_images).clamp_min(1)
    return (sums / counts).sum() / max(n_images, 1)
