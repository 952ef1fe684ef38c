"""Keep freed host memory for reuse (glibc's malloc), so a training step does not page-fault its buffers anew.

PyTorch's CPU tensors come from `malloc`. Under glibc's defaults a large block is mmap-ed and handed back to the
kernel when freed, or the heap top is trimmed, so the next step's activations of the same size fault their pages in
again: on this project's small CNN (batch 64, 48 px) thousands of minor page faults per step, 15-20% of a step, and
erratic, since glibc's dynamic mmap threshold adapts part of the time. Raising the mmap threshold to its maximum and
the trim threshold keeps freed blocks in the heap for the next step; the peak resident set is unchanged (measured
by tests/perf/test_train_step.py and checked by tests/test_allocator.py). It is what jemalloc or tcmalloc preloaded
would do for PyTorch on a CPU, without either.

Elsewhere (macOS, musl, Windows) it does nothing, and `GAIN_BENCH_MALLOC=default` in the environment turns it off.
The settings are process-wide and stay for the life of the process (glibc has no way back short of a new process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling on 64-bit systems (larger values are refused)
TRIM_THRESHOLD = 2**30


@functools.cache
def retain_freed_memory() -> str | None:
    """Apply the settings once per process; a description of what was set, for the run record, or None where
    nothing was (not glibc, or `GAIN_BENCH_MALLOC=default`)."""
    if os.environ.get("GAIN_BENCH_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, libc_version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):  # not glibc
        return None
    libc_version.argtypes, libc_version.restype = [], ctypes.c_char_p
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = [
        f"{name}={value >> 20} MiB"
        for name, option, value in (
            ("mmap_threshold", M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX),
            ("trim_threshold", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        )
        if mallopt(option, value)
    ]
    if not applied:
        return None
    version = libc_version()
    return f"glibc {version.decode() if version else '?'} malloc: {', '.join(applied)}"
