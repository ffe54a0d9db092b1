"""Grain input pipeline over a tile dataset.

Deterministic for a given seed, sharded per host, with flip and 90-degree
rotation augmentation. The pipeline is a random-access ``grain.MapDataset``:
batch ``k`` is ``batches[k]``, so a training run resumed at step ``k`` reads
exactly the batches an uninterrupted run would have read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from data_pipeline.dataset import TileDataset
from data_pipeline.errors import InvalidValueError


class TileSource:
    """Random-access data source (grain's protocol): example ``i`` of a subset of tiles.

    Each example is a dict with ``tile`` (uint8 H x W x C), ``params``
    (float32, the dataset's parameter order, NaN where unknown) and
    ``index`` (the row in ``tiles.parquet``).
    """

    def __init__(self, dataset: TileDataset, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self._params = dataset.parameters(self.indices).astype(np.float32)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        return {"tile": self.dataset.read_tile(row), "params": self._params[i], "index": row}

    def __repr__(self) -> str:  # grain logs sources by repr
        return f"TileSource({self.dataset.path}, n={len(self)})"


class EpochShuffle:
    """Index ``k`` of an endless stream that visits every example once per epoch.

    Epoch ``e`` is a permutation drawn from ``(seed, e)``, so any position of
    the stream can be computed directly (what resuming needs) and no example
    repeats within an epoch.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, epochs: int = 1_000_000) -> None:
        self.n, self.seed, self.shuffle, self.epochs = n, seed, shuffle, epochs
        self._cached: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.n * self.epochs

    def __getitem__(self, k: int) -> int:
        epoch, pos = divmod(int(k), self.n)
        if not self.shuffle:
            return pos
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._cached[1][pos])


def augment(example: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Random horizontal flip and rotation by a multiple of 90 degrees.

    Both keep the parameters valid: every per-tile parameter is invariant
    under them (orientation entropy included, as its bins are symmetric).
    """
    tile = np.rot90(example["tile"], k=int(rng.integers(4)), axes=(0, 1))
    if rng.integers(2):
        tile = tile[:, ::-1]
    return dict(example, tile=np.ascontiguousarray(tile))


def tile_batches(
    dataset: TileDataset,
    batch_size: int,
    *,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    shuffle: bool = True,
    augment_tiles: bool = True,
    shard_index: int = 0,
    shard_count: int = 1,
    repeat: bool = True,
) -> grain.MapDataset:
    """Batches of examples for training or evaluation.

    Parameters
    ----------
    dataset
        The opened dataset.
    batch_size
        Examples per batch (per host); the last incomplete batch is dropped.
    indices
        Rows to use (for example the training regions); default all.
    seed
        Seeds shuffling (reshuffled each epoch) and augmentation.
    shuffle, augment_tiles
        Switch shuffling and augmentation off for evaluation.
    shard_index, shard_count
        This host's shard: hosts read disjoint subsets
        (``jax.process_index()``, ``jax.process_count()``).
    repeat
        Repeat for ever (training) or stop after one epoch.
    """
    all_rows = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
    source = TileSource(dataset, all_rows[shard_index::shard_count])
    if len(source) < batch_size:
        raise InvalidValueError(f"{len(all_rows)} tiles cannot fill a batch of {batch_size} on {shard_count} host(s)")
    order = EpochShuffle(len(source), seed, shuffle=shuffle, epochs=1_000_000 if repeat else 1)
    ds = grain.MapDataset.source(order).map(source.__getitem__)
    if augment_tiles:
        ds = ds.random_map(augment, seed=seed + 1)
    return ds.batch(batch_size, drop_remainder=True)
