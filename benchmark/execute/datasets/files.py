"""A split of image files on disk with the interface of the in-memory `TensorSplit`, so the training loop, the
evaluation and the gallery run on real data unchanged.

Images are decoded per batch (in `workers` threads: Pillow's decoders and torch's resize release the GIL), or once
and kept when `cache` is set (worth it for splits that fit in memory: about 0.6 MB per VOC image). Every file is
decoded and checked once when the split is built (`FileSplit.checked`), so a bad file stops a run before training,
or is skipped and counted when the user asked for that.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from benchmark.execute.datasets.images import IGNORE, BadImages, DataError, ImageItem, Sample, decode
from benchmark.execute.datasets.tensors import batch_dict
from benchmark.execute.datasets.transforms import draw, eval_view, train_view

T = TypeVar("T")


@dataclass(frozen=True)
class ViewSettings:
    """How a split's images become model inputs: the side of the square input, training augmentation (random
    resized crop covering at least `crop_scale` of the image, horizontal flip), in-memory caching, decoding threads."""

    image_size: int
    augment: bool = True
    crop_scale: float = 0.5
    cache: bool = False
    workers: int = 4


@functools.cache
def _executor(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="gain-bench-decode")


def _map(fn: Callable[..., T], workers: int, *args: Sequence[Any]) -> list[T]:
    if workers <= 1 or len(args[0]) < 2:
        return list(map(fn, *args))
    return list(_executor(workers).map(fn, *args))


def _try_decode(item: ImageItem, n_classes: int) -> Sample | DataError:
    try:
        return decode(item, n_classes)
    except DataError as err:
        return err


Derived = TypeVar("Derived", bound="FileSplit")


class FileSplit:
    """A split of `ImageItem`s: labels, ids and flags in memory, pixels read per batch."""

    def __init__(
        self,
        name: str,
        items: Sequence[ImageItem],
        classes: tuple[str, ...],
        settings: ViewSettings,
        *,
        source: str = "",
        skipped: Sequence[dict[str, str]] = (),
    ) -> None:
        self.name = name
        self.items = list(items)
        self.classes = classes
        self.settings = settings
        self.source = source
        self.skipped = list(skipped)
        self.ids = [item.id for item in self.items]
        self.labels = torch.zeros(len(self.items), len(classes), dtype=torch.float32)
        for row, item in enumerate(self.items):
            self.labels[row, list(item.labels)] = 1.0
        self.has_context = torch.tensor([item.has_context for item in self.items], dtype=torch.bool)
        self.pair = torch.full((len(self.items),), -1, dtype=torch.int64)
        self.pixel_labelled = torch.tensor([item.mask is not None for item in self.items], dtype=torch.bool)
        self.has_context_masks = any(
            item.context is not None or (item.context_is_background and item.mask is not None) for item in self.items
        )
        self._cache: dict[int, Sample] = {}

    @classmethod
    def checked(
        cls,
        name: str,
        items: Sequence[ImageItem],
        classes: tuple[str, ...],
        settings: ViewSettings,
        bad: BadImages,
        *,
        source: str = "",
    ) -> FileSplit:
        """The split after decoding and checking every item once: a bad one raises its DataError (the first in list
        order), or is skipped and recorded in `bad` when it skips. An empty split is an error."""
        if not items:
            raise DataError(f"split {name!r} holds no images ({source})")
        results = _map(functools.partial(_try_decode, n_classes=len(classes)), settings.workers, items)
        kept: list[ImageItem] = []
        cache: dict[int, Sample] = {}
        for item, result in zip(items, results, strict=True):
            if isinstance(result, DataError):
                bad(item, result, name)
                continue
            if settings.cache:
                cache[len(kept)] = result
            kept.append(item)
        if not kept:
            raise DataError(f"split {name!r} ({source}): all {len(items)} images are bad and were skipped")
        skipped = [s for s in bad.skipped if s["split"] == name]
        split = cls(name, kept, classes, settings, source=source, skipped=skipped)
        split._cache = cache
        return split

    def __len__(self) -> int:
        return len(self.items)

    def info(self) -> dict[str, Any]:
        """What the run record says about the split."""
        return {
            "images": len(self),
            "pixel_labelled": int(self.pixel_labelled.sum()),
            "source": self.source,
            "skipped": len(self.skipped),
        }

    def derived(self, cls: type[Derived], **attrs: Any) -> Derived:
        """A `cls` (a subclass that changes some rows' samples) sharing this split's state, its decoded cache
        included, with `attrs` set on it; this split is not changed."""
        new = cls.__new__(cls)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(attrs)
        return new

    def _sample(self, row: int) -> Sample:
        sample = self._cache.get(row)
        if sample is None:
            sample = decode(self.items[row], len(self.classes))
            if self.settings.cache:
                self._cache[row] = sample
        return sample

    def _view(self, row: int, u: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self._sample(row)
        h, w = sample.image.shape[:2]
        image = torch.from_numpy(np.ascontiguousarray(sample.image.transpose(2, 0, 1)))
        mask = sample.mask if sample.mask is not None else np.full((h, w), IGNORE, np.uint8)
        context = sample.context if sample.context is not None else np.zeros((h, w), np.uint8)
        planes = torch.from_numpy(np.stack([mask, context]))
        size = self.settings.image_size
        if u is None:
            return eval_view(image, planes, size)
        return train_view(image, planes, size, u, self.settings.crop_scale)

    def _views(self, rows: list[int], generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        u = draw(len(rows), generator) if generator is not None and self.settings.augment else None
        views = _map(self._view, self.settings.workers, rows, list(u) if u is not None else [None] * len(rows))
        return torch.stack([v[0] for v in views]), torch.stack([v[1] for v in views])

    def pixels(self, rows: Sequence[int]) -> torch.Tensor:
        """uint8 `[N,3,S,S]` of `rows` as evaluated (for figures)."""
        return self._views(list(rows), None)[0]

    def batch(
        self,
        index: torch.Tensor,
        *,
        has_mask: torch.Tensor | None = None,
        device: torch.device | str = "cpu",
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.25, 0.25, 0.25),
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The batch dict (docs/layout.md, "Contracts") for rows `index`; with a `generator` (training) each image is
        randomly cropped and flipped (when the split augments), else resized. Images without pixel labels get an
        all-ignore mask."""
        index = index.to(torch.long)
        images, planes = self._views(index.tolist(), generator)
        context = planes[:, 1] if self.has_context_masks else None
        return batch_dict(
            images, self.labels[index], planes[:, 0], context, index, has_mask, device=device, mean=mean, std=std
        )
