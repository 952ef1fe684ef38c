import numpy as np
import pytest
from scipy import stats as sps

from benchmark.analyse.stats import (
    batched_auroc,
    batched_mean,
    bootstrap,
    bootstrap_p,
    hierarchical_bootstrap,
    holm,
    mcnemar_exact,
    mean_of_means,
    min_of_means,
    paired_bootstrap,
    probability_of_improvement,
    seed_mean_sd,
)
from benchmark.execute.metrics import auroc


def test_seed_mean_sd():
    assert seed_mean_sd(np.array([1.0, 2.0, 3.0])) == pytest.approx((2.0, 1.0))
    mean, sd = seed_mean_sd(np.array([0.4]))
    assert mean == 0.4 and np.isnan(sd), "one seed has no spread to report"
    assert seed_mean_sd(np.array([1.0, np.nan, 3.0])) == pytest.approx((2.0, np.sqrt(2)))


def test_batched_statistics():
    x = np.array([[1, 0, 1, 1], [0, 0, 0, 1]])
    np.testing.assert_allclose(batched_mean(x), [0.75, 0.25])
    np.testing.assert_allclose(mean_of_means(x, np.array([[1, 1], [0, 0]])), [0.875, 0.125])
    np.testing.assert_allclose(min_of_means(x, np.array([[1, 1], [0, 1]])), [0.75, 0.25])
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 4, (3, 7)).astype(float), rng.integers(0, 4, (3, 5)).astype(float)
    np.testing.assert_allclose(batched_auroc(pos, neg), [auroc(p, n) for p, n in zip(pos, neg, strict=True)])
    assert np.isnan(batched_auroc(np.empty((2, 0)), neg[:2])).all()


@pytest.mark.parametrize("kind", ["normal", "indicators"])
def test_single_level_bootstrap_agrees_with_scipy(kind):
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, 120) if kind == "normal" else (rng.random(200) < 0.3).astype(float)
    ours = bootstrap(data, rng=2, n_resamples=9999)
    ref = sps.bootstrap((data,), np.mean, method="percentile", n_resamples=9999, rng=np.random.default_rng(3))
    se = data.std() / np.sqrt(data.size)
    assert ours.estimate == pytest.approx(data.mean())
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)


def test_same_seed_same_interval_and_other_seed_differs():
    rng = np.random.default_rng(0)
    per_seed = [(rng.random(50) < p).astype(float) for p in (0.3, 0.4, 0.5)]
    a = hierarchical_bootstrap(per_seed, rng=7)
    b = hierarchical_bootstrap(per_seed, rng=7)
    c = hierarchical_bootstrap(per_seed, rng=8)
    assert (a.low, a.high) == (b.low, b.high) and np.array_equal(a.distribution, b.distribution)
    assert (a.low, a.high) != (c.low, c.high)
    other = [x[::-1] for x in per_seed]
    assert paired_bootstrap(per_seed, other, rng=3)[:4] == paired_bootstrap(per_seed, other, rng=3)[:4]
    assert (
        probability_of_improvement([1, 2, 3], [2, 2, 1], rng=5)[:3]
        == probability_of_improvement([1, 2, 3], [2, 2, 1], rng=5)[:3]
    )


def _naive_two_level(per_seed, n, rng):
    """The definition, one resample at a time."""
    out = []
    for _ in range(n):
        seeds = rng.integers(0, len(per_seed), len(per_seed))
        out.append(np.mean([per_seed[s][rng.integers(0, per_seed[s].size, per_seed[s].size)].mean() for s in seeds]))
    return np.array(out)


def test_hierarchical_bootstrap_matches_the_definition_and_holds_seed_variance():
    rng = np.random.default_rng(4)
    spread = [(rng.random(80) < p).astype(float) for p in (0.2, 0.5, 0.8, 0.35)]
    ours = hierarchical_bootstrap(spread, rng=1, n_resamples=4000)
    naive = _naive_two_level(spread, 1500, np.random.default_rng(2))
    assert ours.estimate == pytest.approx(np.mean([s.mean() for s in spread]))
    assert ours.distribution.std() == pytest.approx(naive.std(), rel=0.1)
    assert ours.low == pytest.approx(np.percentile(naive, 2.5), abs=0.03)
    assert ours.high == pytest.approx(np.percentile(naive, 97.5), abs=0.03)
    alike = [(rng.random(80) < 0.46).astype(float) for _ in range(4)]
    narrow = hierarchical_bootstrap(alike, rng=1)
    assert narrow.high - narrow.low < 0.6 * (ours.high - ours.low), "seed-to-seed spread must widen the interval"


def test_hierarchical_bootstrap_of_auroc_over_two_groups():
    rng = np.random.default_rng(5)
    per_seed = [(rng.normal(1, 1, 60), rng.normal(0, 1, 40)) for _ in range(3)]
    result = hierarchical_bootstrap(per_seed, batched_auroc, rng=0)
    assert result.estimate == pytest.approx(np.mean([auroc(p, n) for p, n in per_seed]))
    assert result.low < result.estimate < result.high and 0.6 < result.estimate < 0.9


def test_paired_comparison_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(6)
    base = [(rng.random(300) < 0.5).astype(float) for _ in range(5)]
    # the method fixes a fifth of the baseline's errors: a real, paired improvement of about 0.1
    better = [np.where((b == 0) & (rng.random(b.size) < 0.2), 1.0, b) for b in base]
    real = paired_bootstrap(better, base, rng=0)
    assert real.difference == pytest.approx(np.mean([a.mean() - b.mean() for a, b in zip(better, base, strict=True)]))
    assert real.low > 0 and real.p_value < 0.01
    same = [(rng.random(300) < 0.5).astype(float) for _ in range(5)]
    null = paired_bootstrap(same, base, rng=0)
    assert null.low < 0 < null.high and null.p_value > 0.05
    identical = paired_bootstrap(base, base, rng=0)
    assert identical.difference == 0 and identical.p_value == 1.0


def test_paired_bootstrap_p_is_roughly_calibrated_under_the_null():
    rng = np.random.default_rng(9)
    rejections = 0
    for rep in range(60):
        base = [(rng.random(100) < 0.5).astype(float) for _ in range(4)]
        other = [(rng.random(100) < 0.5).astype(float) for _ in range(4)]
        rejections += paired_bootstrap(other, base, rng=rep, n_resamples=400).p_value < 0.05
    assert rejections <= 9, f"{rejections} of 60 null comparisons rejected at 0.05"


def test_paired_bootstrap_refuses_misaligned_seeds():
    with pytest.raises(ValueError, match="seed 0: shapes differ"):
        paired_bootstrap([np.zeros(3)], [np.zeros(4)], rng=0)
    with pytest.raises(ValueError, match="2 method seeds vs 1 baseline"):
        paired_bootstrap([np.zeros(3)] * 2, [np.zeros(3)], rng=0)


def test_bootstrap_p_with_the_plus_one_correction():
    assert bootstrap_p(np.array([1.0, 2.0, 3.0])) == pytest.approx(2 * 1 / 4)
    assert bootstrap_p(np.array([-1.0, 1.0, 2.0, 3.0])) == pytest.approx(2 * 2 / 5)
    assert bootstrap_p(np.zeros(5)) == 1.0


def test_holm_against_hand_computed_values():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm(np.array([0.5, 0.6])), [1.0, 1.0])  # 0.5 * 2 = 1, capped, monotone
    np.testing.assert_allclose(holm(np.array([0.3, 0.01, 0.2])), [0.4, 0.03, 0.4])  # 0.2 * 2 = 0.4 >= 0.3 * 1
    out = holm(np.array([0.02, np.nan, 0.04]))
    np.testing.assert_allclose(out[[0, 2]], [0.04, 0.04])
    assert np.isnan(out[1]), "NaN stays NaN and does not count in m"
    assert holm(np.array([])).size == 0


def test_mcnemar_exact_against_hand_computed_values():
    first = np.array([1] * 1 + [0] * 9 + [1] * 5, bool)
    second = np.array([0] * 1 + [1] * 9 + [1] * 5, bool)
    b, c, p = mcnemar_exact(first, second)
    assert (b, c) == (1, 9)
    assert p == pytest.approx(2 * (1 + 9) / 2**10 + 2 / 2**10)  # 2 * P(X <= 1), X ~ Bin(10, 1/2) = 22/1024
    assert mcnemar_exact(np.zeros(5, bool), np.ones(5, bool))[2] == pytest.approx(2 / 2**5)
    assert mcnemar_exact(np.ones(4, bool), np.ones(4, bool)) == (0, 0, 1.0), "no discordant pair: p = 1"
    assert mcnemar_exact(np.array([1, 0, 1, 0], bool), np.array([0, 1, 0, 1], bool))[2] == 1.0


def test_probability_of_improvement():
    x, y = np.array([0.9, 0.8, 0.7]), np.array([0.6, 0.8, 0.5])
    result = probability_of_improvement(x, y, rng=0)
    assert result.estimate == pytest.approx((7 + 0.5) / 9)  # 7 of 9 pairs won, one tie
    assert result.low <= result.estimate <= result.high <= 1.0
    assert probability_of_improvement(y, x, rng=0).estimate == pytest.approx((1 + 0.5) / 9)


# Mutation-testing survivors (tox -e mutation): edge cases with hand-computed values.


def test_seed_mean_sd_without_values_and_with_one_gives_nan_quietly():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "degrees of freedom" warning: one seed is handled, not stumbled into
        for values in ([], [np.nan, np.inf]):
            mean, sd = seed_mean_sd(np.array(values, float))
            assert np.isnan(mean) and np.isnan(sd)
        mean, sd = seed_mean_sd(np.array([0.25, np.nan]))
        assert mean == 0.25 and np.isnan(sd)
        assert seed_mean_sd([1, 3]) == pytest.approx((2.0, np.sqrt(2)))


def test_batched_mean_of_one_sample_and_of_rows():
    assert batched_mean(np.array([1, 0, 1, 1])) == 0.75
    assert batched_mean([True, False]) == 0.5
    assert batched_mean(np.array([[1, 0], [1, 1]])).tolist() == [0.5, 1.0]


def test_batched_auroc_with_one_or_no_positives_or_negatives():
    import warnings

    assert batched_auroc(np.array([[0.9]]), np.array([[0.1, 0.95]])).tolist() == [0.5]
    assert batched_auroc(np.array([[0.9, 0.1]]), np.array([[0.5]])).tolist() == [0.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an empty group is NaN by the rule, not by a 0/0 division
        out = batched_auroc(np.ones((2, 3)), np.empty((2, 0)))
        assert out.shape == (2,) and np.isnan(out).all()
        out = batched_auroc(np.empty((2, 0)), np.ones((2, 3)))
        assert out.shape == (2,) and np.isnan(out).all()
        assert np.isnan(batched_auroc(np.empty((1, 0)), np.empty((1, 0)))).all()


def test_bootstrap_interval_is_the_percentiles_of_its_distribution():
    x = np.array([0.1, 0.5, 0.2, 0.9, 0.4, 0.7])
    for confidence in (0.95, 0.5):
        iv = bootstrap(x, rng=1, n_resamples=300, confidence=confidence)
        assert iv.distribution.shape == (300,)
        alpha = 1 - confidence
        want = np.percentile(iv.distribution, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        assert (iv.low, iv.high) == (float(want[0]), float(want[1]))
        assert iv.estimate == pytest.approx(x.mean())


def test_bootstrap_draws_every_index_including_the_first():
    iv = bootstrap(np.array([1.0, 0, 0, 0]), rng=0, n_resamples=200)
    assert iv.distribution.max() > 0, "the first image is drawn in some resample"
    assert iv.distribution.mean() == pytest.approx(0.25, abs=0.05)


def test_bootstrap_of_one_resample_and_of_an_empty_group():
    iv = bootstrap(np.array([0.0, 1.0]), rng=0, n_resamples=1)
    assert iv.low == iv.high == iv.distribution[0], "one finite value is its own interval"
    iv = probability_of_improvement(np.array([1.0, 2.0]), np.array([]), rng=0, n_resamples=20)
    assert iv.distribution.shape == (20,) and np.isnan(iv.distribution).all()
    assert np.isnan(iv.estimate) and np.isnan(iv.low) and np.isnan(iv.high)


def test_probability_of_improvement_passes_its_settings_on():
    x, y = np.array([0.3, 0.5, 0.9, 0.4]), np.array([0.2, 0.6, 0.1])
    iv = probability_of_improvement(x, y, rng=3, n_resamples=40, confidence=0.5)
    assert iv.distribution.shape == (40,)
    assert (iv.low, iv.high) == tuple(float(v) for v in np.percentile(iv.distribution, [25, 75]))
    again = probability_of_improvement(x, y, rng=3, n_resamples=40, confidence=0.5)
    assert np.array_equal(iv.distribution, again.distribution), "the seed is used"
    assert iv.estimate == pytest.approx(9 / 12), "x beats y in 9 of 12 pairs"
    assert probability_of_improvement([1, 2], [0, 3], rng=0, n_resamples=5).estimate == 0.5


def test_hierarchical_bootstrap_without_seeds_says_so():
    with pytest.raises(ValueError, match=r"^hierarchical_bootstrap: no seeds$"):
        hierarchical_bootstrap([], rng=0)


def test_paired_bootstrap_draws_every_seed():
    method = [np.array([1.0, 1.0]), np.array([0.0, 0.0])]
    baseline = [np.array([0.0, 0.0]), np.array([0.0, 0.0])]
    cmp = paired_bootstrap(method, baseline, rng=0, n_resamples=400)
    assert cmp.difference == 0.5
    assert cmp.distribution.shape == (400,)
    assert cmp.distribution.mean() == pytest.approx(0.5, abs=0.05), "seed 0 (+1) and seed 1 (0) both drawn"
    one = paired_bootstrap(method[:1], baseline[:1], rng=0, n_resamples=10)
    assert one.difference == 1.0 and np.all(one.distribution == 1.0)


def test_bootstrap_p_of_tiny_and_empty_distributions():
    assert bootstrap_p(np.array([0.5])) == 1.0, "(1 + 0) * 2 / 2, capped at 1"
    assert bootstrap_p([0.5, 0.2, 0.3]) == 0.5, "2 (1 + 0) / 4"
    assert np.isnan(bootstrap_p(np.array([]))) and np.isnan(bootstrap_p(np.array([np.nan])))


def test_holm_of_one_p_and_the_cap_at_one():
    assert holm(np.array([0.03])).tolist() == [0.03], "one test: nothing to adjust"
    assert holm(np.array([0.6, 0.9])).tolist() == [1.0, 1.0], "2 * 0.6 and 0.9 capped at 1"
    assert holm(np.array([0.01, 0.04, 0.03])) == pytest.approx([0.03, 0.06, 0.06])


def test_mcnemar_takes_any_truthy_encoding_and_names_a_shape_mismatch():
    first, second = [1.0, 1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0, 0.0]
    b, c, p = mcnemar_exact(np.array(first), np.array(second))
    assert (b, c) == (2, 1) and p == pytest.approx(1.0)
    assert mcnemar_exact(np.array([2, 2, 0]), np.array([1, 0, 0]))[:2] == (1, 0), "2 and 1 are both right"
    assert mcnemar_exact(np.array([1, 1, 1]), np.array([0, 0, 0])) == (3, 0, pytest.approx(0.25))
    with pytest.raises(ValueError, match=r"^mcnemar_exact: shapes differ, \(2,\) vs \(3,\)$"):
        mcnemar_exact(np.zeros(2), np.zeros(3))
