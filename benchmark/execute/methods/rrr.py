"""Right for the Right Reasons: penalise input gradients outside the pixel-labelled objects.

Ross, Hughes, Doshi-Velez, "Right for the Right Reasons: Training Differentiable Models by Constraining their
Explanations", IJCAI 2017, eq. 1: `L_cl + lambda sum_d (A_d * d/dx_d sum_k log p_k)^2`, with `A = 1 - M` the
"irrelevant" region. Here, for each image b inside the pixel-label budget,

    R_b = || (1 - M_b) * d/dx_b sum_{c in gt(b)} log sigmoid(s_c(x_b)) ||^2   (summed over channels and pixels),

`M_b` the union of the masks of b's ground-truth classes with the ignore pixels (255) counted as inside (not
penalised), `s` the logits, and `p = sigmoid(s)` the multi-label class probabilities. `L_rrr = (1/B) sum_b R_b`,
images outside the budget adding 0 (gain.py's `batch_mean_of_image_means` convention), and the loss is
`L_cl + lambda L_rrr`. The input gradient is taken with `create_graph=True` (double backpropagation), in a second
pass over the pixel-labelled images only, with BatchNorm in `grad_bn` mode ("eval": running statistics, so each
image's gradient is its own, as with the paper's batch-free models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.execute.methods.base import HParam, Method, batchnorm_mode, classification_loss
from benchmark.execute.models import SplitModel

IGNORE = 255


class RRR(Method):
    """`L_cl + lambda L_rrr` on the images inside the pixel-label budget (Ross et al., IJCAI 2017)."""

    name = "rrr"
    uses_pixel_labels = True
    HPARAMS = {
        "lam": HParam(10.0, 1e-2, 1e4, log=True, doc="weight lambda of the input-gradient penalty"),
        "grad_bn": HParam("eval", doc="BatchNorm in the input-gradient pass: 'eval' (running statistics) or 'train'"),
    }

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        cl = classification_loss(model(batch["image"]), batch["labels"])
        penalty = input_gradient_penalty(model, batch, self.grad_bn) if self.lam else cl.new_zeros(())
        return {"total": cl + self.lam * penalty, "cl": cl, "rrr": penalty}


def input_gradient_penalty(model: SplitModel, batch: dict[str, torch.Tensor], bn_mode: str = "eval") -> torch.Tensor:
    """`L_rrr = (1/B) sum_{b in budget} ||(1 - M_b) * d(sum_{c in gt(b)} log p_c)/dx_b||^2`, differentiable in the
    model's parameters; only the masks of images with `has_mask` True are read."""
    image, labels = batch["image"], batch["labels"]
    rows = batch["has_mask"].nonzero().squeeze(1)
    if rows.numel() == 0:
        return image.new_zeros(())
    x = image[rows].detach().requires_grad_(True)
    gt = labels[rows] > 0.5
    with batchnorm_mode(model, bn_mode):
        log_p = F.logsigmoid(model(x))
    (grad,) = torch.autograd.grad((log_p * gt).sum(), x, create_graph=True)
    masks = batch["mask"][rows]
    gt_or_background = torch.cat([gt.new_zeros(gt.shape[0], 1), gt], 1)  # column 0: background, never inside
    index = torch.where(masks == IGNORE, 0, masks).clamp(0, gt.shape[1]).flatten(1)
    inside = gt_or_background.gather(1, index).view_as(masks) | (masks == IGNORE)
    per_image = (grad * ~inside.unsqueeze(1)).pow(2).flatten(1).sum(1)
    return per_image.sum() / image.shape[0]
