"""Forgetting controls: what fine-tuning keeps of the pre-trained model, without any label beyond the class.

When the start (the pre-trained model) already separates the class from its context, a method that "removes the
shortcut" may only forget less of it. These are the controls a reviewer asks for first, each a method that a suite
names like any other:

- `no_finetune` ("before fine-tuning"): the start itself, scored on the same splits; no step is taken.
- `linear_probe`: the start's layers frozen (BatchNorm statistics included), only the last linear layer trained.
- `l2sp`: the whole model fine-tuned with `L_cl + (alpha / 2) ||w - w_0||^2`, an L2 pull toward the start's weights
  `w_0` (Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with convolutional networks",
  ICML 2018, "L2-SP"; here on every weight, the head included, since the head keeps its classes).
- `early_stopping`: the baseline's training, and the weights of the epoch whose held-out score under a selection
  rule (`rule`, default in-distribution-val: no group label) was highest; every epoch's scores in the record.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.core.selection_rules import RULES
from benchmark.core.spec import RunSpec
from benchmark.execute.methods.base import HParam, Method, classification_loss
from benchmark.execute.methods.gradcam import GradCAMBaseline
from benchmark.execute.models import SplitModel


class BeforeFineTuning(Method):
    """The start evaluated as it is: the reference every fine-tuned configuration is read against."""

    name = "no_finetune"
    fine_tunes = False
    HPARAMS = {}

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        raise RuntimeError("method 'no_finetune' takes no training step: the run evaluates its start as it is")


def last_linear(model: nn.Module) -> nn.Linear:
    """The model's last `nn.Linear` (its classifier layer): what a linear probe trains."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"method 'linear_probe': model {type(model).__name__} has no linear layer to probe with")
    return linears[-1]


class LinearProbe(Method):
    """`L_cl` on the last linear layer alone: every other weight and the BatchNorm statistics stay the start's.

    The forward pass is taken with every other weight marked constant (and put back right after), so the backward
    pass reaches the probe alone, while anything else that reads the model between steps (the held-out scores,
    Grad-CAM) sees an ordinary one."""

    name = "linear_probe"
    HPARAMS = {}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._model: nn.Module | None = None
        self._others: list[nn.Parameter] = []  # every weight of `_model` but the probe's, found once per model

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        if self._model is not model:
            probe = set(map(id, last_linear(model).parameters()))
            self._model, self._others = model, [p for p in model.parameters() if id(p) not in probe]
        frozen = [p for p in self._others if p.requires_grad]
        model.eval()  # frozen BatchNorm statistics; the probe has none of its own
        try:
            for parameter in frozen:
                parameter.requires_grad_(False)
            cl = classification_loss(model(batch["image"]), batch["labels"])
        finally:
            for parameter in frozen:
                parameter.requires_grad_(True)
        return {"total": cl, "cl": cl}


class L2SP(Method):
    """`L_cl + (alpha / 2) sum ||w - w_0||^2`, `w_0` the weights at the first training step (the start)."""

    name = "l2sp"
    HPARAMS = {"alpha": HParam(0.01, 1e-4, 1.0, log=True, doc="weight of the pull toward the start's weights")}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self._start: list[torch.Tensor] | None = None

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        weights = [p for p in model.parameters() if p.requires_grad]
        if self._start is None:  # the first call sees the start: the loop has taken no step yet
            self._start = [w.detach().clone() for w in weights]
        cl = classification_loss(model(batch["image"]), batch["labels"])
        sp = torch.stack([(w - w0).pow(2).sum() for w, w0 in zip(weights, self._start, strict=True)]).sum()
        return {"total": cl + 0.5 * self.alpha * sp, "cl": cl, "sp": sp}


class EarlyStopping(GradCAMBaseline):
    """The Grad-CAM baseline's steps, then its weights at the epoch with the highest held-out score under `rule`
    (`selection_rules.RULES`; ties: the earliest; an epoch whose score is not finite is never chosen, and where none
    is, the last epoch's weights stay). The held-out splits are scored after every epoch (`needs_heldout`), in eval
    mode and without a step, so the trajectory is the baseline's step for step; only the weights kept differ."""

    name = "early_stopping"
    needs_heldout = True
    HPARAMS = {
        "rule": HParam(
            "in-distribution-val",
            doc="the selection rule whose held-out metric picks the epoch: in-distribution-val (no group label, "
            "as GAIN uses none), worst-group-val (78 group-labelled held-out images) or oracle (an upper bound)",
        )
    }

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.rule not in RULES:
            raise ValueError(f"method {self.name!r}: rule must be one of {', '.join(RULES)}, got {self.rule!r}")
        self._best: dict[str, torch.Tensor] | None = None  # the weights of `_best_epoch`
        self._best_epoch: int | None = None
        self._scores: list[float] = []

    def epoch_end(self, model: SplitModel, epoch: int, heldout: dict[str, dict[str, Any]] | None) -> None:
        if heldout is None:
            raise RuntimeError(f"method {self.name!r}: the training loop gave no held-out scores after epoch {epoch}")
        score = float(heldout[self.rule][RULES[self.rule].metric])
        self._scores.append(score)
        if math.isfinite(score) and (self._best_epoch is None or score > self._scores[self._best_epoch]):
            self._best_epoch = epoch  # strictly better only: ties keep the earliest
            self._best = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def after_training(
        self,
        model: SplitModel,
        train: Any,
        budget_rows: torch.Tensor,
        spec: RunSpec,
        *,
        data_root: Path | None = None,
        device: str = "cpu",
    ) -> dict[str, Any]:
        """Load the chosen epoch's weights; the record's `after_training` says which epoch, by which rule and
        metric, and every epoch's score."""
        epoch = self._best_epoch if self._best_epoch is not None else len(self._scores) - 1
        if self._best is not None:
            model.load_state_dict(self._best)
        return {"rule": self.rule, "metric": RULES[self.rule].metric, "epoch": epoch,
                "epochs": len(self._scores), "scores": self._scores}  # fmt: skip
