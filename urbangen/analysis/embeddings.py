"""Tile embeddings to compare: two baselines (raw pixels, urban-form parameters) and the learned spaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data_pipeline.dataset import TileDataset


def pixel_pca(tiles: np.ndarray, dims: int = 16, pool: int = 4, seed: int = 0) -> np.ndarray:
    """PCA of raw pixels (average-pooled ``pool`` x ``pool`` first): the simplest learned-free space."""
    from sklearn.decomposition import PCA

    n, h, w, c = tiles.shape
    pooled = tiles.reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4)).reshape(n, -1)
    return PCA(n_components=min(dims, n - 1, pooled.shape[1]), random_state=seed).fit_transform(pooled)


def standardized_parameters(values: np.ndarray) -> np.ndarray:
    """Urban-form parameter vectors, z-scored over the tiles compared; unknown values at the mean (0)."""
    mu = np.nanmean(np.where(np.isfinite(values), values, np.nan), axis=0)
    sd = np.nanstd(np.where(np.isfinite(values), values, np.nan), axis=0)
    z = (values - mu) / np.where(sd > 0, sd, 1.0)
    keep = np.isfinite(mu)
    return np.nan_to_num(z[:, keep])


def vae_means(run: str | Path, dataset: TileDataset, indices: np.ndarray, batch: int = 64) -> tuple[str, np.ndarray]:
    """Posterior means of a VAE run (conditioned, when it is, on each tile's own parameters).

    Returns the space's name, ``vae_conditional`` or ``vae_unconditional``, and the means.
    """
    from urbangen.conditioning import ParameterScaler
    from urbangen.training.tasks import load_trained

    task, state, meta = load_trained(run, best=True)
    if task.name != "vae":
        raise ValueError(f"{run} holds a {task.name} checkpoint, not a VAE")
    scaler = ParameterScaler.from_dict(meta["spec"]["scaler"])
    columns = [dataset.parameter_names.index(p) for p in scaler.names]
    params = scaler.transform(dataset.parameters(indices)[:, columns])
    encode = task.jit("encode")
    out = []
    for i in range(0, len(indices), batch):
        mu, _ = encode(state, dataset.read_tiles(indices[i:i + batch]), params[i:i + batch])
        out.append(np.asarray(mu))
    return ("vae_conditional" if task.config.vae.conditional else "vae_unconditional"), np.concatenate(out)


def encoder_embeddings(run: str | Path, dataset: TileDataset, indices: np.ndarray, batch: int = 64) -> np.ndarray:
    """Pooled attention-encoder embeddings."""
    from urbangen.training.tasks import load_trained

    task, state, _ = load_trained(run, best=True)
    if task.name != "encoder":
        raise ValueError(f"{run} holds a {task.name} checkpoint, not an encoder")
    return embed_tiles(task, state, dataset.read_tiles(indices), batch)


def embed_tiles(task, state, tiles: np.ndarray, batch: int = 64) -> np.ndarray:
    """Pooled attention-encoder embeddings of uint8 tiles, a batch at a time."""
    embed = task.jit("embed")
    return np.concatenate([np.asarray(embed(state, tiles[i:i + batch])) for i in range(0, len(tiles), batch)])
