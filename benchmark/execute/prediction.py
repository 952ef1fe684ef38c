"""What a trained model is scored on: per image and role, the scores, the audited class's attention on context and
object, every localisation metric's column and the CAM segmentation counts (`predict`), the attention layer's
description, and the throughput timed on a training batch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from benchmark.core.spec import RunSpec
from benchmark.execute.attention import grad_cam_from, inference_cam
from benchmark.execute.datasets.files import FileSplit
from benchmark.execute.datasets.tensors import TensorSplit
from benchmark.execute.methods import Method
from benchmark.execute.metrics import (
    cam_segmentation,
    localise,
    region_share,
    segmentation_counts,
)
from benchmark.execute.models import SplitModel
from benchmark.execute.run_record import NonFiniteLoss
from benchmark.execute.timing import TimingSettings, autocast, measure

Split = TensorSplit | FileSplit


def predict(
    model: SplitModel, data: dict[str, Split], class_index: int, spec: RunSpec, device: str = "cpu"
) -> dict[str, dict[str, np.ndarray]]:
    """Per-image scores for every class and the audited class's attention on context and object, for every role.

    Also per image, against the audited class's mask (255 = ignored), every localisation metric's column
    (`metrics.localise`: NaN without object pixels); on `val`, the CAM segmentation from the maps of
    each image's ground-truth classes as per-label intersection/union counts (`cam_intersection`, `cam_union`,
    `[N,K+1]`).
    """
    was_training = model.training
    model.eval()
    out: dict[str, dict[str, np.ndarray]] = {}
    for role, split in data.items():
        if role == "train":
            continue
        chunks: dict[str, list[torch.Tensor]] = {}
        for start in range(0, len(split), spec.train.eval_batch_size):
            rows = torch.arange(start, min(start + spec.train.eval_batch_size, len(split)))
            batch = split.batch(rows, device=device, mean=model.mean, std=model.std)
            classes = torch.full((rows.numel(),), class_index, device=device)
            with autocast(torch.device(device), spec.train.precision):
                features, logits, maps = inference_cam(model, batch["image"], classes)
            logits, maps = logits.float(), maps.float()
            context = batch.get("context", torch.zeros_like(batch["mask"]))
            if not bool(torch.isfinite(logits).all()):
                raise NonFiniteLoss(f"non-finite logits on {role} after training: the weights diverged")
            mask = batch["mask"]
            obj, valid = mask == class_index + 1, mask != 255
            found = {
                "logits": logits.detach(),
                "context_share": region_share(maps, context > 0),
                "object_share": region_share(maps, obj),
                "context_area": (context > 0).flatten(1).float().mean(1),
                **localise(maps, obj, valid),
            }
            if role == "val":
                found["cam_intersection"], found["cam_union"] = _cam_counts(features, logits, batch, model.head)
            for key, value in found.items():
                chunks.setdefault(key, []).append(value.cpu())
        arrays = {k: torch.cat(v).numpy() for k, v in chunks.items()}
        arrays["scores"] = torch.sigmoid(torch.from_numpy(arrays["logits"])).numpy()
        arrays.update(
            labels=split.labels.numpy(),
            has_context=split.has_context.numpy().astype(np.int8),
            pair=split.pair.numpy(),
            ids=np.asarray(split.ids),
        )
        out[role] = arrays
    model.train(was_training)
    return out


def throughput(
    model: SplitModel, method: Method, train: Split, class_index: int, settings: TimingSettings, device: str
) -> dict[str, Any]:
    """`timing.measure` on the first `settings.batch_size` training images (all counted as pixel-labelled for a
    method that uses pixel labels)."""
    return measure(model, method, timing_batch(model, method, train, settings, device), class_index, settings)


def timing_batch(
    model: SplitModel, method: Method, train: Split, settings: TimingSettings, device: str
) -> dict[str, torch.Tensor]:
    """The first `settings.batch_size` training images as one batch, every one pixel-labelled for a method that uses
    pixel labels (the dearest case)."""
    rows = torch.arange(min(settings.batch_size, len(train)))
    has_mask = torch.full((rows.numel(),), method.uses_pixel_labels)
    return train.batch(rows, has_mask=has_mask, device=device, mean=model.mean, std=model.std)


def _cam_counts(
    features: torch.Tensor, logits: torch.Tensor, batch: dict[str, torch.Tensor], head: torch.nn.Module
) -> tuple[torch.Tensor, torch.Tensor]:
    """Intersection/union counts per image and label of the CAM segmentation from the ground-truth classes' maps."""
    image, cls = (batch["labels"] > 0.5).nonzero(as_tuple=True)
    size = batch["image"].shape[-2:]
    with torch.enable_grad():
        maps = grad_cam_from(features, logits, cls, image_index=image, size=size, head=head).detach()
    pred = cam_segmentation(maps, cls, image, features.shape[0])
    return segmentation_counts(pred, batch["mask"], logits.shape[1] + 1)


def attention_info(model: SplitModel, split: Split) -> dict[str, Any]:
    """The layer the attention maps are taken from and their size on this data (`block4` of the small CNN on 48 px
    images: 6 x 6), recorded so that a report can say how coarse the maps were."""
    image = split.batch(torch.arange(1), mean=model.mean, std=model.std)["image"]
    was_training = model.training
    with torch.no_grad():
        size = model.eval().features(image).shape[-2:]  # eval: batch-norm statistics stay as they are
    model.train(was_training)
    return {
        "layer": model.attention_layer,
        "map_size": [int(size[0]), int(size[1])],
        "image_size": [int(image.shape[-2]), int(image.shape[-1])],
    }
