"""Linear probes with spatially blocked folds: can a label be read off an embedding?

A probe is a logistic regression scored on regions it never saw. Everything the
probe learns from data (standardization, an optional PCA, the regression) is a
step of one scikit-learn pipeline fitted on the training folds only, so no test
row informs any part of the fit; a PCA fitted on all rows first would leak the
test folds' directions of variation into the features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from data_pipeline.errors import InvalidValueError


def probe_pipeline(reduce: int | None = None, *, seed: int = 0):
    """The probe: standardize, optionally project on ``reduce`` principal components, logistic regression.

    Parameters
    ----------
    reduce : int, optional
        Principal components kept after standardizing (for high-dimensional
        inputs such as pooled pixels); ``None`` keeps every feature.
    seed : int, default 0
        Seed of the PCA's randomized solver.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted; fit it on training rows only.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps: list[Any] = [StandardScaler()]
    if reduce is not None:
        # Whitened components: the regression's penalty then weighs every component alike, as it
        # weighs the standardized axes of the other spaces.
        steps.append(PCA(n_components=reduce, whiten=True, random_state=seed))
    # Balanced classes: cities rarely have equal tile counts, and the probe must not just predict the larger.
    steps.append(LogisticRegression(max_iter=2000, C=1.0, class_weight="balanced"))
    return make_pipeline(*steps)


def blocked_folds(y: np.ndarray, blocks: np.ndarray, *, folds: int = 5,
                  seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified cross-validation folds of whole blocks, each with both classes on both sides.

    Parameters
    ----------
    y : array_like of int, shape (n,)
        Binary labels.
    blocks : array_like, shape (n,)
        Block (region) of each row: all rows of a block fall in one fold, so a
        probe is never tested on tiles next to its training tiles.
    folds : int, default 5
        Folds at most; fewer when a class has fewer blocks.
    seed : int, default 0
        Seed of the fold assignment.

    Returns
    -------
    list of (train, test) row-index arrays
        Folds whose training or test rows hold one class only are left out
        (neither a fit nor an AUC is possible there).

    Raises
    ------
    ValueError
        If either class has fewer than two blocks.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, blocks = np.asarray(y).astype(int), np.asarray(blocks)
    n_folds = min(folds, len(np.unique(blocks[y == 0])), len(np.unique(blocks[y == 1])))
    if n_folds < 2:
        raise InvalidValueError("each side needs at least two regions for blocked cross-validation")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(train, test) for train, test in splitter.split(np.zeros(len(y)), y, blocks)
            if len(np.unique(y[train])) == 2 and len(np.unique(y[test])) == 2]


def blocked_probe(x: np.ndarray, y: np.ndarray, blocks: np.ndarray, *, folds: int = 5, seed: int = 0,
                  shuffle_labels: bool = False, reduce: int | None = None) -> dict[str, Any]:
    """Cross-validated balanced accuracy and AUC of a linear probe for a binary label, spatially blocked.

    Parameters
    ----------
    x : array_like, shape (n, d)
        Embeddings, one per row.
    y : array_like of int, shape (n,)
        Binary labels (for example 1 for one city, 0 for the other).
    blocks : array_like, shape (n,)
        Block (region) of each row; see :func:`blocked_folds`.
    folds : int, default 5
        Folds at most.
    seed : int, default 0
        Seed of the folds, the label shuffle and the PCA.
    shuffle_labels : bool, default False
        Permute the labels over blocks first, keeping each block uniform as
        the real labels are: the control, which should fall to chance.
    reduce : int, optional
        Principal components to fit inside each fold (see :func:`probe_pipeline`);
        capped by the training rows and the features of a fold.

    Returns
    -------
    dict
        ``balanced_accuracy`` and ``auc``, means over folds (both 0.5 by chance
        whatever the class balance, which plain accuracy is not); ``folds``;
        ``reduce``.
    """
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    x, y, blocks = np.asarray(x), np.asarray(y).astype(int), np.asarray(blocks)
    if shuffle_labels:
        names = np.unique(blocks)
        rng = np.random.default_rng(seed)
        block_label = dict(zip(names, rng.permutation([y[blocks == b][0] for b in names])))
        y = np.array([block_label[b] for b in blocks])
    accuracy, auc = [], []
    for train, test in blocked_folds(y, blocks, folds=folds, seed=seed):
        k = None if reduce is None else min(reduce, len(train), x.shape[1])
        model = probe_pipeline(k, seed=seed).fit(x[train], y[train])
        accuracy.append(balanced_accuracy_score(y[test], model.predict(x[test])))
        auc.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    if not auc:
        raise InvalidValueError("no fold had both classes on both sides")
    return {"balanced_accuracy": float(np.mean(accuracy)), "auc": float(np.mean(auc)), "folds": len(auc),
            "reduce": reduce}
