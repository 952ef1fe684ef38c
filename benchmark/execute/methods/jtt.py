"""Just Train Twice (Liu et al., ICML 2021, "Just Train Twice: Improving Group Robustness without Training Group
Information"): train the baseline for `first_epochs` (T) epochs, take the training images that identification model
gets wrong (the error set), then train again from the start with each of them weighted `upweight` (lambda) times.
No group label and no mask, like GAIN: GAIN's rival at zero labels.

Here an image is in the error set when the identification model's call on the audited class (score >=
`train.threshold`) disagrees with its label: the class the suite audits, whose errors the context decides. JTT
up-samples the error set; the loss here weights it instead, `sum_i w_i l_i / sum_i w_i` over a batch, `l_i` an
image's `L_cl` (the mean over classes), which up-sampling matches in expectation without changing the batches, so
the second phase draws exactly the baseline's batches.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.core.spec import RunSpec
from benchmark.execute.heldout import split_logits
from benchmark.execute.methods.base import HParam, TrainingPhase
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.execute.models import SplitModel


def upweights(wrong: torch.Tensor, upweight: float) -> torch.Tensor:
    """Each training image's weight: `upweight` where the identification model was wrong, 1 elsewhere."""
    return torch.where(wrong.to(torch.bool), float(upweight), 1.0).to(torch.float32)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """`sum_i w_i l_i / sum_i w_i`, `l_i` the image's binary cross-entropy averaged over classes (`L_cl` per image)."""
    per_image = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(dim=1)
    return (weights * per_image).sum() / weights.sum()


def audited_calls(model: SplitModel, train: Any, class_index: int, threshold: float, batch_size: int,
                  device: str) -> torch.Tensor:  # fmt: skip
    """The model's call on the audited class (score >= `threshold`) for every training image, in eval mode and
    without augmentation, in row order (`heldout.split_logits`, as the held-out splits are scored)."""
    was_training = model.training
    model.eval()
    logits = split_logits(model, train, batch_size, device)
    model.train(was_training)
    return torch.sigmoid(logits[:, class_index]) >= threshold


class JTT(GradCAMBaseline):
    """`L_cl` weighted by the error set of a first, shorter baseline run (`before_training`)."""

    name = "jtt"
    HPARAMS = {
        "first_epochs": HParam(1, 1, 4, integer=True, doc="T: epochs of the identification model (the baseline's "
                               "training, stopped there)"),
        "upweight": HParam(20.0, 2.0, 100.0, log=True, doc="lambda: the weight of a training image the "
                           "identification model gets wrong"),
    }  # fmt: skip

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.first_epochs < 1 or self.upweight < 1:
            raise ValueError(f"method {self.name!r}: first_epochs must be at least 1 and upweight at least 1, got "
                             f"{self.first_epochs!r} and {self.upweight!r}")  # fmt: skip
        self._weights: torch.Tensor | None = None

    def before_training(
        self, model: SplitModel, train: Any, spec: RunSpec, *, phase: TrainingPhase, device: str = "cpu"
    ) -> dict[str, Any]:
        """Train a copy of the start as the baseline for `first_epochs` epochs (the identification model), and weight
        the training images it gets wrong on the audited class; the record says how many, with and without it."""
        identification = copy.deepcopy(model)
        curve = phase(identification, GradCAMBaseline(), int(self.first_epochs))
        class_index = train.classes.index(spec.audited_class)
        calls = audited_calls(identification, train, class_index, spec.train.threshold, spec.train.eval_batch_size,
                              device)  # fmt: skip
        has_class = train.labels[:, class_index].cpu() > 0.5
        wrong = calls != has_class
        self._weights = upweights(wrong, self.upweight)
        return {
            "first_epochs": int(self.first_epochs),
            "upweight": float(self.upweight),
            "error_set": int(wrong.sum()),
            "error_set_with_class": int((wrong & has_class).sum()),
            "error_set_without_class": int((wrong & ~has_class).sum()),
            "training_images": len(train),
            "curve": curve,
        }

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        if self._weights is None:
            raise RuntimeError(f"method {self.name!r}: no error set; the run calls before_training first")
        logits = model(batch["image"])
        if self._weights.device != logits.device:  # once: the weights live where the batches do
            self._weights = self._weights.to(logits.device)
        weights = self._weights[batch["index"]]
        cl = weighted_loss(logits, batch["labels"], weights)
        return {"total": cl, "cl": cl}
