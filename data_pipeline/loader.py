"""Grain input pipeline over a tile dataset.

Deterministic for a given seed, sharded per host, with flip and 90-degree
rotation augmentation, reshuffled each epoch. The pipeline is a random-access ``grain.MapDataset``:
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

#: A subset of tiles up to this size is read into memory once, when its source is made: reading a tile
#: from zarr costs about 1 ms of Python, ten times what the rest of the pipeline costs, so a GPU step at
#: 64 px would wait on it. Batches of 64 of the offline city set's 2534 training tiles (64 px): 1,000 tiles
#: a second read tile by tile, 9,700 held (2-core AMD EPYC CPU, 2026-12-04; 2.5 s to read them first).
#: Larger subsets (whole-region datasets) are read tile by tile as they are needed.
IN_MEMORY_MAX_BYTES = 1 << 30


class TileSource:
    """Random-access data source (grain's protocol): example ``i`` of a subset of tiles.

    Each example is a dict with ``tile`` (uint8 H x W x C), ``params``
    (float32, the dataset's parameter order, NaN where unknown) and
    ``index`` (the row in ``tiles.parquet``). Subsets of at most
    ``in_memory_max_bytes`` of tiles are held in memory (:data:`IN_MEMORY_MAX_BYTES`).
    """

    def __init__(self, dataset: TileDataset, indices: Sequence[int] | np.ndarray | None = None, *,
                 in_memory_max_bytes: int = IN_MEMORY_MAX_BYTES) -> None:
        self.dataset = dataset
        self.indices = np.arange(len(dataset)) if indices is None else np.asarray(indices, dtype=np.int64)
        self._params = dataset.parameters(self.indices).astype(np.float32)
        tile_bytes = dataset.tile_px ** 2 * len(dataset.channels)
        in_memory = 0 < len(self.indices) and len(self.indices) * tile_bytes <= in_memory_max_bytes
        self._tiles = dataset.read_tiles(self.indices) if in_memory else None

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        tile = self.dataset.read_tile(row) if self._tiles is None else self._tiles[i]
        return {"tile": tile, "params": self._params[i], "index": row}

    def __repr__(self) -> str:  # grain logs sources by repr
        return f"TileSource({self.dataset.path}, n={len(self)})"


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
    indices: Sequence[int] | np.ndarray | None = None,
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
    ds = grain.MapDataset.source(source)
    if shuffle:
        # Grain reshuffles every epoch of a repeat (its seed plus the epoch): element k of the stream is a
        # pure function of k, what resuming at any step needs, and no example repeats within an epoch.
        # Its epoch e draws with seed + e: hashing the run's seed first keeps seed s's epoch 1 from being
        # seed s + 1's epoch 0.
        ds = ds.shuffle(seed=int(np.random.SeedSequence(seed).generate_state(1)[0]))
    if repeat:
        ds = ds.repeat()
    if augment_tiles:
        ds = ds.random_map(augment, seed=seed + 1)
    return ds.batch(batch_size, drop_remainder=True)
