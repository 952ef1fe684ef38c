"""An evaluation or training split held in memory as tensors, and the batch dict built from it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class TensorSplit:
    """A whole split in memory: small enough for the built-in data, and indexing a tensor beats a DataLoader here."""

    name: str
    images: torch.Tensor  # uint8 [N,3,H,W]
    labels: torch.Tensor  # float32 [N,K] multi-hot
    masks: torch.Tensor  # int64 [N,H,W]: class index + 1, 0 background, 255 ignore
    context: torch.Tensor | None  # int64 [N,H,W]: 1 on the audited context's pixels
    has_context: torch.Tensor  # bool [N]
    ids: list[str]
    classes: tuple[str, ...]
    pair: torch.Tensor  # int64 [N]: counterfactual pair index, -1 elsewhere
    _copies: dict[torch.device, TensorSplit] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> TensorSplit:
        """The split with its pixels (images, masks, context masks; masks stored as uint8 there, an eighth of the
        memory) on `device`, so a GPU run builds its batches where it trains instead of copying each one over; the
        labels and the rest stay where they are (small, and read on the host). The copy is kept, so the runs of a
        suite that share this split (`run_data.cached_data`) move it once."""
        device = torch.device(device)
        if self.images.device == device:
            return self
        if device in self._copies:
            return self._copies[device]

        def small(mask: torch.Tensor) -> torch.Tensor:
            return mask.to(torch.uint8) if bool(mask.max() <= 255) and bool(mask.min() >= 0) else mask

        self._copies[device] = dataclasses.replace(
            self,
            images=self.images.to(device),
            masks=small(self.masks).to(device),
            context=None if self.context is None else small(self.context).to(device),
        )
        return self._copies[device]

    def pixels(self, rows: Sequence[int]) -> torch.Tensor:
        """uint8 `[N,3,H,W]` of `rows` (for figures)."""
        return self.images[list(rows)]

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
        """The batch dict (docs/layout.md, "Contracts") for rows `index`; `has_mask` marks the rows inside the
        pixel-label budget. `generator` is accepted for the interface of `FileSplit.batch` and unused: the built-in
        data is not augmented."""
        index = index.to(torch.long)
        rows = move(index, self.images.device)
        return batch_dict(
            self.images[rows],
            self.labels[index],
            self.masks[rows],
            None if self.context is None else self.context[rows],
            index,
            has_mask,
            device=device,
            mean=mean,
            std=std,
        )


@functools.lru_cache(maxsize=8)
def _normaliser(device: torch.device, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, ...]:
    """Mean and std as `[1,3,1,1]` tensors on `device`, made once: a fresh host-to-GPU copy per batch would wait for
    the GPU every step."""
    return tuple(torch.tensor(v, dtype=torch.float32, device=device).view(1, 3, 1, 1) for v in (mean, std))


def batch_dict(
    images: torch.Tensor,
    labels: torch.Tensor,
    masks: torch.Tensor,
    context: torch.Tensor | None,
    index: torch.Tensor,
    has_mask: torch.Tensor | None,
    *,
    device: torch.device | str,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
) -> dict[str, torch.Tensor]:
    """The batch dict (docs/layout.md, "Contracts") on `device` from uint8 images `[N,3,H,W]` and integer masks
    `[N,H,W]`, wherever they are: they cross to `device` as they are (uint8: a quarter of the float bytes) and are
    normalised there."""
    device = torch.device(device)
    m, s = _normaliser(device, tuple(mean), tuple(std))
    flags = torch.zeros(len(index), dtype=torch.bool) if has_mask is None else has_mask.to(torch.bool)
    out = {
        "image": (move(images, device).to(torch.float32) / 255.0 - m) / s,
        "labels": move(labels, device),
        "mask": move(masks, device).to(torch.int64),
        "has_mask": move(flags, device),
        "index": move(index.clone(), device),
    }
    if context is not None:
        out["context"] = move(context, device).to(torch.int64)
    return out


def move(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`tensor` on `device`. From host memory to a GPU it goes through pinned memory, asynchronously: a copy from
    pageable memory makes the host wait for the GPU's queue, every batch."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
