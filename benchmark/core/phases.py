"""What a long command says while it works: one line when a phase that takes more than a few seconds starts (what,
how much, and where its result goes), one when it ends (how long it took), on stderr so stdout keeps the tables."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextmanager
def phase(what: str) -> Iterator[None]:
    """`what ...` now, `<what's first clause>: done in S s` after (`stopped after S s` when it raises)."""
    say(f"{what} ...")
    short = what.split(":")[0].split(" (")[0]
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        say(f"{short}: stopped after {time.perf_counter() - started:.1f} s")
        raise
    say(f"{short}: done in {time.perf_counter() - started:.1f} s")


class Counter:
    """`k/N <unit>` lines at every quarter of `total` once `after` seconds have passed (a log stays short, and a
    phase of a few seconds says only its start and end; a long one shows that it moves)."""

    def __init__(self, total: int, unit: str, after: float = 5.0) -> None:
        self.total, self.unit, self.done, self.next = total, unit, 0, 0.25
        self.quiet_until = time.perf_counter() + after

    def add(self, n: int) -> None:
        self.done += n
        if self.total and self.done / self.total >= self.next - 1e-9:
            if time.perf_counter() >= self.quiet_until:
                say(f"  {self.done}/{self.total} {self.unit}")
            while self.done / self.total >= self.next - 1e-9:
                self.next += 0.25
