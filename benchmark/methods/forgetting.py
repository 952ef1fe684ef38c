"""Forgetting controls: what fine-tuning keeps of the pre-trained model, without any label beyond the class.

When the start (the pre-trained model) already separates the class from its context, a method that "removes the
shortcut" may only forget less of it. These are the controls a reviewer asks for first, each a method that a suite
names like any other:

- `no_finetune` ("before fine-tuning"): the start itself, scored on the same splits; no step is taken.
- `linear_probe`: the start's layers frozen (BatchNorm statistics included), only the last linear layer trained.
- `l2sp`: the whole model fine-tuned with `L_cl + (alpha / 2) ||w - w_0||^2`, an L2 pull toward the start's weights
  `w_0` (Li, Grandvalet & Davoine, "Explicit inductive bias for transfer learning with convolutional networks",
  ICML 2018, "L2-SP"; here on every weight, the head included, since the head keeps its classes).
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.methods.base import HParam, Method, classification_loss
from benchmark.models import SplitModel


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
