"""The Energy loss of Rao, Böhle, Parchami-Araghi, Schiele, "Studying How to Efficiently and Effectively Guide Models
with Explanations", ICCV 2023 (eq. 5): the share of an attribution map's positive energy that falls outside the
annotated object, penalised beside the classification loss.

Here the attribution is Grad-CAM at the model's attention layer (the layer every method of the suite reads), the
paper's B-cos networks and their attributions are out of scope. For each image b inside the pixel-label budget and
each ground-truth class c of b:

    A_bc = relu(sum_k w_ck F_bk)          (Grad-CAM; weights w in the graph: the loss optimises the map itself)
    E_bc = sum_{p in M_bc} A_bc(p) / sum_p A_bc(p)   over the pixels that are not ignore (255),

at the image's size (the map upsampled bilinearly, as every Grad-CAM of the suite; the mask stays exact), and
`L_energy = (1/B) sum_b mean_c (1 - E_bc)`, images outside the budget adding 0 (`batch_mean_of_image_means`); an
all-zero map costs 1, the most, since it shows no evidence on the object. The loss is `L_cl + lam L_energy`.

`1 - E_bc` is exactly GAIN_ext's `outside_energy` variant of `L_e` (`gain.outside_energy_loss`), which this module
reuses; what differs is the method around it: no attention mining, no warm-up, and Grad-CAM's channel weights kept in
the graph as Rao et al. differentiate the attribution through the model (GAIN's `L_e` treats them as constants).
The maps are read off the classification pass's own features (one forward pass, BatchNorm as it trains; the head
re-run with running statistics only where it holds training BatchNorm, `attention.cam_logits`), so there is no second
pass and no `grad_bn` setting as in RRR.

Against the authors' code (github.com/sukrutrao/Model-Guidance, `losses.py`, `train.py`), the same Grad-CAM (ReLU of
the weighted features, weights in the graph, bilinear upsampling) and per-map loss, but: every ground-truth class of
an image, averaged (they draw one at random per image and step); the batch mean (they sum over the batch, so their
lambda at batch size B is this one's lambda / B); masks instead of boxes.
"""

from __future__ import annotations

import torch

from benchmark.execute.attention import cam_logits, grad_cam_from
from benchmark.execute.methods.base import HParam, Method, classification_loss
from benchmark.execute.methods.gain import outside_energy_loss
from benchmark.execute.models import SplitModel


class Energy(Method):
    """`L_cl + lam L_energy` on the images inside the pixel-label budget (Rao et al., ICCV 2023)."""

    name = "energy"
    uses_pixel_labels = True
    HPARAMS = {
        "lam": HParam(1.0, 1e-2, 1e2, log=True, doc="weight lambda of the Energy loss (Rao et al. tune it over "
                      "orders of magnitude; 1: both losses start at the same scale)"),
    }

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        image, labels = batch["image"], batch["labels"]
        features = model.features(image)
        logits = model.head(features)
        cl = classification_loss(logits, labels)
        energy = energy_loss(model, features, logits, batch) if self.lam else cl.new_zeros(())
        return {"total": cl + self.lam * energy, "cl": cl, "energy": energy}


def energy_loss(
    model: SplitModel, features: torch.Tensor, logits: torch.Tensor, batch: dict[str, torch.Tensor]
) -> torch.Tensor:
    """`L_energy`: per (pixel-labelled image, ground-truth class), the share of the positive Grad-CAM energy outside
    the class mask (1 for an all-zero map), averaged over each image's classes, summed over the pixel-labelled
    images and divided by the batch size; differentiable through the map and its channel weights."""
    image, labels = batch["image"], batch["labels"]
    pair_image, pair_class = (labels > 0.5).nonzero(as_tuple=True)
    keep = batch["has_mask"][pair_image].to(pair_image.device)
    pair_image, pair_class = pair_image[keep], pair_class[keep]
    if pair_image.numel() == 0:
        return logits.new_zeros(())
    raw = grad_cam_from(
        features,
        cam_logits(model, features, logits),
        pair_class,
        image_index=pair_image,
        size=image.shape[-2:],
        normalise=False,
        head=model.head,
        create_graph=True,
    )
    return outside_energy_loss(raw, batch["mask"][pair_image], pair_class, pair_image, image.shape[0])
