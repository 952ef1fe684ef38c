"""What every training method shares: declared hyperparameters and the loss-dict contract."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.models import SplitModel


@dataclass(frozen=True)
class HParam:
    """A hyperparameter's default and its random-search distribution (uniform, or log-uniform when `log`)."""

    default: Any
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    doc: str = ""

    def sample(self, rng: np.random.Generator) -> Any:
        if self.low is None or self.high is None:
            return self.default
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        value = float(rng.uniform(lo, hi))
        value = math.exp(value) if self.log else value
        return round(value) if self.integer else value


class Method:
    """Base class: `training_loss(model, batch, epoch=...)` returns `{"total": ..., "cl": ..., ...}`.

    Subclasses declare `HPARAMS` next to their loss; unknown parameters are an error that lists the known ones.
    """

    name: ClassVar[str] = ""
    uses_pixel_labels: ClassVar[bool] = False
    HPARAMS: ClassVar[dict[str, HParam]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.HPARAMS))
        if unknown:
            allowed = ", ".join(sorted(self.HPARAMS)) or "none"
            raise ValueError(f"method {self.name!r}: unknown parameter(s) {', '.join(unknown)}; allowed: {allowed}")
        self.params: dict[str, Any] = {k: h.default for k, h in self.HPARAMS.items()} | params

    def __getattr__(self, key: str) -> Any:
        params = self.__dict__.get("params", {})
        if key in params:
            return params[key]
        raise AttributeError(key)

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`L_cl`: the multi-label soft-margin loss, i.e. BCE on logits averaged over classes and images."""
    return F.binary_cross_entropy_with_logits(logits, labels)


@contextmanager
def batchnorm_mode(model: torch.nn.Module, mode: str) -> Iterator[None]:
    """Run a pass with BatchNorm in `mode` ("eval": running statistics, not updated; "train": batch statistics)."""
    if mode not in ("eval", "train"):
        raise ValueError(f"masked_bn must be 'eval' or 'train', got {mode!r}")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.training for m in norms]
    for m in norms:
        m.train(mode == "train" and m.training)
    try:
        yield
    finally:
        for m, was in zip(norms, saved, strict=True):
            m.train(was)


def per_image_mean(values: torch.Tensor, image_index: torch.Tensor, n_images: int) -> torch.Tensor:
    """Mean over images of each image's mean over its pairs; images without pairs are left out (0 if none)."""
    sums = values.new_zeros(n_images).index_add(0, image_index, values)
    counts = torch.bincount(image_index, minlength=n_images)
    present = counts > 0
    if not bool(present.any()):
        return values.new_zeros(())
    return (sums[present] / counts[present]).mean()
