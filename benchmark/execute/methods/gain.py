"""GAIN (self-guided attention mining) and GAIN_ext (plus pixel-level supervision), as in Li et al., "Tell Me Where to
Look: Guided Attention Inference Network", CVPR 2018 (docs/methods.md writes the losses out).

Li et al., "Tell Me Where to Look: Guided Attention Inference Network", CVPR 2018, eq. 3-7:
`T(A) = sigmoid(omega (A - sigma))`, `I* = I - T(A) * I`, `L_am = (1/n) sum_c sigmoid(s^c(I*^c))` over the image's
ground-truth classes, `L_self = L_cl + alpha L_am`; GAIN_ext adds `omega_e L_e`, `L_e = (1/n) sum_c mean (A^c - H^c)^2`
on the images inside the pixel-label budget. The paper trains with batch 1; a batch here averages those per-image
losses, so every image, pixel-labelled or not, weighs 1/B.
"""

from __future__ import annotations

import torch

from benchmark.core.settings import BN_MODES
from benchmark.execute.attention import cam_logits, grad_cam_from, minmax_normalise
from benchmark.execute.folding import folded_for
from benchmark.execute.methods.base import (
    HParam,
    Method,
    batch_mean_of_image_means,
    batchnorm_mode,
    classification_loss,
)
from benchmark.execute.models import SplitModel

IGNORE = 255
E_LOSSES = ("mse", "outside_energy")
ATTENTION_CONTROLS = ("attended", "random", "inverted")
"""What GAIN's erased pass erases (`attention_control`): the attended region `T(A)` (the method), the same soft mask
moved to a random place (each pair's own circular shift: the same area and shape, anywhere), or its complement."""


class GAIN(Method):
    """`L_cl + alpha L_am`, after `warmup_epochs` epochs of plain classification."""

    name = "gain"
    HPARAMS = {
        "alpha": HParam(1.0, 0.1, 3.0, log=True, doc="weight of L_am (paper: 1)"),
        "sigma": HParam(0.5, 0.3, 0.7, doc="soft-mask threshold of T(A) (public implementations: 0.5)"),
        "omega": HParam(10.0, 5.0, 20.0, doc="soft-mask scale of T(A) (public implementations: 10)"),
        "warmup_epochs": HParam(2, 0, 4, integer=True, doc="epochs of plain classification before L_am and L_e start"),
        "masked_bn": HParam(
            "eval",
            doc="BatchNorm in the erased pass: 'eval' (running statistics, public implementations), 'batch' (the "
            "erased images' batch statistics, running statistics untouched) or 'train' (batch statistics that also "
            "update the running statistics)",
        ),
        "norm_eps": HParam(1e-12, doc="guard in the min-max normalisation (A-min)/(max-min+eps) of training maps"),
        "exact_gradient": HParam(
            False,
            doc="keep Grad-CAM's channel weights in the graph, so the update is the gradient of the total loss "
            "(default: constants, as public implementations)",
        ),
    }
    HPARAMS["attention_control"] = HParam(
        "attended",
        doc="what the erased pass erases: 'attended' (T(A), the method), 'random' (a placebo: T(A) moved to a random "
        "place, same area and shape) or 'inverted' (its complement)",
    )
    ADDED_LATER = ("attention_control",)
    DIAGNOSTICS = {"mask_share": "share of the image the soft mask T(A) erases, mean over the erased images"}

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        bn = self.params.get("masked_bn", "eval")
        if bn not in BN_MODES:
            raise ValueError(f"method {self.name!r}: masked_bn must be one of {', '.join(BN_MODES)}, got {bn!r}")
        if self.attention_control not in ATTENTION_CONTROLS:
            raise ValueError(f"method {self.name!r}: attention_control must be one of "
                             f"{', '.join(ATTENTION_CONTROLS)}, got {self.attention_control!r}")

    def exact_variant(self) -> GAIN | None:
        return None if self.exact_gradient else type(self)(**(self.params | {"exact_gradient": True}))

    def erased_images(self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int) -> torch.Tensor | None:
        image, labels = batch["image"], batch["labels"]
        pair_image, pair_class = (labels > 0.5).nonzero(as_tuple=True)
        if not self._mining(epoch, pair_image):
            return None
        with torch.enable_grad():
            features = model.features(image)
            raw = self._raw_maps(model, features, model.head(features), pair_image, pair_class, image.shape[-2:])
        soft_mask = self.erase_mask(self.soft_mask(minmax_normalise(raw.detach(), self.norm_eps)))
        return (image[pair_image] * (1.0 - soft_mask)).detach()

    def _raw_maps(
        self,
        model: SplitModel,
        features: torch.Tensor,
        logits: torch.Tensor,
        pair_image: torch.Tensor,
        pair_class: torch.Tensor,
        size: torch.Size,
    ) -> torch.Tensor:
        """The unnormalised Grad-CAM map of every (image, ground-truth class) pair at the image's size; its channel
        weights are constants unless `exact_gradient`."""
        return grad_cam_from(
            features,
            cam_logits(model, features, logits),
            pair_class,
            image_index=pair_image,
            size=size,
            normalise=False,
            head=model.head,
            create_graph=self.exact_gradient,
        )

    def soft_mask(self, maps: torch.Tensor) -> torch.Tensor:
        """`T(A) = sigmoid(omega (A - sigma))`, `[P,1,H,W]`."""
        return torch.sigmoid(self.omega * (maps - self.sigma)).unsqueeze(1)

    def erase_mask(self, soft_mask: torch.Tensor) -> torch.Tensor:
        """What the erased pass erases, `[P,1,H,W]`: `T(A)` itself, or its placebo (`attention_control`). The random
        placebo shifts each pair's mask circularly by an offset drawn from torch's generator (seeded by the run), so
        it erases exactly the area `T(A)` would, elsewhere; the gradient flows through it as through `T(A)`."""
        if self.attention_control == "inverted":
            return 1.0 - soft_mask
        if self.attention_control == "random":
            return random_shift(soft_mask)
        return soft_mask

    def guided(self, epoch: int) -> bool:
        """Whether the attention losses are on: after the warm-up of plain classification."""
        return epoch >= self.warmup_epochs

    def _mining(self, epoch: int, pair_image: torch.Tensor) -> bool:
        """Whether this step mines attention: guided, `alpha > 0` and some image has a label."""
        return self.guided(epoch) and self.alpha > 0 and pair_image.numel() > 0

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        image, labels = batch["image"], batch["labels"]
        features = model.features(image)
        logits = model.head(features)
        cl = classification_loss(logits, labels)
        parts = {"cl": cl, "am": cl.new_zeros(()), "e": cl.new_zeros(())}
        pair_image, pair_class = (labels > 0.5).nonzero(as_tuple=True)
        mining = self._mining(epoch, pair_image)
        external = self._external_pairs(batch, pair_image) & self.guided(epoch)
        if mining or bool(external.any()):
            raw = self._raw_maps(model, features, logits, pair_image, pair_class, image.shape[-2:])
            maps = minmax_normalise(raw, self.norm_eps)
            if mining:
                parts["am"], parts["mask_share"] = self._mining_loss(model, image, maps, pair_image, pair_class)
            if bool(external.any()):
                pairs = external.nonzero().squeeze(1)
                parts["e"] = self._external_loss(raw[pairs], maps[pairs], batch, pair_image[pairs], pair_class[pairs])
        parts["total"] = cl + self.alpha * parts["am"] + self.params.get("omega_e", 0.0) * parts["e"]
        return parts

    def _external_pairs(self, batch: dict[str, torch.Tensor], pair_image: torch.Tensor) -> torch.Tensor:
        """Which (image, class) pairs get `L_e`: none for GAIN; GAIN_ext's pixel-labelled images."""
        return torch.zeros_like(pair_image, dtype=torch.bool)

    def _mining_loss(
        self,
        model: SplitModel,
        image: torch.Tensor,
        maps: torch.Tensor,
        pair_image: torch.Tensor,
        pair_class: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`L_am`: the sigmoid score left for each ground-truth class once its attended region is erased; and the
        mean share of the image that `T(A)` erases (detached, a diagnostic)."""
        soft_mask = self.erase_mask(self.soft_mask(maps))
        erased = image[pair_image] * (1.0 - soft_mask)
        with batchnorm_mode(model, self.masked_bn):
            logits = folded_for(model, image.device)(erased)  # CPU, eval mode: conv -> BatchNorm as one conv
        scores = torch.sigmoid(logits.gather(1, pair_class.unsqueeze(1)).squeeze(1))
        return batch_mean_of_image_means(scores, pair_image, image.shape[0]), soft_mask.detach().mean()


class GAINExt(GAIN):
    """GAIN plus `omega_e L_e` on the images inside the pixel-label budget.

    `e_loss="mse"` is the paper's pixel MSE between the normalised map and the binary mask. `e_loss="outside_energy"`
    is a documented variant, not the paper: the share of the raw (unnormalised) Grad-CAM energy that lies outside the
    mask, with an all-zero map costing 1. The MSE of a min-max normalised map barely charges a low, spread-out
    response over a large context region, yet that response is what dominates a globally pooled logit; and a dead
    (all-zero) map costs only the mask's area share, which beats most imperfect maps. The variant charges the spread
    response in proportion and gives a dead map the worst score.
    """

    name = "gain_ext"
    uses_pixel_labels = True
    HPARAMS = GAIN.HPARAMS | {
        "omega_e": HParam(10.0, 1.0, 30.0, log=True, doc="weight of L_e (paper: 10)"),
        "e_loss": HParam("mse", doc="'mse' (paper) or 'outside_energy' (variant: raw map energy outside the mask)"),
    }

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        if self.e_loss not in E_LOSSES:
            raise ValueError(f"method 'gain_ext': e_loss must be one of {', '.join(E_LOSSES)}, got {self.e_loss!r}")

    def _external_pairs(self, batch: dict[str, torch.Tensor], pair_image: torch.Tensor) -> torch.Tensor:
        return batch["has_mask"][pair_image]

    def _external_loss(
        self,
        raw: torch.Tensor,
        maps: torch.Tensor,
        batch: dict[str, torch.Tensor],
        pair_image: torch.Tensor,
        pair_class: torch.Tensor,
    ) -> torch.Tensor:
        masks, n_images = batch["mask"][pair_image], batch["image"].shape[0]
        if self.e_loss == "outside_energy":
            return outside_energy_loss(raw, masks, pair_class, pair_image, n_images)
        return external_loss(maps, masks, pair_class, pair_image, n_images)


def random_shift(masks: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each `[P,1,H,W]` mask rolled by its own uniform offset (dy, dx): the same values, so the same area and shape,
    at another place (wrapping at the borders)."""
    n, _, h, w = masks.shape
    dy = torch.randint(h, (n,), generator=generator).to(masks.device)
    dx = torch.randint(w, (n,), generator=generator).to(masks.device)
    rows = (torch.arange(h, device=masks.device)[None, :] - dy[:, None]) % h
    cols = (torch.arange(w, device=masks.device)[None, :] - dx[:, None]) % w
    pick = torch.arange(n, device=masks.device)[:, None, None]
    return masks[:, 0][pick, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def external_loss(
    maps: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, pair_image: torch.Tensor, n_images: int
) -> torch.Tensor:
    """`L_e`: per pair, the mean over non-ignored pixels of `(A^c - H^c)^2`, `H^c = [mask == c + 1]`; averaged over
    each image's classes, summed over the pixel-labelled images and divided by the batch size `n_images`."""
    target, valid = _class_mask(masks, classes, maps.dtype)
    per_pair = ((maps - target) ** 2 * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1.0)
    return batch_mean_of_image_means(per_pair, pair_image, n_images)


def outside_energy_loss(
    raw: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor, pair_image: torch.Tensor, n_images: int
) -> torch.Tensor:
    """Variant `L_e`: per pair, the share of the raw map's energy on non-ignored pixels outside the class mask; an
    all-zero map costs 1 (it shows no evidence on the object); averaged like `external_loss`."""
    inside, valid = _class_mask(masks, classes, raw.dtype)
    total = (raw * valid).flatten(1).sum(1)
    outside = (raw * valid * (1.0 - inside)).flatten(1).sum(1)
    per_pair = torch.where(total > 0, outside / total.clamp_min(1e-30), torch.ones_like(total))
    return batch_mean_of_image_means(per_pair, pair_image, n_images)


def _class_mask(masks: torch.Tensor, classes: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pair, the binary mask `H^c = [mask == c + 1]` and the pixels that count (not 255)."""
    return (masks == (classes + 1).view(-1, 1, 1)).to(dtype), (masks != IGNORE).to(dtype)
