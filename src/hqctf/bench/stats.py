"""Summary statistics and the paired test of a bench: mean ± sd over seeds, Wilcoxon signed-rank over patients."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample sd (NaN values dropped; sd 0 for a single value, NaN for none)."""
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def format_mean_sd(values: Sequence[float], digits: int = 3) -> str:
    """``0.566 ± 0.037``; a single value alone; ``–`` for none."""
    mean, sd = mean_sd(values)
    if math.isnan(mean):
        return "–"
    n = sum(not math.isnan(x) for x in values)
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


@dataclass(frozen=True)
class PairedTest:
    """A two-sided Wilcoxon signed-rank test of ``a - b`` over paired observations (e.g. test patients).

    ``effect_size`` is the matched-pairs rank-biserial correlation (R+ - R-) / (R+ + R-) over the non-zero
    differences: +1 when ``a`` wins every pair, -1 when it loses every pair.
    """

    n: int
    mean_difference: float
    median_difference: float
    statistic: float
    p_value: float
    effect_size: float


def wilcoxon_paired(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """`PairedTest` of ``a`` against ``b`` (pairs with a NaN dropped; p NaN when no difference is non-zero)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} and {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    d = x[keep] - y[keep]
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return PairedTest(int(d.size), float(d.mean()) if d.size else float("nan"),
                          float(np.median(d)) if d.size else float("nan"), float("nan"), float("nan"), 0.0)
    result = stats.wilcoxon(x[keep], y[keep], zero_method="wilcox", alternative="two-sided")
    ranks = stats.rankdata(np.abs(nonzero))
    plus, minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    return PairedTest(int(d.size), float(d.mean()), float(np.median(d)), float(result.statistic),
                      float(result.pvalue), float((plus - minus) / (plus + minus)))
