"""Does localisation predict robustness? Spearman's rank correlation between two metrics across the configurations
of a suite, with a hierarchical bootstrap interval: pure numpy, no torch (the analyse layer).

The points are configurations (a method at a budget in one setting), each at its mean over seeds; the seeds are
nested in them. The interval resamples both levels, as `stats.hierarchical_bootstrap` does for one metric: each
resample draws the configurations with replacement, then the seeds of every drawn configuration with replacement
(every draw its own), recomputes each drawn configuration's mean of both metrics over its drawn seeds (the two
metrics of one seed stay together: they are one run), and takes the rank correlation of those means (Davison &
Hinkley, "Bootstrap Methods and their Application", 1997, sec. 3.8). Configurations, not runs, are the unit: the
question is whether configurations that localise better are more robust, and the seeds of one configuration are
not independent points of that relation; drawing runs as if they were would narrow the interval with every seed
added, however few configurations there are. Viviano et al. ("Saliency is a possible red herring when diagnosing
poor generalization", ICLR 2021) found no strong link between corrected attributions and generalisation; this is
the check of that on a suite's own configurations.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import NamedTuple

import numpy as np

from benchmark.analyse.stats import N_RESAMPLES, bootstrap_p
from benchmark.core import metric_defs
from benchmark.core.metric_defs import LOCALISATION_KIND

MIN_CONFIGURATIONS = 4
"""Fewest configurations a correlation is computed for: with 3 points Spearman's rho takes only the values ±1 and
±0.5, and a perfect ordering arises by chance one time in 6 (two-sided p 1/3), so it cannot show a link."""



def pairs(measured: Collection[str] | None = None) -> tuple[tuple[str, str], ...]:
    """(localisation metric x, robustness metric y) for every metric `metric_defs` marks `correlated`: the pairs
    the report and `studies.correlation_table` show, robustness metrics outer. Given the metrics a folder
    `measured`, a plugin's metric only where the folder measured it."""
    axes = [m for m in metric_defs.metrics() if m.correlated and m.shown_for(measured)]
    x = [m.name for m in axes if m.kind == LOCALISATION_KIND]
    return tuple((a, m.name) for m in axes if m.kind != LOCALISATION_KIND for a in x)


class RankCorrelation(NamedTuple):
    """Spearman's rho of the configurations' means, its percentile interval, the two-sided bootstrap p of rho = 0,
    the number of configurations and the bootstrap distribution (resamples where rho is undefined left out). All
    NaN, with an empty distribution, below `MIN_CONFIGURATIONS`."""

    rho: float
    low: float
    high: float
    p_value: float
    n_configurations: int
    distribution: np.ndarray

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or wholly below 0."""
        return bool(self.low > 0 or self.high < 0)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n along the last axis, tied values sharing the mean of the ranks they span (as
    `scipy.stats.rankdata(method="average")`). Vectorised over the leading axes; values must be finite."""
    a = np.asarray(values, float)
    n = a.shape[-1]
    if n == 0:
        return a.copy()
    order = np.argsort(a, axis=-1, kind="mergesort")
    ordered = np.take_along_axis(a, order, -1)
    index = np.broadcast_to(np.arange(n), a.shape)
    starts = np.ones(a.shape, bool)  # the first of a run of equal values
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]
    ends = np.ones(a.shape, bool)  # the last of one
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, index, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, index, n - 1), -1), axis=-1), -1)
    ranks = np.empty(a.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, -1)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation along the last axis: Pearson's correlation of the average ranks (Spearman, Am. J.
    Psychol. 1904; ties as in `scipy.stats.spearmanr`). NaN where either side has no spread (all values tied)."""
    rx, ry = average_ranks(x), average_ranks(y)
    rx = rx - rx.mean(-1, keepdims=True)
    ry = ry - ry.mean(-1, keepdims=True)
    denominator = np.sqrt((rx * rx).sum(-1) * (ry * ry).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = np.where(denominator > 0, (rx * ry).sum(-1) / np.where(denominator > 0, denominator, 1.0), np.nan)
    return np.clip(rho, -1.0, 1.0)


def rank_correlation(
    x: Sequence[np.ndarray],
    y: Sequence[np.ndarray],
    *,
    rng: int | np.random.Generator | Sequence[int],
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
) -> RankCorrelation:
    """Spearman's rho between two metrics across configurations, with a hierarchical bootstrap interval.

    `x[c]` and `y[c]` are configuration c's per-seed values of the two metrics, paired by position (one run each);
    the point estimate is the rank correlation of the configurations' means over seeds. Each resample draws the
    configurations with replacement, then each drawn configuration's seeds with replacement, and recomputes the
    means and the correlation (the module's docstring says why configurations are the unit). The interval is the
    percentile interval; `p_value` is the two-sided bootstrap p of rho = 0 (`stats.bootstrap_p`: the smallest level
    at which the interval excludes 0). Resamples whose drawn means tie on a whole side (rho undefined) are left
    out. Fewer than `MIN_CONFIGURATIONS` configurations give NaN (see there why).
    """
    xs = [np.asarray(v, float).ravel() for v in x]
    ys = [np.asarray(v, float).ravel() for v in y]
    if len(xs) != len(ys):
        raise ValueError(f"rank_correlation: {len(xs)} configurations of x vs {len(ys)} of y")
    for c, (a, b) in enumerate(zip(xs, ys, strict=True)):
        if a.shape != b.shape or a.size == 0:
            raise ValueError(f"rank_correlation: configuration {c}: {a.size} seeds of x vs {b.size} of y (paired, >0)")
        if not (np.isfinite(a).all() and np.isfinite(b).all()):
            raise ValueError(f"rank_correlation: configuration {c}: a value is not finite")
    n = len(xs)
    if n < MIN_CONFIGURATIONS:
        return RankCorrelation(math.nan, math.nan, math.nan, math.nan, n, np.empty(0))
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    rho = float(spearman(np.array([a.mean() for a in xs]), np.array([b.mean() for b in ys])))
    drawn = gen.integers(0, n, (n_resamples, n))
    mean_x, mean_y = np.empty(drawn.shape), np.empty(drawn.shape)
    for c, (a, b) in enumerate(zip(xs, ys, strict=True)):
        where = drawn == c
        m = int(where.sum())
        if m:
            seeds = gen.integers(0, a.size, (m, a.size))
            mean_x[where], mean_y[where] = a[seeds].mean(1), b[seeds].mean(1)
    distribution = spearman(mean_x, mean_y)
    distribution = distribution[np.isfinite(distribution)]
    if distribution.size == 0:
        return RankCorrelation(rho, math.nan, math.nan, math.nan, n, distribution)
    alpha = 1.0 - confidence
    low, high = np.percentile(distribution, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return RankCorrelation(rho, float(low), float(high), bootstrap_p(distribution), n, distribution)


def link_sentence(
    rho: float, low: float, high: float, n: int, x_label: str, y_label: str, left_out: int = 0
) -> str:
    """The result in words, from the numbers alone: "ρ = 0.31 [-0.20, 0.70] across 26 configurations: no clear
    link (the interval includes 0)"; the direction where the interval excludes 0; why there is none below
    `MIN_CONFIGURATIONS` or where rho is undefined."""
    configurations = f"{n} configuration{'' if n == 1 else 's'}"
    missing = f" ({left_out} without both left out)" if left_out else ""
    if n < MIN_CONFIGURATIONS:
        return (f"not computed: {configurations} with both{missing}, fewer than {MIN_CONFIGURATIONS} (a rank "
                "correlation of so few points cannot be told from chance)")  # fmt: skip
    if not math.isfinite(rho):
        return f"not defined across {configurations}{missing}: every configuration ties on {x_label} or {y_label}"
    head = f"ρ = {rho:.2f}" + (f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) and math.isfinite(high) else "")
    head += f" across {configurations}{missing}"
    if low > 0:
        return f"{head}: a positive link (configurations with higher {x_label} have higher {y_label})"
    if high < 0:
        return f"{head}: a negative link (configurations with higher {x_label} have lower {y_label})"
    return f"{head}: no clear link (the interval includes 0)"
