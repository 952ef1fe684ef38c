"""Throughput of a method's training step and of attention inference (forward + Grad-CAM), in images/s.

Timed after `warmup` untimed repetitions. On CUDA each timed call is bracketed by CUDA events recorded on the current
stream and the device is synchronised before the events are read, so queued kernels are counted and host overhead
between calls is not. Peak memory is `torch.cuda.max_memory_allocated` on a GPU and the process's peak resident set
(`ru_maxrss`, whole process so far) on a CPU.

Timing runs under the host allocator settings training uses (`benchmark.execute.allocator`, recorded as `allocator`), so
figures taken outside a training process (the suite-level timing, `scripts/gpu_check.py`) match those taken inside.
Every figure also records `denormals_flushed`, the share of a parallel operation's denormal results flushed to zero
when it was taken (`benchmark.execute.denormals`; the caller sets the flag, as training does).

Switches (`TimingSettings`): `precision` "fp32", "bf16" (autocast to bfloat16, on CPU too) or "fp16" (autocast to
float16 with a `torch.amp.GradScaler`, CUDA only: a ValueError elsewhere); `channels_last` (None keeps the model's
memory format); `compile` (`torch.compile` of the model copy that is timed; compilation happens in the warm-up, so
use `warmup >= 1`). Every figure is recorded with these switches beside it.
"""

from __future__ import annotations

import contextlib
import copy
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmark.core.settings import PRECISIONS, TimingSettings
from benchmark.execute.allocator import retain_freed_memory
from benchmark.execute.attention import grad_cam
from benchmark.execute.denormals import flushed_share
from benchmark.execute.folding import folded_for
from benchmark.execute.methods import Method
from benchmark.execute.methods.base import batch_mean_of_image_means, classification_loss
from benchmark.execute.models import SplitModel, batchnorm_mode

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_once(step: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one call of `step()` (CUDA: event time on the current stream, read after a synchronise)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1000.0
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


class InterleavedRounds:
    """Each call is one round: every step timed once (`_time_once`: CUDA events on a GPU), starting at the next
    contender each round, so a change of load or clocks between rounds shifts all contenders alike."""

    def __init__(self, steps: dict[str, Callable[[], Any]], device: torch.device | str = "cpu") -> None:
        self.steps, self.device = steps, torch.device(device)
        self.seconds: dict[str, list[float]] = {name: [] for name in steps}
        self.rounds = 0

    def __call__(self) -> None:
        names = list(self.steps)
        k = self.rounds % len(names)
        for name in names[k:] + names[:k]:
            self.seconds[name].append(_time_once(self.steps[name], self.device))
        self.rounds += 1

    def medians(self, *, skip: int = 0) -> dict[str, float]:
        """Median seconds per contender, leaving out the first `skip` (warm-up) rounds."""
        return {name: statistics.median(times[skip:]) for name, times in self.seconds.items()}


def _timed(step: Callable[[], Any], device: torch.device, warmup: int, iterations: int) -> float:
    """Seconds per call of `step()`, the median of `iterations` timed calls (CUDA: event time, see the module)."""
    for _ in range(warmup):
        step()
    _sync(device)
    return statistics.median(_time_once(step, device) for _ in range(iterations))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """The autocast context of `precision` on `device` ("fp32": none). fp16 needs CUDA: a ValueError elsewhere,
    since CPU float16 autocast is slow and a CPU GradScaler is not what a user would run."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision 'fp16' needs a CUDA device (float16 autocast with a GradScaler), got {device}")
    return torch.autocast(device.type, dtype=_DTYPES[precision])


@contextlib.contextmanager
def _no_grad_autocast(device: torch.device, precision: str) -> Iterator[None]:
    with torch.no_grad(), autocast(device, precision):
        yield


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


@dataclass
class _Steps:
    """The timed calls of one (model, method): a training step and an attention batch, on a copy of the model."""

    model: SplitModel
    train: Callable[[], None]
    attention: Callable[[], None]
    channels_last: bool
    allocator: str | None  # what `retain_freed_memory` set, applied before anything is timed


def _steps(
    model: SplitModel, method: Method, batch: dict[str, torch.Tensor], class_index: int, settings: TimingSettings
) -> _Steps:
    device = batch["image"].device
    autocast(device, settings.precision)  # fp16 off CUDA fails here, before any work
    allocator = retain_freed_memory()  # the host allocator settings training runs with (benchmark.execute.train.run)
    model = copy.deepcopy(model).to(device)
    if settings.channels_last is not None:
        model = model.to(memory_format=torch.channels_last if settings.channels_last else torch.contiguous_format)
    channels_last = _is_channels_last(model)
    if settings.compile:
        model = _compiled(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-6)
    scaler = torch.amp.GradScaler(device.type) if settings.precision == "fp16" else None
    classes = torch.full((batch["image"].shape[0],), class_index, device=device)

    def train_step() -> None:
        with autocast(device, settings.precision):
            parts = method.training_loss(model, batch, epoch=10**6)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            parts["total"].backward()
            optimizer.step()
        else:
            scaler.scale(parts["total"]).backward()
            scaler.step(optimizer)
            scaler.update()

    def attention_step() -> None:
        with _no_grad_autocast(device, settings.precision):
            grad_cam(model, batch["image"], classes)

    return _Steps(model, train_step, attention_step, channels_last, allocator)


def _peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "process_peak_rss"


def _figures(
    batch: dict[str, torch.Tensor], settings: TimingSettings, steps: _Steps, train_s: float, attention_s: float
) -> dict[str, Any]:
    device = batch["image"].device
    n = batch["image"].shape[0]
    peak_mb, memory = _peak_memory(device)
    return {
        "train_images_per_s": n / train_s,
        "attention_images_per_s": n / attention_s,
        "train_step_seconds": train_s,
        "attention_batch_seconds": attention_s,
        "batch_size": n,
        # (image, ground-truth class) pairs: GAIN erases one image per pair, so its step cost grows with them
        "label_pairs": int((batch["labels"] > 0.5).sum()),
        "image_size": list(batch["image"].shape[-2:]),
        "device": str(device),
        "device_name": device_name(device),
        "precision": settings.precision,
        "channels_last": steps.channels_last,
        "compiled": settings.compile,
        "timer": "cuda_events" if device.type == "cuda" else "perf_counter",
        "threads": torch.get_num_threads(),
        "warmup": settings.warmup,
        "iterations": settings.iterations,
        "peak_memory_mb": peak_mb,
        "memory_kind": memory,
        "allocator": steps.allocator,
        "denormals_flushed": flushed_share(),
    }


def measure(
    model: SplitModel,
    method: Method,
    batch: dict[str, torch.Tensor],
    class_index: int,
    settings: TimingSettings,
) -> dict[str, Any]:
    """Train-step and attention throughput of `method` on `batch` (a copy of the model is trained, so the caller's
    weights do not change). Every image of the batch counts as pixel-labelled for a method that uses pixel labels,
    the dearest case. Records the device, precision, memory format, compilation, batch size, image size and thread
    count beside the figures. The attention figure is inference: `grad_cam` under `torch.no_grad()`."""
    device = batch["image"].device
    steps = _steps(model, method, batch, class_index, settings)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps.model.train()
    train_s = _timed(steps.train, device, settings.warmup, settings.iterations)
    steps.model.eval()
    attention_s = _timed(steps.attention, device, settings.warmup, settings.iterations)
    return _figures(batch, settings, steps, train_s, attention_s)


Contender = tuple[SplitModel, Method, dict[str, torch.Tensor], int]
"""A (model, method, batch, class index) to time: the arguments of `measure` (all contenders on one device)."""


def measure_interleaved(
    contenders: dict[str, tuple[SplitModel, Method]],
    batch: dict[str, torch.Tensor],
    class_index: int,
    settings: TimingSettings,
) -> dict[str, dict[str, Any]]:
    """`measure` for several (model, method) pairs whose ratios matter, on one batch, timed round by round.

    Each contender is first warmed up alone (`settings.warmup` train steps and attention batches). Its peak memory
    is read then: on CUDA its own (`cuda_max_allocated_own`: the peak less what was allocated before its model copy
    was made, i.e. the batch and the contenders before it), on a CPU the process's peak resident set so far (which
    includes the contenders before it). Then every round times one training
    step of each contender, starting at the next contender each round, for `settings.iterations` rounds; then the
    attention batches likewise. Each figure is the median of its rounds, so a change of load or clocks during the
    measurement shifts all contenders alike.
    """
    device = batch["image"].device
    full = {name: (model, method, batch, class_index) for name, (model, method) in contenders.items()}
    prepared = {name: _prepare(contender, settings, device) for name, contender in full.items()}
    medians = _round_medians({name: steps for name, (steps, _) in prepared.items()}, settings, device)
    return {name: _interleaved_figures(full[name], prepared[name], medians, name, settings) for name in prepared}


def measure_paired(
    baseline: Contender, contenders: dict[str, Contender], settings: TimingSettings
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Each contender timed round by round with the baseline (`settings.iterations` rounds), one contender at a time,
    so two models are in memory at once however many contenders there are; the baseline's copy is made and warmed
    up once. Returns the baseline's figures (medians over its pairings) and each contender's, with the ratios of its
    own rounds: `train_cost_ratio` (its step time over the baseline's) and `attention_speed_ratio` (the baseline's
    attention time over its)."""
    if not contenders:
        raise ValueError("measure_paired needs at least one contender to pair the baseline with")
    device = baseline[2]["image"].device
    base = _prepare(baseline, settings, device)
    base_train: list[float] = []
    base_attention: list[float] = []
    out: dict[str, dict[str, Any]] = {}
    for name, contender in contenders.items():
        mine = _prepare(contender, settings, device)
        medians = _round_medians({"baseline": base[0], "contender": mine[0]}, settings, device)
        train, attention = medians["train"], medians["attention"]
        base_train.append(train["baseline"])
        base_attention.append(attention["baseline"])
        out[name] = _interleaved_figures(contender, mine, medians, "contender", settings) | {
            "train_cost_ratio": train["contender"] / train["baseline"],
            "attention_speed_ratio": attention["baseline"] / attention["contender"],
            "timing": "paired with the baseline",
        }
        del mine  # the next contender's copy replaces this one
    medians = {"train": {"baseline": statistics.median(base_train)},
               "attention": {"baseline": statistics.median(base_attention)}}  # fmt: skip
    figures = _interleaved_figures(baseline, base, medians, "baseline", settings) | {
        "train_cost_ratio": 1.0,
        "attention_speed_ratio": 1.0,
        "timing": f"paired with each configuration ({len(contenders)}), medians over the pairings",
    }
    return figures, out


def _prepare(contender: Contender, settings: TimingSettings, device: torch.device) -> tuple[_Steps, tuple[float, str]]:
    """A contender's timed calls, warmed up alone, and its peak memory read then: on CUDA its own
    (`cuda_max_allocated_own`, the peak less what was allocated before its copy), on a CPU the process's peak so far."""
    if settings.warmup < 1:
        raise ValueError(f"interleaved timing needs warmup >= 1 (peak memory is read after it), got {settings.warmup}")
    model, method, batch, class_index = contender
    held = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0.0
    steps = _steps(model, method, batch, class_index, settings)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps.model.train()
    for _ in range(settings.warmup):
        steps.train()
    steps.model.eval()
    for _ in range(settings.warmup):
        steps.attention()
    _sync(device)
    peak_mb, kind = _peak_memory(device)
    if device.type == "cuda":  # its own: less what was allocated before its copy (earlier contenders, the batch)
        peak_mb, kind = peak_mb - held / 2**20, "cuda_max_allocated_own"
    return steps, (peak_mb, kind)


def _round_medians(
    prepared: dict[str, _Steps], settings: TimingSettings, device: torch.device
) -> dict[str, dict[str, float]]:
    """Median seconds per contender of `settings.iterations` interleaved rounds of training steps, then of attention
    batches."""
    medians: dict[str, dict[str, float]] = {}
    for kind in ("train", "attention"):
        for steps in prepared.values():
            steps.model.train(kind == "train")
        rounds = InterleavedRounds({n: getattr(steps, kind) for n, steps in prepared.items()}, device)
        for _ in range(settings.iterations):
            rounds()
        medians[kind] = rounds.medians()
    return medians


def _interleaved_figures(
    contender: Contender,
    prepared: tuple[_Steps, tuple[float, str]],
    medians: dict[str, dict[str, float]],
    name: str,
    settings: TimingSettings,
) -> dict[str, Any]:
    steps, (peak_mb, kind) = prepared
    figures = _figures(contender[2], settings, steps, medians["train"][name], medians["attention"][name])
    return figures | {"peak_memory_mb": peak_mb, "memory_kind": kind, "timing": "interleaved"}


def _is_channels_last(model: torch.nn.Module) -> bool:
    """Whether the model's 4-d weights are stored channels_last (False for a model without any)."""
    weights = [p for p in model.parameters() if p.dim() == 4]
    return bool(weights) and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def _compiled(model: SplitModel) -> SplitModel:
    """The model with `features` and `head` compiled separately, so Grad-CAM can still differentiate at the cut.

    Buffer donation is switched off (process-wide): Grad-CAM's `autograd.grad(..., retain_graph=True)` on the
    features must keep the compiled backward's saved tensors alive, which donated buffers forbid.
    """
    import torch._functorch.config

    torch._functorch.config.donated_buffer = False
    model.features = torch.compile(model.features)
    model.head = torch.compile(model.head)
    return model


def floor_loss(model: SplitModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The floor of a GAIN step: `L_cl` plus a score loss of one image per (image, ground-truth class) pair, run as
    GAIN's masked pass runs them (BatchNorm in eval mode, folded) with the gradient to those images. No Grad-CAM, no
    soft mask, no erasing: what a GAIN step would cost if everything else it does were free."""
    image, labels = batch["image"], batch["labels"]
    cl = classification_loss(model(image), labels)
    pair_image, pair_class = (labels > 0.5).nonzero(as_tuple=True)
    pairs = image[pair_image].requires_grad_(True)
    with batchnorm_mode(model, "eval"):
        logits = folded_for(model, image.device)(pairs)
    scores = torch.sigmoid(logits.gather(1, pair_class.unsqueeze(1)).squeeze(1))
    return cl + batch_mean_of_image_means(scores, pair_image, image.shape[0])


def step_flops(model: SplitModel, method: Method, batch: dict[str, torch.Tensor], precision: str = "fp32") -> int:
    """The floating-point operations of one training step of `method` (forward, Grad-CAM and every pass it adds,
    backward; not the optimiser's update) as `torch.utils.flop_counter` counts them: 2 per multiply-add of every
    convolution and matrix product. Counted on a copy, so the model's weights and gradients stay as they were."""
    device = batch["image"].device
    copy_ = copy.deepcopy(model).train()
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(device, precision):
            parts = method.training_loss(copy_, batch, epoch=10**6)
        parts["total"].backward()
    return int(counter.get_total_flops())


class FloorStep:
    """`floor_loss` as a method, so it is timed beside the real ones (`measure_interleaved`, `scripts/gpu_check.py`,
    `tests/perf`)."""

    uses_pixel_labels = False

    def training_loss(
        self, model: SplitModel, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> dict[str, torch.Tensor]:
        return {"total": floor_loss(model, batch)}


def example_batch(
    n: int, size: int, num_classes: int, device: torch.device | str = "cpu", *, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A random training batch for timing: normalised-looking images, one label per image plus a second one on every
    third image, a pixel mask per image (labels 1..K) and every image pixel-labelled."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.zeros(n, num_classes)
    labels[torch.arange(n), torch.randint(0, num_classes, (n,), generator=g)] = 1.0
    extra = torch.arange(0, n, 3)
    labels[extra, torch.randint(0, num_classes, (extra.numel(),), generator=g)] = 1.0
    batch = {
        "image": torch.randn(n, 3, size, size, generator=g),
        "labels": labels,
        "mask": torch.randint(0, num_classes + 1, (n, size, size), generator=g),
        "has_mask": torch.ones(n, dtype=torch.bool),
        "index": torch.arange(n),
    }
    return {k: v.to(device) for k, v in batch.items()}
