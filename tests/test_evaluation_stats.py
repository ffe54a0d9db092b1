"""Distances between embedding sets and their block-bootstrap intervals, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import pdist

from urbangen.evaluators.stats import (
    block_bootstrap,
    equal_size,
    frechet_distance,
    frechet_interval,
    kid,
    mmd2,
    mmd2_rbf,
    mmd_interval,
    rbf_kernel,
)


def _random_covariance(rng: np.random.Generator, d: int) -> np.ndarray:
    q = rng.normal(size=(d, d))
    return q @ q.T / d + 0.1 * np.eye(d)


def _frechet_eigh(mu_a, cov_a, mu_b, cov_b) -> float:
    """Fréchet distance through tr sqrt(C_a^(1/2) C_b C_a^(1/2)), a symmetric route independent of sqrtm."""
    w, v = linalg.eigh(cov_a)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    root_trace = np.sqrt(np.clip(linalg.eigvalsh(half @ cov_b @ half), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * root_trace)


def _expected_rbf(m1, c1, m2, c2, h: float) -> float:
    """E exp(-|x - y|^2 / (2 h^2)) for independent x ~ N(m1, c1), y ~ N(m2, c2)."""
    s, dm, eye = c1 + c2, m1 - m2, np.eye(len(m1))
    return float(linalg.det(eye + s / h**2) ** -0.5 * np.exp(-0.5 * dm @ linalg.solve(s + h**2 * eye, dm)))


def _mmd2_gaussians(m1, c1, m2, c2, h: float) -> float:
    within = _expected_rbf(m1, c1, m1, c1, h) + _expected_rbf(m2, c2, m2, c2, h)
    return within - 2 * _expected_rbf(m1, c1, m2, c2, h)


def _naive_mmd2(kernel, ia, ib) -> float:
    """Pair-by-pair MMD²: within-group pairs of positions skip those of one original row."""
    def within(idx):
        total = pairs = 0
        for p in range(len(idx)):
            for q in range(len(idx)):
                if idx[p] != idx[q]:
                    total += kernel[idx[p], idx[q]]
                    pairs += 1
        return total / pairs

    cross = sum(kernel[i, j] for i in ia for j in ib) / (len(ia) * len(ib))
    return within(ia) + within(ib) - 2 * cross


def _diagonal_only_mmd2(kernel, ia, ib) -> float:
    """The usual unbiased MMD² applied blindly to a resample: only the submatrices' diagonals left out."""
    kaa, kbb = kernel[np.ix_(ia, ia)], kernel[np.ix_(ib, ib)]
    m, n = len(ia), len(ib)
    return ((kaa.sum() - np.trace(kaa)) / (m * (m - 1)) + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
            - 2 * kernel[np.ix_(ia, ib)].mean())


def test_frechet_distance_matches_eigendecomposition_reference():
    rng = np.random.default_rng(0)
    d = 6
    a = rng.multivariate_normal(rng.normal(size=d), _random_covariance(rng, d), 80)
    b = rng.multivariate_normal(rng.normal(size=d), _random_covariance(rng, d), 50)
    expected = _frechet_eigh(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_with_singular_covariances_is_the_reference_s_and_quiet():
    """Singular covariances (embedding dimensions that never vary, as in the quickstart's analysis) give the
    eigendecomposition reference's distance, and no scipy "Matrix is singular" warning on the console."""
    import warnings

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(30, 16)), rng.normal(0.5, 1.0, size=(31, 16))
    a[:, :4], b[:, :4] = 1.0, 2.0  # four dimensions constant in each set
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = frechet_distance(a, b)
    expected = _frechet_eigh(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert np.isfinite(got) and got == pytest.approx(expected, rel=1e-3)


def test_frechet_distance_of_known_gaussians_at_large_n():
    # Diagonal covariances commute, so the distance is |m1 - m2|^2 + sum (sqrt(s1) - sqrt(s2))^2 exactly.
    rng = np.random.default_rng(1)
    m1, m2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([0.25, 2.0, 2.0])
    truth = ((m1 - m2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    a = m1 + rng.normal(size=(200_000, 3)) * np.sqrt(s1)
    b = m2 + rng.normal(size=(200_000, 3)) * np.sqrt(s2)
    assert frechet_distance(a, b) == pytest.approx(truth, rel=0.02)


def test_kid_matches_naive_double_loop():
    rng = np.random.default_rng(2)
    d = 4
    a, b = rng.normal(size=(9, d)), rng.normal(0.3, 1.2, size=(9, d))

    def k(x, y):
        return (float(np.dot(x, y)) / d + 1.0) ** 3

    m = len(a)
    xx = sum(k(a[i], a[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(b[i], b[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a[i], b[j]) for i in range(m) for j in range(m)) / (m * m)
    # One subset as large as the sets is a permutation of them, which the estimate does not see.
    out = kid(a, b, subset_size=m, n_subsets=1)
    assert out["value"] == pytest.approx(xx + yy - 2 * xy, rel=1e-12)
    assert out["std"] == 0.0 and out["subset_size"] == m and out["n_subsets"] == 1
    assert kid(a, b[:7], n_subsets=3)["subset_size"] == 7


def test_kid_near_zero_for_one_distribution_and_not_for_two():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same = kid(a, b, subset_size=100, n_subsets=50, seed=1)
    assert abs(same["value"]) < 2 * same["std"]
    shifted = kid(a, b + 0.5, subset_size=100, n_subsets=50, seed=1)
    assert shifted["value"] > 3 * shifted["std"]


def test_rbf_kernel_median_bandwidth_and_formula():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3))
    kernel, h = rbf_kernel(x)
    assert h == pytest.approx(np.median(pdist(x)))
    i, j = 3, 17
    assert kernel[i, j] == pytest.approx(np.exp(-((x[i] - x[j]) ** 2).sum() / (2 * h * h)), rel=1e-12)
    assert np.allclose(np.diag(kernel), 1.0) and np.allclose(kernel, kernel.T)
    fixed, h_fixed = rbf_kernel(x, bandwidth=0.7)
    assert h_fixed == 0.7
    assert fixed[i, j] == pytest.approx(np.exp(-((x[i] - x[j]) ** 2).sum() / 0.98), rel=1e-12)
    with pytest.raises(ValueError):
        rbf_kernel(x, bandwidth=0.0)


def test_mmd2_without_duplicates_is_the_unbiased_u_statistic():
    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(size=(12, 2)), rng.normal(0.5, 1.0, size=(10, 2))])
    kernel, h = rbf_kernel(x)
    ia, ib = rng.permutation(12), 12 + rng.permutation(10)
    u_statistic = ((kernel[:12, :12].sum() - 12) / (12 * 11) + (kernel[12:, 12:].sum() - 10) / (10 * 9)
                   - 2 * kernel[:12, 12:].mean())
    assert mmd2(kernel, ia, ib) == pytest.approx(u_statistic, rel=1e-12)
    assert mmd2(kernel, ia, ib) == pytest.approx(_naive_mmd2(kernel, ia, ib), rel=1e-12)
    assert mmd2_rbf(x[:12], x[12:]) == pytest.approx(u_statistic, rel=1e-12)


def test_mmd2_with_duplicates_skips_pairs_of_one_original_row():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(20, 3))
    kernel, _ = rbf_kernel(x)
    ia = np.array([0, 0, 1, 2, 2, 2, 3, 4, 5, 5])
    ib = np.array([10, 11, 11, 12, 13, 14, 14, 19])
    assert mmd2(kernel, ia, ib) == pytest.approx(_naive_mmd2(kernel, ia, ib), rel=1e-12)
    # The diagonal-only form differs exactly by the k(x, x) = 1 pairs of copies it keeps.
    assert _diagonal_only_mmd2(kernel, ia, ib) > mmd2(kernel, ia, ib)
    with pytest.raises(ValueError):
        mmd2(kernel, np.array([3, 3, 3]), ib)


def test_mmd2_is_unbiased_under_bootstrap_resampling_where_the_naive_form_is_not():
    # Two samples of one distribution, plain row bootstrap: the diagonal-only form counts pairs of copies
    # (k = 1) as if they were distinct rows and drifts upward by about 2 (1 - mean k) / n.
    rng = np.random.default_rng(7)
    n, pairs, resamples = 60, 20, 40
    naive, valid = np.empty((pairs, resamples)), np.empty((pairs, resamples))
    original = np.empty((pairs, 1))
    for p in range(pairs):
        kernel, _ = rbf_kernel(rng.normal(size=(2 * n, 2)))
        original[p] = mmd2(kernel, np.arange(n), n + np.arange(n))
        for r in range(resamples):
            ia, ib = rng.integers(0, n, n), n + rng.integers(0, n, n)
            naive[p, r], valid[p, r] = _diagonal_only_mmd2(kernel, ia, ib), mmd2(kernel, ia, ib)
    # Original pairs are independent: the spread of their resample means gives the standard error.
    se = valid.mean(1).std(ddof=1) / np.sqrt(pairs)
    assert abs(valid.mean()) < 3 * se
    assert naive.mean() > 5 * se
    # Sharper, free of the originals' own noise: the valid form's resamples centre on each original
    # estimate (exactly, in expectation, for a row bootstrap); the naive form's sit above it.
    shift_valid, shift_naive = valid - original, naive - original
    mc_se = shift_valid.std(ddof=1) / np.sqrt(shift_valid.size)
    assert abs(shift_valid.mean()) < 3 * mc_se
    assert shift_naive.mean() > 10 * mc_se and np.all(shift_naive.mean(1) > 0)


def test_equal_size_subsamples_the_larger_without_replacement():
    rng = np.random.default_rng(8)
    a, b = np.arange(50), np.arange(100, 130)
    a2, b2 = equal_size(a, b, rng)
    assert len(a2) == len(b2) == 30 and np.array_equal(b2, b)
    assert len(np.unique(a2)) == 30 and set(a2) <= set(a)
    x, y = equal_size(np.ones((5, 2)), np.zeros((9, 2)), 0)
    assert x.shape == y.shape == (5, 2)


def _labels(rng, sizes, prefix):
    labels = np.repeat([f"{prefix}{i}" for i in range(len(sizes))], sizes)
    return labels[rng.permutation(len(labels))]  # blocks need not be contiguous rows


def test_block_bootstrap_resamples_whole_blocks():
    rng = np.random.default_rng(9)
    blocks_a, blocks_b = _labels(rng, [3, 5, 2, 4, 6], "r"), _labels(rng, [4, 4, 1, 7], "r")
    calls, returned = [], []

    def statistic(ia, ib):
        calls.append((np.asarray(ia).copy(), np.asarray(ib).copy()))
        returned.append(float(len(np.unique(ia)) - len(np.unique(ib))))
        return returned[-1]

    out = block_bootstrap(statistic, np.zeros(len(blocks_a)), np.zeros(len(blocks_b)), blocks_a, blocks_b,
                          n_boot=50, seed=1)
    assert len(calls) == 51
    assert np.array_equal(calls[0][0], np.arange(20)) and np.array_equal(calls[0][1], np.arange(16))
    for ia, ib in calls[1:]:
        for idx, labels in ((ia, blocks_a), (ib, blocks_b)):
            counts = np.bincount(idx, minlength=len(labels))
            draws = 0
            for label in np.unique(labels):
                in_block = counts[labels == label]
                assert np.all(in_block == in_block[0])  # a block comes whole or not at all
                draws += in_block[0]
            assert draws == len(np.unique(labels))  # as many blocks drawn as the side has
    assert out["n"] == [20, 16] and out["blocks"] == [5, 4] and out["n_boot"] == 50
    values = np.array(returned[1:])
    bias, se = values.mean() - out["value"], values.std(ddof=1)
    centre, half = out["value"] - bias, 1.959964 * se
    assert out["ci95"] == pytest.approx([centre - half, centre + half])
    basic = block_bootstrap(statistic, np.zeros(20), np.zeros(16), blocks_a, blocks_b, n_boot=50, seed=1,
                            interval="basic")
    q_lo, q_hi = np.quantile(values, [0.025, 0.975])  # same seed, same resamples
    assert basic["ci95"] == pytest.approx([2 * out["value"] - q_hi, 2 * out["value"] - q_lo])


def test_block_bootstrap_equal_n_takes_every_value_at_the_smaller_size():
    rng = np.random.default_rng(10)
    blocks_a, blocks_b = _labels(rng, [5] * 8, "a"), _labels(rng, [4] * 6, "b")
    sizes, values = [], []

    def statistic(ia, ib):
        sizes.append((len(ia), len(ib)))
        values.append(float(len(np.unique(ia))))
        return values[-1]

    out = block_bootstrap(statistic, np.zeros(40), np.zeros(24), blocks_a, blocks_b, n_boot=30, equal_n=True)
    assert all(m == n for m, n in sizes)
    assert sizes[0] == (24, 24) and len(sizes) == 10 + 30
    assert out["value"] == pytest.approx(np.mean(values[:10]))  # point estimate: mean of 10 subsamples


def test_mmd_permutation_test_moves_whole_blocks():
    rng = np.random.default_rng(11)

    def regional(n_blocks, shift):
        offsets = rng.normal(0, 1.0, size=(n_blocks, 2))  # strong shared offset per region
        x = np.repeat(offsets, 6, 0) + rng.normal(0, 0.2, size=(6 * n_blocks, 2)) + shift
        return x, np.repeat(np.arange(n_blocks), 6)

    # One distribution: block permutation keeps the p-value from being small, where a row permutation,
    # blind to the shared offsets, would reject nearly always.
    small = 0
    for _ in range(10):
        (a, ba), (b, bb) = regional(8, 0.0), regional(8, 0.0)
        small += mmd_interval(a, b, ba, bb, n_boot=2, n_perm=100, seed=1)["permutation_p"] < 0.05
    assert small <= 3
    (a, ba), (b, bb) = regional(12, 0.0), regional(12, 2.5)
    assert mmd_interval(a, b, ba, bb, n_boot=2, n_perm=100, seed=1)["permutation_p"] == pytest.approx(1 / 101)


# Coverage: regions of 4-6 rows sharing a random offset, two different Gaussians in d = 3.
_D, _H = 3, 2.0
_M1, _M2 = np.zeros(_D), np.array([0.6, -0.3, 0.2])
_T1, _T2 = 0.3 * np.eye(_D), np.diag([0.2, 0.4, 0.3])  # covariance of the per-region offsets
_S1 = np.array([[1.0, 0.3, 0.0], [0.3, 0.8, 0.1], [0.0, 0.1, 0.6]])  # covariance within a region
_S2 = np.array([[0.7, -0.2, 0.1], [-0.2, 1.2, 0.0], [0.1, 0.0, 0.9]])


def _regional_sample(rng, mean, offsets_cov, within_cov, n_blocks):
    sizes = rng.integers(4, 7, n_blocks)
    offsets = rng.multivariate_normal(np.zeros(_D), offsets_cov, n_blocks)
    x = np.repeat(offsets, sizes, 0) + rng.multivariate_normal(mean, within_cov, sizes.sum())
    return x, np.repeat(np.arange(n_blocks), sizes)


def test_block_bootstrap_intervals_cover_the_truth():
    # A row is marginally N(m, T + S): the truths are the population distances between those marginals.
    c1, c2 = _T1 + _S1, _T2 + _S2
    truth_frechet = _frechet_eigh(_M1, c1, _M2, c2)
    truth_mmd = _mmd2_gaussians(_M1, c1, _M2, c2, _H)
    rng = np.random.default_rng(12)
    covered = {"frechet": 0, "mmd": 0, "mmd_same": 0}
    for repeat in range(200):
        a, blocks_a = _regional_sample(rng, _M1, _T1, _S1, 36)
        b, blocks_b = _regional_sample(rng, _M2, _T2, _S2, 30)
        same, blocks_same = _regional_sample(rng, _M1, _T1, _S1, 30)
        lo, hi = frechet_interval(a, b, blocks_a, blocks_b, n_boot=200, seed=repeat)["ci95"]
        covered["frechet"] += lo <= truth_frechet <= hi
        lo, hi = mmd_interval(a, b, blocks_a, blocks_b, n_boot=200, seed=repeat, bandwidth=_H)["ci95"]
        covered["mmd"] += lo <= truth_mmd <= hi
        lo, hi = mmd_interval(a, same, blocks_a, blocks_same, n_boot=200, seed=repeat, bandwidth=_H)["ci95"]
        covered["mmd_same"] += lo <= 0.0 <= hi
    assert all(count >= 180 for count in covered.values()), covered


def test_nearest_tile_in_another_region_matches_a_plain_loop():
    """Diversity's real neighbours: the nearest row in parameters from another region (scipy's cdist), against
    a loop over every pair in float64; a row alone in the only region has none (-1)."""
    from urbangen.evaluators.diversity import _nearest_other_region

    rng = np.random.default_rng(3)
    z = rng.normal(size=(60, 4))
    regions = rng.integers(0, 6, 60)
    expected = []
    for i in range(60):
        best, best_d = -1, np.inf
        for j in range(60):
            d = float(sum((z[i, k] - z[j, k]) ** 2 for k in range(4)))
            if regions[j] != regions[i] and d < best_d:
                best, best_d = j, d
        expected.append(best)
    np.testing.assert_array_equal(_nearest_other_region(z, regions), expected)
    assert (_nearest_other_region(z[:3], np.zeros(3, int)) == -1).all()
