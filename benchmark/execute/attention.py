"""Batched, hook-free Grad-CAM: the one place attention maps are computed.

Selvaraju et al., "Grad-CAM", ICCV 2017; as used by GAIN (Li et al., CVPR 2018, eq. 1-2):
`w^c = GAP(d s^c / d f)`, `A^c = ReLU(sum_k w^c_k f_k)`, upsampled bilinearly to the image and min-max normalised per
map. The gradient is that of the class logit `s^c` itself (not scaled by it). The weights are constants unless
`create_graph=True`; the map stays differentiable through the feature map `f`, which GAIN's losses rely on.

Called with gradients disabled (`torch.no_grad()`, inference), `grad_cam` records no autograd graph for the feature
extractor: the features are computed without one and only the head is differentiated.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.execute.folding import folded_for
from benchmark.execute.models import SplitModel, batchnorm_mode, has_hooks, has_training_batchnorm


def grad_cam(
    model: SplitModel,
    images: torch.Tensor,
    classes: torch.Tensor,
    *,
    image_index: torch.Tensor | None = None,
    create_graph: bool = False,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Grad-CAM maps `[P,H,W]` in [0, 1], one per (image, class) pair.

    `classes[p]` is the class of pair `p` and `image_index[p]` its image (default: pair `p` is image `p`). Several
    classes of one image are handled in rounds, one `autograd.grad` per round, never a per-image loop.

    With gradients enabled the maps are differentiable through the features (as GAIN needs). Under `torch.no_grad()`
    (and `create_graph=False`) the maps are plain tensors and the feature forward records no graph (see the module
    docstring): the fast path for inference, with the same maps up to float rounding.
    """
    if not (torch.is_grad_enabled() or create_graph):
        return inference_cam(model, images, classes, image_index=image_index, eps=eps)[2]
    with torch.enable_grad():
        features = model.features(images)
        logits = cam_logits(model, features, model.head(features))
        return grad_cam_from(
            features,
            logits,
            classes,
            image_index=image_index,
            size=images.shape[-2:],
            create_graph=create_graph,
            eps=eps,
            head=model.head,
        )


def inference_cam(
    model: SplitModel,
    images: torch.Tensor,
    classes: torch.Tensor,
    *,
    image_index: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inference Grad-CAM: `(features, logits, maps)`, the features computed without an autograd graph
    (`inference_features`) and then marked as requiring grad, the logits with the head's graph (so more maps can be
    taken from them with `grad_cam_from`), the maps detached. Works under `torch.no_grad()` and
    `torch.inference_mode()`."""
    features = inference_features(model.features, images)
    with torch.inference_mode(False), torch.enable_grad():
        features = (features.clone() if features.is_inference() else features).requires_grad_(True)
        logits = cam_logits(model, features, model.head(features))
        maps = grad_cam_from(
            features, logits, classes, image_index=image_index, size=images.shape[-2:], eps=eps, head=model.head
        )
    return features, logits, maps.detach()


def inference_features(features: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """`features(images)` without recording an autograd graph (the maps of an inference call need none).

    On a CPU the images are passed in channels_last: oneDNN then runs every convolution and pooling in NHWC, with no
    layout conversion around each one (ResNet-18 at 224 px: 1.2-1.3x faster than a contiguous batch), and each
    convolution followed by an eval-mode BatchNorm runs as one convolution with folded weights
    (`benchmark.execute.folding`;
    about 4% more). The model's weights are left as they are; the maps are the same up to float rounding.
    """
    if images.device.type == "cpu" and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        return folded_for(features, images.device)(images)


def cam_logits(model: SplitModel, features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Logits in which image i depends on `features[i]` alone, as Grad-CAM's per-image definition needs.

    That holds for `logits` unless the head holds BatchNorm in training mode (e.g. attention at `block3` or
    `layer3`), whose batch statistics couple the images; then the head is re-run with running statistics.
    """
    if not has_training_batchnorm(model.head):
        return logits
    with batchnorm_mode(model.head, "eval"):
        return model.head(features)


def grad_cam_from(
    features: torch.Tensor,
    logits: torch.Tensor,
    classes: torch.Tensor,
    *,
    image_index: torch.Tensor | None = None,
    size: tuple[int, int] | torch.Size | None = None,
    create_graph: bool = False,
    eps: float = 1e-12,
    normalise: bool = True,
    head: nn.Module | None = None,
) -> torch.Tensor:
    """Grad-CAM from a forward pass the caller already ran (`logits = head(features)`), so training reuses it.

    `eps` guards the min-max division: `(A - min) / (max - min + eps)`; an all-zero map stays zero. Given the `head`
    that produced `logits`, a head that is global average pooling, flatten and linear (ResNet at `layer4`, the small
    CNN at `block4`) has its gradient weights read off the linear layer, `W[c] / (h w)`, with no backward (the same
    weights: the logit's gradient is `W[c] / (h w)` at every position). The map is upsampled bilinearly
    (`align_corners=False`) as two small matrix products, the same numbers as `F.interpolate` up to rounding, with
    a backward of two matrix products too.
    """
    if image_index is None:
        image_index = torch.arange(classes.shape[0], device=classes.device)
    classes = classes.to(logits.device, torch.long)
    image_index = image_index.to(logits.device, torch.long)
    fc = gap_linear(head)
    if fc is not None:
        weights = fc.weight[classes] / (features.shape[-2] * features.shape[-1])
        weights = (weights if create_graph else weights.detach()).to(features.dtype)
    else:
        weights = _gradient_weights(features, logits, classes, image_index, create_graph)
    cam = torch.relu(torch.einsum("pc,pchw->phw", weights, features[image_index]))
    if size is not None and tuple(cam.shape[-2:]) != tuple(size):
        cam = upsample_bilinear(cam, (int(size[0]), int(size[1])))
    return minmax_normalise(cam, eps) if normalise else cam


def gap_linear(head: nn.Module | None) -> nn.Linear | None:
    """The linear layer of a head that is exactly `AdaptiveAvgPool2d(1), Flatten(), Linear` (a plain Sequential, no
    hooks anywhere in it: a hook could change what the head computes), else None."""
    if type(head) is not nn.Sequential or len(head) != 3:
        return None
    if has_hooks(head.modules()):
        return None
    pool, flatten, fc = head
    if type(pool) is not nn.AdaptiveAvgPool2d or pool.output_size not in (1, (1, 1)):
        return None
    if type(flatten) is not nn.Flatten or (flatten.start_dim, flatten.end_dim) != (1, -1) or type(fc) is not nn.Linear:
        return None
    return fc


def upsample_bilinear(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`F.interpolate(maps[:, None], size, mode="bilinear", align_corners=False)[:, 0]` as `R_h @ maps @ R_w^T`,
    bilinear interpolation being separable; in the maps' dtype, whatever autocast is on."""
    rows = _interpolation_matrix(maps.shape[-2], size[0], maps.device, maps.dtype)
    cols = _interpolation_matrix(maps.shape[-1], size[1], maps.device, maps.dtype)
    with torch.autocast(maps.device.type, enabled=False):
        return rows @ maps @ cols.T


@functools.lru_cache(maxsize=64)
def _interpolation_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """`[n_out, n_in]`: row j holds the weights 1-d linear interpolation (`align_corners=False`) gives output j.
    Built as a plain tensor even under `torch.inference_mode()`, since it is cached and later saved for backward."""
    with torch.inference_mode(False), torch.no_grad(), torch.autocast(device.type, enabled=False):
        eye = torch.eye(n_in, dtype=torch.float64, device=device).unsqueeze(0)
        return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].T.to(dtype).contiguous()


def minmax_normalise(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-map min-max normalisation of `[P,H,W]` to [0, 1] (never over the batch, a known pitfall)."""
    flat = maps.flatten(1)
    lo = flat.amin(1).view(-1, 1, 1)
    hi = flat.amax(1).view(-1, 1, 1)
    return (maps - lo) / (hi - lo + eps)


def _gradient_weights(
    features: torch.Tensor,
    logits: torch.Tensor,
    classes: torch.Tensor,
    image_index: torch.Tensor,
    create_graph: bool,
) -> torch.Tensor:
    """`GAP(d logit[image, class] / d features[image])` for every pair, `[P,C]`.

    Pairs are grouped into rounds in which every image appears at most once, so one backward per round yields each
    pair's gradient exactly, given logits in which images do not interact (see `cam_logits`).
    """
    n_pairs = classes.shape[0]
    weights = features.new_zeros(n_pairs, features.shape[1])
    if n_pairs == 0:
        return weights
    rounds = _occurrence_rank(image_index, features.shape[0])
    n_rounds = int(rounds.max()) + 1
    for r in range(n_rounds):
        sel = (rounds == r).nonzero().squeeze(1)
        target = logits[image_index[sel], classes[sel]].sum()
        (grad,) = torch.autograd.grad(target, features, create_graph=create_graph, retain_graph=True)
        w = grad[image_index[sel]].mean((2, 3))
        weights = weights.index_copy(0, sel, w if create_graph else w.detach())
    return weights


def _occurrence_rank(image_index: torch.Tensor, n_images: int) -> torch.Tensor:
    """For each pair, how many earlier pairs share its image (0 for the first), without a Python loop."""
    order = torch.argsort(image_index, stable=True)
    sorted_idx = image_index[order]
    counts = torch.bincount(sorted_idx, minlength=n_images)
    starts = torch.cumsum(counts, 0) - counts
    rank_sorted = torch.arange(sorted_idx.shape[0], device=image_index.device) - starts[sorted_idx]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank
