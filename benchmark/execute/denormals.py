"""Flushing denormal floats to zero (`train.flush_denormal`), and what share of a parallel operation it reaches.

`torch.set_flush_denormal` sets the FTZ/DAZ flags of the calling thread only. The threads of torch's intra-op pool
(OpenMP) take the flags the main thread had when the pool started, at the first parallel operation of the process,
and keep them. So a process that flushes for training must set the flag before its first parallel operation
(`flush_from_the_start`: the command line does, before it loads data), or only the calling thread's share of each
parallel operation is flushed: half of it on two threads. The flag changes no result beyond denormal values; it
avoids the slow path x86 takes on them (a prototype's run once slowed 4x).

Each run records `flushed_share()`, measured after its flag is set: 1.0 where every thread flushes, 0.0 where none
does, and in between where only some do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

_PROBE = 1 << 20  # elements: enough chunks of torch's parallel grain for every thread of the pool to take some


def flush_from_the_start(flush: bool) -> None:
    """Set the flag in this thread before torch's thread pool starts, so that every pool thread inherits it. Call it
    before any parallel torch operation of the process (it is too late afterwards, see the module)."""
    torch.set_flush_denormal(flush)


@contextlib.contextmanager
def denormals_flushed(flush: bool) -> Iterator[None]:
    """`torch.set_flush_denormal(flush)` in this thread for the block, as a run trains (`TrainSettings.flush_denormal`),
    then off again, the default; the pool threads keep what they inherited (see the module)."""
    torch.set_flush_denormal(flush)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


_DENORMAL_BITS = 0x000AE398  # float32 1e-39, written as its bits: converting 1e-39 would be flushed itself


def flushed_share() -> float:
    """The share of a parallel multiplication's denormal results that came out as zero in this process, now (read
    as bits: a float comparison with zero would itself count a denormal as zero where flushing is on)."""
    denormal = torch.from_numpy(np.full(_PROBE, _DENORMAL_BITS, dtype=np.int32).view(np.float32))
    product = denormal * 1.0
    return float((product.view(torch.int32) == 0).sum()) / _PROBE
