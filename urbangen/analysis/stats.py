"""The descriptive numbers of the comparison: axis-parameter correlations and nearest tiles across cities.

Probes and distances, with their folds, intervals and tests, are evaluators:
:mod:`urbangen.evaluators.probes` and :mod:`urbangen.evaluators.distances`.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from scipy.spatial.distance import cdist


def axis_correlations(z: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Spearman correlation of every embedding axis (rows) with every parameter (columns); NaN where unknown."""
    out = np.full((z.shape[1], params.shape[1]), np.nan)
    for j in range(params.shape[1]):
        ok = np.isfinite(params[:, j])
        if ok.sum() < 3 or np.ptp(params[ok, j]) == 0:
            continue
        for i in range(z.shape[1]):
            if np.ptp(z[ok, i]) > 0:
                out[i, j] = stats.spearmanr(z[ok, i], params[ok, j]).statistic
    return out


def nearest_across(za: np.ndarray, zb: np.ndarray, k: int = 5) -> list[tuple[int, int, float]]:
    """The ``k`` pairs (index in a, index in b, distance) of a-tiles closest to any b-tile (standardized space)."""
    both = np.concatenate([za, zb])
    mu, sd = both.mean(0), both.std(0) + 1e-12
    a, b = (za - mu) / sd, (zb - mu) / sd
    d = cdist(a, b)
    nearest = d.argmin(1)
    order = np.argsort(d[np.arange(len(a)), nearest])[:k]
    return [(int(i), int(nearest[i]), float(d[i, nearest[i]])) for i in order]
