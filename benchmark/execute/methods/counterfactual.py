"""Mask-based counterfactual augmentation at the pixel-label budget: copy-paste, object removal, and both.

`copy_paste` follows Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for Instance
Segmentation", CVPR 2021: objects cut out with their masks are pasted onto other images, with Gaussian-feathered
edges and large scale jitter as options. `object_removal` erases the objects from their own images, giving the
"context without class" examples the shortcut lacks. Only the masks of images with `has_mask` True are read.

The counterfactual images are *appended* to the batch (the originals stay as they are) and `L_cl` is taken over
all `B + P + R` images: `total = (B cl + P paste + R removal) / (B + P + R)`, where `cl`, `paste` and `removal` are
`L_cl` over the original, pasted and object-removed images (0 where a step made none). A step without
pixel-labelled images is plain `L_cl`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from benchmark.execute.methods.base import CUTS_OUT, WHOLE_OBJECT, HParam, Method, classification_loss
from benchmark.execute.models import SplitModel

IGNORE = 255
BLENDS = ("hard", "gaussian")
FILLS = ("mean", "blur")


def budget_objects(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The (image, class) pairs of the pixel-labelled images whose class has pixels in the mask.

    Returns `(pair_image, pair_class, cut, masks)`: batch row and class of each pair, its binary mask `[P,H,W]`
    (`mask == class + 1`; ignore pixels are not part of it) and the full masks of those rows `[P,H,W]`. The masks of
    images outside the budget are never read: with no pixel-labelled image, `batch["mask"]` is not even accessed.
    """
    image = batch["image"]
    rows = batch["has_mask"].nonzero().squeeze(1)
    if rows.numel() == 0:
        empty = torch.zeros(0, dtype=torch.long, device=image.device)
        no_masks = torch.zeros(0, *image.shape[-2:], dtype=torch.long, device=image.device)
        return empty, empty, no_masks.bool(), no_masks
    masks = batch["mask"][rows]
    local, pair_class = (batch["labels"][rows] > 0.5).nonzero(as_tuple=True)
    cut = masks[local] == (pair_class + 1).view(-1, 1, 1)
    keep = cut.flatten(1).any(1)
    return rows[local][keep], pair_class[keep], cut[keep], masks[local][keep]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of `[N,C,H,W]` with zero padding (radius `ceil(3 sigma)`)."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, radius), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(radius, 0), groups=c)


def _scale_about_centroid(
    images: torch.Tensor, cut: torch.Tensor, scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize each source image and its cut-out together by `scale[p]` about the object's centroid.

    Nearest-neighbour sampling for both, so every pasted pixel is a copy of a source pixel inside the mask.
    """
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        (2 * torch.arange(h, device=images.device, dtype=images.dtype) + 1) / h - 1,
        (2 * torch.arange(w, device=images.device, dtype=images.dtype) + 1) / w - 1,
        indexing="ij",
    )
    weight = cut.to(images.dtype)
    area = weight.flatten(1).sum(1)
    cx, cy = (weight * xs).flatten(1).sum(1) / area, (weight * ys).flatten(1).sum(1) / area
    inv = 1.0 / scale.to(images.dtype)
    theta = torch.zeros(n, 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 1, 1] = inv, inv
    theta[:, 0, 2], theta[:, 1, 2] = cx * (1 - inv), cy * (1 - inv)
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
    resized = F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    mask = F.grid_sample(weight.unsqueeze(1), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return resized, mask.squeeze(1) > 0.5


def paste_objects(
    batch: dict[str, torch.Tensor],
    *,
    blend: str = "hard",
    blend_sigma: float = 1.0,
    scale_jitter: bool = False,
    scale_low: float = 0.5,
    scale_high: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each budget object pasted onto a random other image of the batch without its class: `(images, labels)`.

    One pasted image per (pixel-labelled image, class) pair that has a target; the target keeps its labels and
    gains the class. `blend="hard"` copies the mask's pixels; `"gaussian"` feathers the edge with the Gaussian-
    blurred mask restricted to the mask, so no source pixel outside the mask is ever pasted. With `scale_jitter`,
    the cut-out and its mask are resized together by a factor drawn from U[scale_low, scale_high] about the object's
    centroid (which stays where it was); one shrunk to no pixel is not pasted. Targets and scales come from
    torch's global generator (seeded per run). Objects of the target that the paste covers keep their labels:
    targets outside the budget have no mask to check.
    """
    if blend not in BLENDS:
        raise ValueError(f"copy_paste: blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    image, labels = batch["image"], batch["labels"]
    pair_image, pair_class, cut, _ = budget_objects(batch)
    eligible = labels[:, pair_class].T < 0.5  # [P,B]: target j lacks the pair's class
    draw = torch.where(eligible, torch.rand(eligible.shape, device=image.device), -1.0)
    has_target = eligible.any(1)
    target = draw.argmax(1)[has_target]
    pair_image, pair_class, cut = pair_image[has_target], pair_class[has_target], cut[has_target]
    source = image[pair_image]
    if scale_jitter and pair_image.numel():
        scale = torch.empty(pair_image.numel(), device=image.device).uniform_(scale_low, scale_high)
        source, cut = _scale_about_centroid(source, cut, scale)
        left = cut.flatten(1).any(1)  # an object shrunk to nothing is not pasted (its label would be a lie)
        source, cut, target, pair_class = source[left], cut[left], target[left], pair_class[left]
    alpha = cut.unsqueeze(1).to(image.dtype)
    if blend == "gaussian" and pair_image.numel():
        alpha = gaussian_blur(alpha, blend_sigma) * alpha
    pasted = alpha * source + (1 - alpha) * image[target]
    new_labels = labels[target].clone()
    new_labels[torch.arange(target.numel(), device=image.device), pair_class] = 1.0
    return pasted, new_labels


def remove_objects(
    batch: dict[str, torch.Tensor], *, fill: str = "mean", fill_sigma: float = 4.0, dilate: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each budget object erased from its own image: `(images, labels)`, one image per (image, class) pair.

    The erased region is the class's mask (every instance of the class) grown by `dilate` pixels, which covers the
    anti-aliased rim and VOC's void band. `fill="mean"` paints it with the image's mean colour over the pixels
    outside that region; `"blur"` with a normalised Gaussian blur of those pixels (`fill_sigma` px; the mean where
    none is near), a simple inpainting. A label is dropped when its class had pixels in the mask and has none left:
    always the erased class, and any other class the dilation happened to swallow.
    """
    if fill not in FILLS:
        raise ValueError(f"object_removal: fill must be one of {', '.join(FILLS)}, got {fill!r}")
    image, labels = batch["image"], batch["labels"]
    pair_image, _, cut, masks = budget_objects(batch)
    source = image[pair_image]
    erase = cut.unsqueeze(1).to(image.dtype)
    if dilate > 0:
        erase = F.max_pool2d(erase, 2 * dilate + 1, stride=1, padding=dilate)
    keep = 1.0 - erase
    mean = (source * keep).flatten(2).sum(2) / keep.flatten(2).sum(2).clamp_min(1.0)
    filler = mean[:, :, None, None].expand_as(source)
    if fill == "blur" and pair_image.numel():
        num, den = gaussian_blur(source * keep, fill_sigma), gaussian_blur(keep, fill_sigma)
        filler = torch.where(den > 1e-3, num / den.clamp_min(1e-3), filler)
    erased = keep * source + erase * filler
    n_classes = labels.shape[1]
    before, after = _presence(masks, n_classes), _presence(torch.where(erase[:, 0] > 0, 0, masks), n_classes)
    new_labels = labels[pair_image] * ~(before & ~after)
    return erased, new_labels


def _presence(masks: torch.Tensor, n_classes: int) -> torch.Tensor:
    """`[P,K]` bool: whether class k has a pixel in each mask (background and ignore do not count)."""
    index = torch.where(masks == IGNORE, 0, masks).clamp(0, n_classes).flatten(1)
    present = torch.zeros(masks.shape[0], n_classes + 1, dtype=torch.bool, device=masks.device)
    present.scatter_(1, index, True)
    return present[:, 1:]


class Counterfactual(Method):
    """Copy-paste and object removal together: `L_cl` on the batch plus both kinds of counterfactual image."""

    name = "counterfactual"
    uses_pixel_labels = True
    annotations = WHOLE_OBJECT
    annotation_refusal = CUTS_OUT
    KINDS: tuple[str, ...] = ("paste", "removal")
    PASTE_HPARAMS = {
        "blend": HParam(
            "hard", choices=BLENDS, doc="'hard' (copy the mask's pixels) or 'gaussian' (feathered edge inside the mask)"
        ),
        "blend_sigma": HParam(1.0, 0.5, 2.0, doc="std (px) of the Gaussian feathering"),
        "scale_jitter": HParam(
            False, choices=(False, True), doc="resize each cut-out and its mask together before pasting"
        ),
        "scale_low": HParam(0.5, 0.25, 1.0, doc="smallest scale factor of the jitter"),
        "scale_high": HParam(1.5, 1.0, 2.0, doc="largest scale factor of the jitter"),
    }
    REMOVAL_HPARAMS = {
        "fill": HParam(
            "mean", choices=FILLS, doc="'mean' (image mean outside the erased region) or 'blur' (normalised blur)"
        ),
        "fill_sigma": HParam(4.0, 2.0, 8.0, doc="std (px) of the blur fill"),
        "dilate": HParam(1, 0, 3, integer=True, doc="pixels the erased region grows beyond the mask"),
    }
    HPARAMS = PASTE_HPARAMS | REMOVAL_HPARAMS

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if "blend" in self.HPARAMS and self.blend not in BLENDS:
            raise ValueError(f"method {self.name!r}: blend must be one of {', '.join(BLENDS)}, got {self.blend!r}")
        if "fill" in self.HPARAMS and self.fill not in FILLS:
            raise ValueError(f"method {self.name!r}: fill must be one of {', '.join(FILLS)}, got {self.fill!r}")

    def counterfactuals(self, batch: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The extra images and labels of each kind this method makes (none without pixel-labelled images)."""
        made = {}
        if "paste" in self.KINDS:
            made["paste"] = paste_objects(
                batch,
                blend=self.blend,
                blend_sigma=self.blend_sigma,
                scale_jitter=self.scale_jitter,
                scale_low=self.scale_low,
                scale_high=self.scale_high,
            )
        if "removal" in self.KINDS:
            made["removal"] = remove_objects(batch, fill=self.fill, fill_sigma=self.fill_sigma, dilate=self.dilate)
        return made

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        image, labels = batch["image"], batch["labels"]
        made = self.counterfactuals(batch) if bool(batch["has_mask"].any()) else {}
        made = {k: v for k, v in made.items() if v[0].shape[0]}
        if not made:
            cl = classification_loss(model(image), labels)
            return {"total": cl, "cl": cl} | {k: cl.new_zeros(()) for k in self.KINDS}
        images = torch.cat([image, *(v[0] for v in made.values())])
        all_labels = torch.cat([labels, *(v[1] for v in made.values())])
        logits = model(images)
        parts = {"total": classification_loss(logits, all_labels)}
        sizes = [image.shape[0], *(v[0].shape[0] for v in made.values())]
        for key, part, y in zip(["cl", *made], logits.split(sizes), all_labels.split(sizes), strict=True):
            parts[key] = classification_loss(part, y)
        return parts | {k: parts["total"].new_zeros(()) for k in self.KINDS if k not in parts}


class CopyPaste(Counterfactual):
    """Ghiasi et al. (CVPR 2021) copy-paste of the budget's objects onto batch images lacking their class."""

    name = "copy_paste"
    KINDS = ("paste",)
    HPARAMS = Counterfactual.PASTE_HPARAMS


class ObjectRemoval(Counterfactual):
    """The budget's objects erased from their own images, their labels dropped: "context without class" images."""

    name = "object_removal"
    KINDS = ("removal",)
    HPARAMS = Counterfactual.REMOVAL_HPARAMS
