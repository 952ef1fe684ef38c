"""Image and mask transforms that keep the two aligned: torchvision `transforms.v2` kernels on `tv_tensors.Image` and
`tv_tensors.Mask` (masks are resampled nearest-neighbour, never blended into values that are no class).

Training draws a random resized crop and a horizontal flip from the run's own generator (`draw`), so augmentation is
seeded per run and independent of the thread that decodes the image; evaluation is a deterministic resize.
"""

from __future__ import annotations

import math

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

RATIO = (3 / 4, 4 / 3)
DRAWS = 5
"""Uniform numbers per image for `train_view`: area share, log aspect ratio, top, left, flip."""


def draw(n: int, generator: torch.Generator) -> torch.Tensor:
    """`[n, DRAWS]` uniforms, one row per image of a batch, drawn before any image is decoded."""
    return torch.rand(n, DRAWS, generator=generator)


def crop_box(height: int, width: int, u: torch.Tensor, scale: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering a share in [scale, 1] of the image at an aspect ratio in [3/4, 4/3]
    (as `RandomResizedCrop`), from the uniforms `u[:4]`; a side that would not fit is clipped to the image."""
    area = height * width * (scale + (1.0 - scale) * float(u[0]))
    ratio = math.exp(math.log(RATIO[0]) + (math.log(RATIO[1]) - math.log(RATIO[0])) * float(u[1]))
    w = max(1, min(width, round(math.sqrt(area * ratio))))
    h = max(1, min(height, round(math.sqrt(area / ratio))))
    top = min(height - h, int(float(u[2]) * (height - h + 1)))
    left = min(width - w, int(float(u[3]) * (width - w + 1)))
    return top, left, h, w


def eval_view(image: torch.Tensor, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize image (uint8 [3,H,W], bilinear with antialiasing) and label planes (uint8 [C,H,W]: mask, context;
    nearest) to `size` x `size`."""
    out_image = v2.functional.resize(tv_tensors.Image(image), [size, size], antialias=True)
    out_labels = v2.functional.resize(tv_tensors.Mask(labels), [size, size])
    return out_image.as_subclass(torch.Tensor), out_labels.as_subclass(torch.Tensor)


def train_view(
    image: torch.Tensor, labels: torch.Tensor, size: int, u: torch.Tensor, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random resized crop (`crop_box`) of image and label planes to `size` x `size`, flipped
    horizontally when `u[4] < 0.5`."""
    top, left, h, w = crop_box(image.shape[-2], image.shape[-1], u, scale)
    out_image = v2.functional.resized_crop(tv_tensors.Image(image), top, left, h, w, [size, size], antialias=True)
    out_labels = v2.functional.resized_crop(tv_tensors.Mask(labels), top, left, h, w, [size, size])
    if float(u[4]) < 0.5:
        out_image = v2.functional.horizontal_flip(out_image)
        out_labels = v2.functional.horizontal_flip(out_labels)
    return out_image.as_subclass(torch.Tensor), out_labels.as_subclass(torch.Tensor)
