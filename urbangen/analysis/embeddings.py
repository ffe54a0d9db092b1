"""Tile embeddings to compare: two baselines (raw pixels, urban-form parameters) and the learned spaces."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # jax loads only when a run is
    from urbangen.inference import TrainedModel


def pooled_pixels(tiles: np.ndarray, pool: int = 4) -> np.ndarray:
    """Tiles average-pooled ``pool`` x ``pool`` and flattened, (n, (t / pool)^2 C) float: the raw pixel space."""
    n, h, w, c = tiles.shape
    return tiles.reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4)).reshape(n, -1)


def pixel_pca(pooled: np.ndarray, dims: int = 16, seed: int = 0) -> np.ndarray:
    """Standardized pooled pixels projected on their first ``dims`` principal components (whitened).

    The same map as a pixel-space probe fits inside each of its folds
    (:func:`urbangen.evaluators.probes.probe_pipeline` with ``reduce``), here
    fitted once on every tile given: a fixed map for distances and figures.
    """
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = min(dims, len(pooled) - 1, pooled.shape[1])
    return make_pipeline(StandardScaler(), PCA(n_components=k, whiten=True, random_state=seed)).fit_transform(pooled)


def standardized_parameters(values: np.ndarray) -> np.ndarray:
    """Urban-form parameter vectors, z-scored over the tiles compared; unknown values at the mean (0)."""
    mu = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
    sd = np.nanstd(np.where(np.isfinite(values), values, np.nan), axis=0)
    z = (values - mu) / np.where(sd > 0, sd, 1.0)
    keep = np.isfinite(mu)
    return np.nan_to_num(z[:, keep])


def scaled_parameters(model: TrainedModel, parameters: np.ndarray, parameter_names: Sequence[str]) -> np.ndarray:
    """Parameter values (n, P) in their units, columns named ``parameter_names``, as a run takes them.

    Reordered to the run's parameters and standardized with its scaler (NaN, unknown, at 0: the training mean).
    """
    columns = [list(parameter_names).index(p) for p in model.spec.parameter_names]
    return model.spec.scaler.transform(parameters[:, columns])


def vae_means(model: TrainedModel, tiles: np.ndarray, z_params: np.ndarray) -> tuple[str, np.ndarray]:
    """Posterior means of a VAE run, conditioned (when it is) on each tile's own parameters.

    Parameters
    ----------
    model
        A VAE run (:func:`urbangen.inference.load_run`).
    tiles
        uint8 tiles (n, t, t, C) in the run's channel order.
    z_params
        (n, P) standardized parameters of the tiles (:func:`scaled_parameters`).

    Returns
    -------
    name, means
        The space's name, ``vae_conditional`` or ``vae_unconditional``, and the (n, latent) means.

    Raises
    ------
    urbangen.inference.RunSpecError
        If the run is not a VAE (it has no ``encode``).
    """
    means = model.encode_tiles(tiles, z_params)
    return ("vae_conditional" if model.spec.conditional else "vae_unconditional"), means
