"""Statistics over seeds and images: small, seeded, vectorised pure functions over numpy arrays.

A *statistic* here is a function of one or more groups of per-image values, each an array `[m, n_g]` (m resamples
of group g), returning `[m]`: `batched_mean` for the paper's rows (the mean of 0/1 indicators), `mean_of_means`
for "overall" (the mean of two groups' rates), `min_of_means` for worst-group accuracy, `batched_auroc` for AUROC.
Groups are resampled independently (a stratified bootstrap), so each keeps its size.

Every function that draws takes `rng` (a seed or a `numpy.random.Generator`) explicitly; the same seed gives the same
result. Intervals are percentile intervals (Efron & Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

Groups = np.ndarray | tuple[np.ndarray, ...]
Statistic = Callable[..., np.ndarray]
N_RESAMPLES = 2000
ALPHA = 0.05
"""The family-wise level every "significant" of the report, the tables and the claims is read at."""
MIN_REPLICATES = 8
"""The fewest full replicates a claim or a "significant" rests on: with 8, the exact sign-flip test reaches p 0.0078,
so a difference every replicate agrees on survives Holm's adjustment over a few comparisons."""


class Interval(NamedTuple):
    """A point estimate, its percentile interval and the bootstrap distribution it was read from."""

    estimate: float
    low: float
    high: float
    distribution: np.ndarray


class PairedComparison(NamedTuple):
    """Mean difference (method - baseline), its paired bootstrap interval, two-sided p and the distribution."""

    difference: float
    low: float
    high: float
    p_value: float
    distribution: np.ndarray


def batched_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis: the metric of the paper's rows when `values` are 0/1 indicators."""
    return np.asarray(values, float).mean(-1)


def mean_of_means(*groups: np.ndarray) -> np.ndarray:
    """Mean of the groups' means: "overall", the mean of the two shifted groups' rates."""
    return np.mean([batched_mean(g) for g in groups], axis=0)


def min_of_means(*groups: np.ndarray) -> np.ndarray:
    """Lowest of the groups' means: worst-group accuracy (Sagawa et al., "Distributionally robust neural networks",
    ICLR 2020)."""
    return np.min([batched_mean(g) for g in groups], axis=0)


def batched_auroc(positive: np.ndarray, negative: np.ndarray) -> np.ndarray:
    """AUROC per row, `[m, n_pos]` vs `[m, n_neg]` -> `[m]`: the Mann-Whitney U / (n_pos n_neg), ties counting 1/2
    (Hanley & McNeil, Radiology 1982). NaN when a group is empty."""
    positive, negative = np.atleast_2d(positive), np.atleast_2d(negative)
    n_pos, n_neg = positive.shape[-1], negative.shape[-1]
    if n_pos == 0 or n_neg == 0:
        return np.full(max(positive.shape[0], negative.shape[0]), np.nan)
    ranks = sps.rankdata(np.concatenate([positive, negative], axis=-1), axis=-1)
    u = ranks[:, :n_pos].sum(-1) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def _generator(rng: int | np.random.Generator | Sequence[int]) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _as_groups(data: Groups) -> tuple[np.ndarray, ...]:
    groups = data if isinstance(data, tuple) else (data,)
    return tuple(np.asarray(g) for g in groups)


def _value(groups: tuple[np.ndarray, ...], statistic: Statistic) -> float:
    return float(statistic(*(g[None] for g in groups))[0])


def _percentiles(distribution: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    finite = distribution[np.isfinite(distribution)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def _draw(groups: tuple[np.ndarray, ...], m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`m` resamples with replacement of every group's own indices, `[m, n_g]` each."""
    return [rng.integers(0, g.shape[0], (m, g.shape[0])) if g.shape[0] else np.empty((m, 0), int) for g in groups]


def seed_mean_sd(values: np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1) of a metric over seeds, as reported by Henderson et al., "Deep
    reinforcement learning that matters", AAAI 2018. The sd is NaN for fewer than two seeds (it is undefined, not 0);
    non-finite values are left out."""
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else float("nan")


def bootstrap(
    data: Groups,
    statistic: Statistic = batched_mean,
    *,
    rng: int | np.random.Generator | Sequence[int],
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
) -> Interval:
    """Single-level percentile bootstrap interval of `statistic` over one sample (or several groups, each resampled
    within itself). Agrees with `scipy.stats.bootstrap(..., method="percentile")` within Monte-Carlo error."""
    groups = _as_groups(data)
    distribution = statistic(*(g[i] for g, i in zip(groups, _draw(groups, n_resamples, _generator(rng)), strict=True)))
    return Interval(_value(groups, statistic), *_percentiles(distribution, confidence), distribution)


def hierarchical_bootstrap(
    per_seed: Sequence[Groups],
    statistic: Statistic = batched_mean,
    *,
    rng: int | np.random.Generator | Sequence[int],
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
) -> Interval:
    """Two-level bootstrap interval of a metric averaged over seeds.

    `per_seed[s]` holds seed s's per-image values (one array, or a tuple of groups); the metric is the mean over
    seeds of `statistic` on each seed's images. Each resample draws the seeds with replacement, then the images of
    every drawn seed with replacement (each draw of a seed gets its own image resample), so the interval holds both
    the seed-to-seed and the finite-test-set variation (Davison & Hinkley, "Bootstrap Methods and their
    Application", 1997, sec. 3.8; Field & Welsh, JRSS-B 2007). Vectorised over resamples; one loop over seeds. With a
    single seed it reduces to the single-level bootstrap over images.
    """
    gen = _generator(rng)
    seeds = [_as_groups(d) for d in per_seed]
    if not seeds:
        raise ValueError("hierarchical_bootstrap: no seeds")
    drawn = gen.integers(0, len(seeds), (n_resamples, len(seeds)))
    values = np.empty(drawn.shape)
    for s, groups in enumerate(seeds):
        where = drawn == s
        m = int(where.sum())
        if m:
            values[where] = statistic(*(g[i] for g, i in zip(groups, _draw(groups, m, gen), strict=True)))
    distribution = values.mean(1)
    estimate = float(np.mean([_value(g, statistic) for g in seeds]))
    return Interval(estimate, *_percentiles(distribution, confidence), distribution)


def paired_bootstrap(
    method: Sequence[Groups],
    baseline: Sequence[Groups],
    statistic: Statistic = batched_mean,
    *,
    rng: int | np.random.Generator | Sequence[int],
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
) -> PairedComparison:
    """Paired two-level bootstrap of the difference `method - baseline` of a metric averaged over seeds.

    `method[s]` and `baseline[s]` are the same seed (paired by seed number: same data, same budget subset) on the
    same images in the same order. A resample draws seed indices with replacement, then image indices that are
    shared by the two methods, so the image-to-image variation common to both cancels (the paired design).

    p-value: two-sided, from the bootstrap distribution of the difference, `p = min(1, 2 min(1 + #{d* <= 0},
    1 + #{d* >= 0}) / (B + 1))`, i.e. the smallest level at which the percentile interval excludes 0 (Davison &
    Hinkley 1997, sec. 4.4; the +1 keeps p > 0, North et al., AJHG 2002). Chosen over a sign-flip permutation test
    because it resamples the same two levels as the interval (seeds and images) and is not limited by the few seeds
    (a sign flip over 4 seeds cannot go below p = 1/8). It is approximate: with few seeds it is anti-conservative
    in the seed dimension, like every method that estimates between-seed variance from them.
    """
    if len(method) != len(baseline):
        raise ValueError(f"paired_bootstrap: {len(method)} method seeds vs {len(baseline)} baseline seeds")
    pairs = [(_as_groups(a), _as_groups(b)) for a, b in zip(method, baseline, strict=True)]
    for s, (a, b) in enumerate(pairs):
        if [g.shape for g in a] != [g.shape for g in b]:
            raise ValueError(f"paired_bootstrap: seed {s}: shapes differ, {[g.shape for g in a]} vs baseline's")
    gen = _generator(rng)
    drawn = gen.integers(0, len(pairs), (n_resamples, len(pairs)))
    values = np.empty(drawn.shape)
    for s, (a, b) in enumerate(pairs):
        where = drawn == s
        m = int(where.sum())
        if m:
            index = _draw(a, m, gen)
            values[where] = statistic(*(g[i] for g, i in zip(a, index, strict=True))) - statistic(
                *(g[i] for g, i in zip(b, index, strict=True))
            )
    distribution = values.mean(1)
    difference = float(np.mean([_value(a, statistic) - _value(b, statistic) for a, b in pairs]))
    return PairedComparison(
        difference, *_percentiles(distribution, confidence), bootstrap_p(distribution), distribution
    )


def bootstrap_p(distribution: np.ndarray) -> float:
    """Two-sided p of "difference = 0" from a bootstrap distribution of the difference (see `paired_bootstrap`)."""
    d = np.asarray(distribution, float)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return float("nan")
    tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0))
    return float(min(1.0, 2.0 * (1 + tail) / (d.size + 1)))


EXACT_SIGN_FLIPS = 20  # up to this many replicates the sign-flip test enumerates every assignment (2^20 rows)


def sign_flip_test(
    differences: np.ndarray,
    *,
    rng: int | np.random.Generator | Sequence[int] = 0,
    n_resamples: int = 100_000,
) -> float:
    """Two-sided p of "the paired differences are symmetric about 0", from the mean difference over replicates:
    the share of the 2^n assignments of signs to the n differences whose mean is at least as far from 0 as the one
    observed (Fisher, "The Design of Experiments", 1935, sec. 21; Good, "Permutation, Parametric and Bootstrap Tests
    of Hypotheses", 2005, sec. 3.1). Exact (every assignment enumerated) up to `EXACT_SIGN_FLIPS` replicates, a
    Monte-Carlo estimate with the observed assignment counted (`(1 + k) / (1 + B)`) above. The replicate is the unit:
    with n replicates p cannot fall below 2 / 2^n (0.0078 for 8, 0.125 for 4). NaN without a finite difference."""
    d = np.asarray(differences, float)
    d = d[np.isfinite(d)]
    n = d.size
    if n == 0:
        return float("nan")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))  # a flip that ties the observed mean counts as extreme
    if n <= EXACT_SIGN_FLIPS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        means = np.abs(((1 - 2 * bits) * d).mean(1))
        return float(np.count_nonzero(means >= observed - tolerance) / means.size)
    signs = _generator(rng).choice((-1.0, 1.0), size=(n_resamples, n))
    extreme = np.count_nonzero(np.abs((signs * d).mean(1)) >= observed - tolerance)
    return float((1 + extreme) / (1 + n_resamples))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (Holm, "A simple sequentially rejective multiple test procedure",
    Scand. J. Statist. 1979): the k-th smallest of m becomes `max_{j<=k} min(1, (m - j + 1) p_(j))`, monotone and
    capped at 1, in the input order. NaN entries stay NaN and do not count in m. Controls the family-wise error
    rate under any dependence between the tests."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    q = p[finite]
    m = q.size
    if m == 0:
        return out
    order = np.argsort(q, kind="mergesort")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    result = np.empty(m)
    result[order] = adjusted
    out[finite] = result
    return out


def mcnemar_exact(first_correct: np.ndarray, second_correct: np.ndarray) -> tuple[int, int, float]:
    """Exact McNemar test of two classifiers on the same images (McNemar, Psychometrika 1947; the exact binomial form
    recommended by Fagerland, Lydersen & Laake, BMC Med. Res. Methodol. 2013).

    Returns (b, c, p): b images only the first gets right, c only the second; p is the two-sided
    `scipy.stats.binomtest(b, b + c, 0.5)` p-value. Without discordant pairs (b + c = 0) there is no evidence of a
    difference: p = 1.
    """
    first, second = np.asarray(first_correct, bool), np.asarray(second_correct, bool)
    if first.shape != second.shape:
        raise ValueError(f"mcnemar_exact: shapes differ, {first.shape} vs {second.shape}")
    b, c = int(np.count_nonzero(first & ~second)), int(np.count_nonzero(~first & second))
    p = 1.0 if b + c == 0 else float(sps.binomtest(b, b + c, 0.5).pvalue)
    return b, c, p


def probability_of_improvement(
    x: np.ndarray,
    y: np.ndarray,
    *,
    rng: int | np.random.Generator | Sequence[int],
    n_resamples: int = N_RESAMPLES,
    confidence: float = 0.95,
) -> Interval:
    """P(X > Y) + P(X = Y) / 2 over all pairs of X's and Y's seed scores (higher is better), with a percentile
    interval from resampling each method's seeds independently (the stratified bootstrap of rliable: Agarwal,
    Schwarzer, Castro, Courville, Bellemare, "Deep reinforcement learning at the edge of the statistical precipice",
    NeurIPS 2021). 0.5 means no tendency; pass negated scores for a lower-is-better metric."""
    return bootstrap(
        (np.asarray(x, float), np.asarray(y, float)),
        batched_auroc,
        rng=rng,
        n_resamples=n_resamples,
        confidence=confidence,
    )
