"""The numbers of the comparison: blocked linear probes, distances with bootstrap intervals, correlations."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats

from urbangen.metrics import frechet_distance


def blocked_probe(x: np.ndarray, y: np.ndarray, blocks: np.ndarray, *, folds: int = 5, seed: int = 0,
                  shuffle_labels: bool = False) -> dict[str, float]:
    """Cross-validated logistic-regression balanced accuracy and AUC of a binary label, spatially blocked.

    Both are 0.5 by chance whatever the class balance (cities rarely have
    equal tile counts), which plain accuracy is not.

    Whole blocks (``region`` squares) go to one fold, so a probe is never
    tested on tiles next to its training tiles. ``shuffle_labels`` permutes
    the labels over blocks first: the control that should fall to chance.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray(y).astype(int)
    rng = np.random.default_rng(seed)
    if shuffle_labels:  # shuffle whole blocks' labels, keeping each block uniform as the real labels are
        names = np.unique(blocks)
        block_label = dict(zip(names, rng.permutation([y[blocks == b][0] for b in names])))
        y = np.array([block_label[b] for b in blocks])
    n_folds = min(folds, len(np.unique(blocks[y == 0])), len(np.unique(blocks[y == 1])))
    if n_folds < 2:
        raise ValueError("each side needs at least two regions for blocked cross-validation")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    accuracy, auc = [], []
    for train, test in splitter.split(x, y, blocks):
        if len(np.unique(y[train])) < 2 or len(np.unique(y[test])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced"))
        model.fit(x[train], y[train])
        accuracy.append(balanced_accuracy_score(y[test], model.predict(x[test])))
        auc.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    return {"balanced_accuracy": float(np.mean(accuracy)), "auc": float(np.mean(auc)), "folds": len(accuracy)}


def mmd_rbf(a: np.ndarray, b: np.ndarray) -> float:
    """Squared maximum mean discrepancy (unbiased) with an RBF kernel at the median pairwise distance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    both = np.concatenate([a, b])
    sq = (both ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None] - 2.0 * both @ both.T, 0.0)  # float64 Gram form: one matmul
    gamma = 1.0 / max(np.median(d2[np.triu_indices(len(both), 1)]), 1e-12)
    k = np.exp(-gamma * d2)
    n, m = len(a), len(b)
    kaa, kbb, kab = k[:n, :n], k[n:, n:], k[:n, n:]
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def bootstrap(statistic: Callable[[np.ndarray, np.ndarray], float], a: np.ndarray, b: np.ndarray, *,
              n_boot: int = 200, seed: int = 0) -> dict[str, float]:
    """The statistic and its 95 % percentile bootstrap interval (both sets resampled with replacement)."""
    rng = np.random.default_rng(seed)
    draws = [statistic(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
             for _ in range(n_boot)]
    lo, hi = np.percentile(draws, [2.5, 97.5])
    return {"value": statistic(a, b), "ci95": [float(lo), float(hi)], "n": [int(len(a)), int(len(b))]}


def distances(a: np.ndarray, b: np.ndarray, *, n_boot: int = 200, seed: int = 0) -> dict[str, dict]:
    """Frechet distance and MMD between two sets of embeddings, each with a bootstrap interval."""
    return {"frechet": bootstrap(frechet_distance, a, b, n_boot=n_boot, seed=seed),
            "mmd": bootstrap(mmd_rbf, a, b, n_boot=n_boot, seed=seed)}


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
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    nearest = d.argmin(1)
    order = np.argsort(d[np.arange(len(a)), nearest])[:k]
    return [(int(i), int(nearest[i]), float(d[i, nearest[i]])) for i in order]
