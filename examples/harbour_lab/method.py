"""A method with its own loss: the classification loss plus the share of Grad-CAM energy outside the object mask."""

import torch

from benchmark.api import HParam, Method, classification_loss, grad_cam, register_method


@register_method(display="Outside energy", colour="#CC79A7")
class OutsideEnergy(Method):
    """`L_cl + lam * mean_b sum(cam_b * outside_b) / sum(cam_b)` over the pixel-labelled images of the batch."""

    name = "outside_energy"
    uses_pixel_labels = True
    HPARAMS = {
        "lam": HParam(1.0, 0.1, 10.0, log=True, doc="weight of the outside-energy term"),
        "warmup_epochs": HParam(1, 0, 2, integer=True, doc="epochs of L_cl alone before the term is on"),
    }

    def training_loss(self, model, batch: dict[str, torch.Tensor], *, epoch: int) -> dict[str, torch.Tensor]:
        cl = classification_loss(model(batch["image"]), batch["labels"])
        rows = batch["has_mask"].nonzero().squeeze(1)
        if epoch < self.warmup_epochs or rows.numel() == 0:
            return {"total": cl, "cl": cl, "energy": cl.new_zeros(())}
        classes = batch["labels"][rows].argmax(1)  # the image's (first) labelled class
        cam = grad_cam(model, batch["image"][rows], classes, create_graph=True)
        outside = (batch["mask"][rows] != classes.unsqueeze(1).unsqueeze(2) + 1) & (batch["mask"][rows] != 255)
        energy = ((cam * outside).flatten(1).sum(1) / cam.flatten(1).sum(1).clamp_min(1e-6)).mean()
        return {"total": cl + self.lam * energy, "cl": cl, "energy": energy}
