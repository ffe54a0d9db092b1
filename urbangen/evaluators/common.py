"""What every evaluator shares: real tiles of one split, and generated tiles for their parameters.

Evaluators are fed predict functions through a :class:`urbangen.inference.TrainedModel`
(big_vision's ``evaluators/common.py`` pattern) and real tiles through
:class:`RealTiles`; they return plain dicts that ``evaluation.json`` stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import jax
import numpy as np
import pandas as pd

from data_pipeline.dataset import TileDataset
from urbangen import progress
from urbangen.generate.sampler import generate_layout, to_layout
from urbangen.inference import Generator
from urbangen.measure import measure_tiles
from urbangen.splits import region_blocks


@dataclass(frozen=True)
class RealTiles:
    """Real tiles of one split: pixels, parameters (the model's parameter order, NaN where unknown), regions."""

    indices: np.ndarray
    tiles: np.ndarray  # uint8 (n, t, t, C), the dataset's channel order
    parameters: np.ndarray  # float64 (n, P)
    regions: np.ndarray  # region label per tile: the blocks of a block bootstrap
    channels: tuple[str, ...]
    meters_per_pixel: float
    parameter_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.indices)

    def measure(self, tiles: np.ndarray) -> pd.DataFrame:
        """Parameters of tiles like these (their channels and scale) through the raster path."""
        return measure_tiles(tiles, list(self.channels), self.meters_per_pixel)

    @cached_property
    def measured(self) -> pd.DataFrame:
        """These tiles' parameters through the raster path, measured once for every evaluator."""
        return self.measure(self.tiles)


@dataclass(frozen=True)
class FloorPool:
    """Every real tile a floor could have been drawn from (the split's training tiles), read a chunk at a time.

    A floor is one draw of as many real tiles as the reference; evaluators measure
    the whole pool once and draw many floors from it
    (:func:`urbangen.evaluators.stats.w1_ratios_over_floor_draws`).
    """

    dataset: TileDataset
    rows: np.ndarray
    #: Tiles read and measured at once: what the pool holds in memory at a time.
    chunk: int = 256

    def __len__(self) -> int:
        return len(self.rows)

    def values(self, statistics: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``statistics(tiles)`` (per-tile rows) of every tile of the pool, in ascending row order."""
        rows = np.sort(np.asarray(self.rows, dtype=np.int64))
        return np.concatenate([np.asarray(statistics(self.dataset.read_tiles(rows[i:i + self.chunk])), np.float64)
                               for i in range(0, len(rows), self.chunk)])


def read_real(dataset: TileDataset, indices: np.ndarray, parameter_names: tuple[str, ...]) -> RealTiles:
    """Tiles, parameters and regions of ``indices`` (city-qualified region labels: cities never share a block)."""
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    columns = [dataset.parameter_names.index(p) for p in parameter_names]
    regions = region_blocks(dataset.tiles.iloc[indices])
    return RealTiles(indices, dataset.read_tiles(indices), dataset.parameters(indices)[:, columns], regions,
                     tuple(dataset.channels), float(dataset.meters_per_pixel), tuple(parameter_names))


def sample_rows(n_available: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``min(n, n_available)`` distinct rows, sorted."""
    return np.sort(rng.choice(n_available, size=min(n, n_available), replace=False))


def generate_for(model: Generator, real: RealTiles, *, requested: np.ndarray | None = None, seed: int = 0,
                 sample: int = 0, batch: int = 32) -> np.ndarray:
    """One generated tile per real tile, in the dataset's channel order (uint8 (n, t, t, C)).

    Parameters
    ----------
    requested
        (n, P) parameter values to ask for, in their units (NaN: unknown,
        asked as the training mean); default each real tile's own.
    sample
        Which sample: different samples of the same request differ.

    Given channels (a street network a run draws around) are copied from the
    real tile; every other channel is generated.
    """
    spec = model.spec
    requested = real.parameters if requested is None else requested
    t = spec.tile_px
    z = spec.scaler.transform(requested)
    given_idx = [real.channels.index(c) for c in spec.input_channels]
    out_idx = [real.channels.index(c) for c in spec.output_channels]
    result = np.zeros_like(real.tiles)
    key = jax.random.fold_in(jax.random.key(seed), sample)
    rng = np.random.default_rng([seed, sample])
    for start in range(0, len(real), batch):
        stop = min(start + batch, len(real))
        maps = np.broadcast_to(z[start:stop, None, None, :], (stop - start, t, t, z.shape[1]))
        given = real.tiles[start:stop][..., given_idx] if given_idx else None
        probs = model.generate_tiles(maps, jax.random.fold_in(key, start), given)
        result[start:stop][..., out_idx] = to_layout(probs, spec, rng)
        if given_idx:
            result[start:stop][..., given_idx] = given
        progress.report("single tiles generated", stop, len(real))
    return result


def stitched_layout(model: Generator, fields: np.ndarray, key: jax.Array, rng: np.random.Generator,
                    channels: list[str]) -> np.ndarray:
    """A stitched layout of ``fields`` ((H, W, P) requests in the model's parameter order and their units),
    in ``channels``' order (uint8 (H, W, C)): the run's given and drawn channels, 0 in the others."""
    layout = to_layout(generate_layout(model, fields, key), model.spec, rng)
    full = np.zeros(layout.shape[:2] + (len(channels),), np.uint8)
    for j, c in enumerate(model.spec.input_channels + model.spec.output_channels):
        full[..., channels.index(c)] = layout[..., j]
    return full
