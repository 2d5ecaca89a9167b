"""Bench statistics against scipy and hand-computed values on fixed numbers."""

import math

import numpy as np
import pytest
from scipy import stats

from hqctf.bench.stats import format_mean_sd, mean_sd, wilcoxon_paired

A = [0.61, 0.55, 0.72, 0.48, 0.66, 0.59, 0.70, 0.52, 0.64, 0.58, 0.69, 0.51]
B = [0.58, 0.57, 0.65, 0.41, 0.60, 0.60, 0.62, 0.50, 0.55, 0.49, 0.70, 0.47]


def test_wilcoxon_matches_scipy():
    test = wilcoxon_paired(A, B)
    reference = stats.wilcoxon(A, B)
    assert test.n == 12
    assert test.statistic == pytest.approx(reference.statistic) and test.p_value == pytest.approx(reference.pvalue)
    assert test.mean_difference == pytest.approx(np.mean(np.subtract(A, B)))
    assert test.median_difference == pytest.approx(np.median(np.subtract(A, B)))


@pytest.mark.parametrize("a, b, effect", [
    ([1, 2, 3, -4], [0, 0, 0, 0], (1 + 2 + 3 - 4) / 10),  # ranks 1..4, R+ = 6, R- = 4
    ([1, 2, 3], [0, 0, 0], 1.0),                           # a wins every pair
    ([0, 0, 0], [1, 2, 3], -1.0),                          # a loses every pair
    ([5, 1, 2], [5, 0, 0], 1.0),                           # the tie is dropped
])
def test_rank_biserial_effect_size(a, b, effect):
    assert wilcoxon_paired(a, b).effect_size == pytest.approx(effect)


def test_missing_pairs_are_dropped_and_no_difference_has_no_p_value():
    test = wilcoxon_paired([0.5, float("nan"), 0.7, 0.2], [0.4, 0.3, float("nan"), 0.1])
    assert test.n == 2 and test.mean_difference == pytest.approx(0.1)
    same = wilcoxon_paired([0.5, 0.6], [0.5, 0.6])
    assert math.isnan(same.p_value) and same.effect_size == 0.0
    with pytest.raises(ValueError, match="differ in length"):
        wilcoxon_paired([1, 2], [1])


@pytest.mark.parametrize("values, text", [
    ([0.523, 0.590, 0.584], "0.566 ± 0.037"),
    ([0.5], "0.500"),              # one seed: no ± nan
    ([0.5, float("nan")], "0.500"),
    ([], "–"),
])
def test_mean_sd_format(values, text):
    assert format_mean_sd(values) == text


def test_mean_sd_is_the_sample_sd():
    assert mean_sd([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, float(np.std([1, 2, 4], ddof=1))))
