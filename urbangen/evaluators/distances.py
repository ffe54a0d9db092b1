"""Distances between two sets of embeddings, with intervals and a test that respect regions.

Tiles of one region share its street pattern, so the rows of a set are not
independent: the intervals come from a bootstrap over whole regions and the
p-value from permuting whole regions between the sets (see
:mod:`urbangen.evaluators.stats`). Resampling single tiles would give intervals
far too narrow for what the data can say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from urbangen.evaluators.stats import frechet_interval, mmd_interval


def distances(a: np.ndarray, b: np.ndarray, blocks_a: Sequence | np.ndarray, blocks_b: Sequence | np.ndarray, *,
              n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Fréchet distance and MMD² between two sets of embeddings, with block-bootstrap intervals.

    Parameters
    ----------
    a, b : array_like, shape (n_a, d) and (n_b, d)
        Embeddings, one per row.
    blocks_a, blocks_b : array_like, shape (n_a,) and (n_b,)
        Block (region) of each row; each side needs at least two.
    n_boot : int, default 200
        Bootstrap resamples for each interval, and permutations for the test.
    seed : int, default 0
        Seed of the resamples and permutations.

    Returns
    -------
    dict
        ``frechet``: :func:`~urbangen.evaluators.stats.frechet_interval` (taken
        at equal sample sizes, as the distance's O(1/n) bias differs with n);
        ``mmd``: :func:`~urbangen.evaluators.stats.mmd_interval` (an MMD² that
        stays unbiased when a resample repeats rows); ``mmd_permutation_p``:
        its block-permutation p-value for "one distribution", on the same
        kernel.

    Raises
    ------
    ValueError
        If a side has fewer than two blocks.
    """
    mmd = mmd_interval(a, b, blocks_a, blocks_b, n_boot=n_boot, n_perm=n_boot, seed=seed)
    p_value = mmd.pop("permutation_p")
    return {"frechet": frechet_interval(a, b, blocks_a, blocks_b, n_boot=n_boot, seed=seed), "mmd": mmd,
            "mmd_permutation_p": p_value}
