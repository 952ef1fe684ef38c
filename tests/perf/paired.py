"""Paired (interleaved) timing for ratio figures on a noisy machine.

pytest-benchmark times one test after another, so a load change between two tests shifts their ratio. Here every
round times each contender once, in an order that rotates from round to round
(`benchmark.execute.timing.InterleavedRounds`,
which `measure_interleaved` uses too), and a ratio is taken between the medians over the same rounds. The ratios are
kept in `RATIOS`, printed at the end of the session (tests/conftest.py) and stored in the benchmark's `extra_info`, so
they land in the JSON that `tox -e perf` saves.
"""

from __future__ import annotations

from benchmark.execute.timing import InterleavedRounds

RATIOS: list[str] = []


def ratios_to(rounds: InterleavedRounds, baseline: str, *, skip: int = 0) -> dict[str, float]:
    """Median seconds of each contender over the baseline's, leaving out the first `skip` (warm-up) rounds; all
    rounds but the last when there are no more (`--benchmark-disable` runs a benchmark once)."""
    medians = rounds.medians(skip=min(skip, rounds.rounds - 1))
    return {name: seconds / medians[baseline] for name, seconds in medians.items()}


def report(title: str, ratios: dict[str, float], rounds: int) -> None:
    body = ", ".join(f"{name} {ratio:.2f}x" for name, ratio in ratios.items())
    RATIOS.append(f"{title} (interleaved, medians of {rounds} rounds): {body}")
