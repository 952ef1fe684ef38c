"""Image and mask files of the real datasets: one item per image, decoded and checked with errors that name the file.

An `ImageItem` says where an image, its pixel labels and its context pixels are; `decode` reads them and checks
what a training run relies on (the image decodes in full, a mask has the image's size and only known class indices),
so a bad file is reported before training starts, never half-way through it. `BadImages` decides what happens to a
bad one: an error (the default) or, when the user asked for it, a skip that is counted and named in the run record.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IGNORE = 255
"""Mask value of pixels that count for nothing (VOC's object boundaries, images without pixel labels)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class DataError(ValueError):
    """Data that cannot be used; the message names the file (and where it was listed) and what is wrong."""


@dataclass(frozen=True)
class ImageItem:
    """One image of a split and where its pixel labels and context pixels are.

    `mask_kind` is how the mask file encodes classes: "index" (class index + 1 per pixel, 0 background, 255 ignore:
    VOC's palette PNGs, SBD's grey PNGs) or "object" (a grey silhouette of the image's one labelled class: pixels
    >= 128 are that class, as in CUB-200's segmentations). `context_is_background`: every background pixel of the mask
    is the context (composited images such as Waterbirds, whose whole background is the water or land photograph).
    `origin` says where the item was listed (a split list, a manifest line), for error messages.
    """

    id: str
    image: Path
    labels: tuple[int, ...]
    mask: Path | None = None
    mask_kind: str = "index"
    context: Path | None = None
    has_context: bool = False
    context_is_background: bool = False
    origin: str = ""


@dataclass(frozen=True)
class Sample:
    """One decoded item: image uint8 [H,W,3]; mask uint8 [H,W] (class index + 1, 0 background, 255 ignore) or None
    without pixel labels; context uint8 [H,W] (1 on context pixels) or None where unknown."""

    image: np.ndarray
    mask: np.ndarray | None
    context: np.ndarray | None


def _where(path: Path, origin: str) -> str:
    return f"{path}" + (f" (listed in {origin})" if origin else "")


def _open(path: Path, origin: str, what: str) -> Image.Image:
    """The fully decoded file; a missing, unreadable, corrupt or truncated one is a DataError naming it."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except FileNotFoundError:
        raise DataError(f"{_where(path, origin)}: {what} file is missing") from None
    except UnidentifiedImageError:
        raise DataError(f"{_where(path, origin)}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as err:
        raise DataError(f"{_where(path, origin)}: corrupt or truncated {what} ({err})") from None


def read_image(path: Path, origin: str = "") -> np.ndarray:
    """RGB uint8 [H,W,3] (grey, palette and CMYK images converted)."""
    im = _open(path, origin, "image")
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def read_index_mask(path: Path, n_classes: int, size: tuple[int, int], origin: str = "") -> np.ndarray:
    """A class-index mask (palette "P" or grey "L" PNG) of `size` (width, height), values in 0..n_classes or 255."""
    im = _open(path, origin, "mask")
    if im.mode not in ("P", "L"):
        raise DataError(
            f"{_where(path, origin)}: mask mode {im.mode!r}; expected a palette (P) or grey (L) PNG whose values are "
            "class indices (a colour-coded RGB mask must be converted to indices first)"
        )
    _check_size(path, origin, im.size, size)
    mask = np.asarray(im, dtype=np.uint8)
    bad = np.setdiff1d(np.unique(mask), [*range(n_classes + 1), IGNORE])
    if bad.size:
        raise DataError(
            f"{_where(path, origin)}: mask values {', '.join(map(str, bad[:10]))} out of range; allowed: 0 "
            f"(background), 1..{n_classes} (class index + 1), {IGNORE} (ignore)"
        )
    return mask


def read_object_mask(path: Path, value: int, size: tuple[int, int], origin: str = "") -> np.ndarray:
    """A grey silhouette mask of `size` as a class-index mask: pixels >= 128 become `value`, the rest background."""
    im = _open(path, origin, "mask")
    _check_size(path, origin, im.size, size)
    grey = np.asarray(im.convert("L"))
    return np.where(grey >= 128, value, 0).astype(np.uint8)


def read_binary_mask(path: Path, size: tuple[int, int], origin: str = "") -> np.ndarray:
    """A context mask of `size`: 1 where the file is non-zero."""
    im = _open(path, origin, "context mask")
    _check_size(path, origin, im.size, size)
    return (np.asarray(im.convert("L")) > 0).astype(np.uint8)


def _check_size(path: Path, origin: str, got: tuple[int, int], want: tuple[int, int]) -> None:
    if got != want:
        raise DataError(
            f"{_where(path, origin)}: mask size {got[0]}x{got[1]} differs from its image's {want[0]}x{want[1]}"
        )


def decode(item: ImageItem, n_classes: int) -> Sample:
    """Read and check one item's image, mask and context mask."""
    image = read_image(item.image, item.origin)
    size = (image.shape[1], image.shape[0])
    mask = None
    if item.mask is not None:
        if item.mask_kind == "index":
            mask = read_index_mask(item.mask, n_classes, size, item.origin)
        else:
            mask = read_object_mask(item.mask, item.labels[0] + 1, size, item.origin)
    context = None
    if item.context is not None:
        context = read_binary_mask(item.context, size, item.origin)
    elif item.context_is_background and mask is not None:
        context = ((mask == 0) & item.has_context).astype(np.uint8)
    return Sample(image, mask, context)


class BadImages:
    """What to do with a bad file: raise its DataError (default), or skip the item and remember the file and why."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.skipped: list[dict[str, str]] = []

    def __call__(self, item: ImageItem, error: DataError, split: str) -> None:
        if not self.skip:
            raise error
        self.skipped.append({"split": split, "id": item.id, "path": str(item.image), "reason": str(error)})
