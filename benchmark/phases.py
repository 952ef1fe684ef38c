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
    """`k/N <unit>` lines at every quarter of `total` (a log stays short; a terminal sees it move)."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit, self.done, self.next = total, unit, 0, 0.25

    def add(self, n: int) -> None:
        self.done += n
        if self.total and self.done / self.total >= self.next - 1e-9:
            say(f"  {self.done}/{self.total} {self.unit}")
            while self.done / self.total >= self.next - 1e-9:
                self.next += 0.25
