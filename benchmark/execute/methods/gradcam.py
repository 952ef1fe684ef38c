"""The Grad-CAM baseline: the classifier trained with `L_cl` alone; its maps are plain Grad-CAM maps."""

from __future__ import annotations

import torch

from benchmark.execute.methods.base import Method, classification_loss
from benchmark.execute.models import SplitModel


class GradCAMBaseline(Method):
    name = "gradcam"
    HPARAMS = {}

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        cl = classification_loss(model(batch["image"]), batch["labels"])
        return {"total": cl, "cl": cl}
