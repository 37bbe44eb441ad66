import numpy as np
import pytest

from ssm_metarl import bootstrap_ci, difference_ci


def test_ci_brackets_the_mean_and_shrinks_with_more_data():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(10, 2, size=25))
    large = bootstrap_ci(rng.normal(10, 2, size=2500))
    assert small.low < small.mean < small.high
    assert (large.high - large.low) < (small.high - small.low) / 5
    assert large.low < 10 < large.high


def test_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    estimates = [bootstrap_ci(rng.exponential(3.0, size=60), n_resamples=2000, seed=i) for i in range(200)]
    coverage = np.mean([e.low <= 3.0 <= e.high for e in estimates])
    assert 0.88 <= coverage <= 0.99


def test_same_seed_same_interval():
    values = [1.0, 5.0, 2.0, 9.0]
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="at least one value"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="equal lengths"):
        difference_ci([1, 2], [1], paired=True)


def test_difference_ci_detects_a_real_gap_and_not_noise():
    rng = np.random.default_rng(2)
    a, b = rng.normal(5, 1, 200), rng.normal(4, 1, 200)
    gap = difference_ci(a, b)
    assert gap.low > 0
    same = difference_ci(rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    assert same.low < 0 < same.high
    paired = difference_ci(a, a - 0.5, paired=True)
    assert paired.low == pytest.approx(0.5) and paired.high == pytest.approx(0.5)


def test_verdict_words_follow_the_ci():
    from ssm_metarl.report.stats import Estimate, verdict

    assert verdict(Estimate(2.0, 0.5, 3.0, 10)) == "higher than"
    assert verdict(Estimate(-2.0, -3.0, -0.5, 10)) == "lower than"
    assert verdict(Estimate(0.1, -0.2, 0.4, 10)) == "not measurably different from"
    assert verdict(Estimate(0.0, 0.0, 1.0, 10)) == "not measurably different from"  # 0 is inside
