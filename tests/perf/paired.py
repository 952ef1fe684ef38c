"""Paired (interleaved) timing for ratio figures on a noisy machine.

pytest-benchmark times one test after another, so a load change between two tests shifts their ratio. Here every
round times each contender once, in an order that rotates from round to round, and a ratio is taken between the
medians over the same rounds. The ratios are kept in `RATIOS`, printed at the end of the session (tests/conftest.py)
and stored in the benchmark's `extra_info`, so they land in the JSON that `tox -e perf` saves.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

RATIOS: list[str] = []


class Interleaved:
    """Call it once per round: it times every step once, starting at the next contender each round."""

    def __init__(self, steps: dict[str, Callable[[], object]], sync: Callable[[], None] = lambda: None) -> None:
        self.steps, self.sync = steps, sync
        self.seconds: dict[str, list[float]] = {name: [] for name in steps}
        self.rounds = 0

    def __call__(self) -> None:
        names = list(self.steps)
        k = self.rounds % len(names)
        for name in names[k:] + names[:k]:
            self.sync()
            started = time.perf_counter()
            self.steps[name]()
            self.sync()
            self.seconds[name].append(time.perf_counter() - started)
        self.rounds += 1

    def ratios_to(self, baseline: str, *, skip: int = 0) -> dict[str, float]:
        """Median seconds of each contender over the baseline's, leaving out the first `skip` (warm-up) rounds."""
        base = statistics.median(self.seconds[baseline][skip:])
        return {name: statistics.median(times[skip:]) / base for name, times in self.seconds.items()}


def report(title: str, ratios: dict[str, float], rounds: int) -> None:
    body = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    RATIOS.append(f"{title} (interleaved, medians of {rounds} rounds): {body}")
