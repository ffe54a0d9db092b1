"""Training data: a geographic train/validation split and standardized batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grain
import numpy as np
import pandas as pd

from data_pipeline.dataset import TileDataset, open_dataset
from data_pipeline.loader import tile_batches
from urbangen.conditioning import ParameterScaler


def geographic_split(tiles: pd.DataFrame, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out whole regions (``region_m`` squares, see ``TilingConfig``) of every city.

    Random tiles would sit next to training tiles (and overlap them when
    the stride is below the tile size), which flatters validation. Each
    city with at least two regions gives ``ceil(val_fraction * regions)``
    of them, chosen by ``seed``, to validation.

    Returns
    -------
    train, val
        Row indices into ``tiles``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_regions: set[str] = set()
    for city in sorted(tiles["city"].unique()):
        regions = np.array(sorted(tiles.loc[tiles["city"] == city, "region"].unique()))
        if len(regions) < 2 or val_fraction == 0:
            continue
        n_val = min(len(regions) - 1, int(np.ceil(val_fraction * len(regions))))
        val_regions.update(rng.choice(regions, size=n_val, replace=False).tolist())
    is_val = tiles["region"].isin(val_regions).to_numpy()
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


@dataclass
class TrainingData:
    """An opened dataset, its split, and the scaler fitted on the training split."""

    dataset: TileDataset
    train_indices: np.ndarray
    val_indices: np.ndarray
    parameter_names: list[str]
    scaler: ParameterScaler

    @classmethod
    def open(cls, path: str, *, parameters: Sequence[str] = (), val_fraction: float = 0.2, seed: int = 0,
             scaler: ParameterScaler | None = None) -> TrainingData:
        """Open ``path``, split it and fit (or reuse, when resuming) the parameter scaler."""
        dataset = open_dataset(path)
        names = list(parameters) or dataset.parameter_names
        unknown = [p for p in names if p not in dataset.parameter_names]
        if unknown:
            raise ValueError(f"parameters {unknown} are not in the dataset; it has {dataset.parameter_names}")
        train, val = geographic_split(dataset.tiles, val_fraction, seed)
        if scaler is None:
            columns = [dataset.parameter_names.index(p) for p in names]
            scaler = ParameterScaler.fit(names, dataset.parameters(train)[:, columns])
        elif list(scaler.names) != names:
            raise ValueError(f"the checkpoint was trained on parameters {list(scaler.names)}, not {names}")
        return cls(dataset, train, val, names, scaler)

    @property
    def spec(self) -> dict[str, Any]:
        """What a model needs to know about the data (and generation later needs from a checkpoint)."""
        return {"channels": self.dataset.channels, "tile_px": self.dataset.tile_px,
                "meters_per_pixel": self.dataset.meters_per_pixel, "parameters": self.parameter_names,
                "scaler": self.scaler.to_dict()}

    def batches(self, split: str, batch_size: int, *, seed: int = 0, training: bool = True,
                shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
        """Batches of ``{"tile": uint8 (B, H, W, C), "params": float32 (B, P), "known": bool (B, P)}``.

        ``params`` are standardized (0 where unknown); ``known`` says which were measured.

        ``training`` shuffles, augments and repeats for ever; otherwise one
        ordered pass. Batch ``k`` is ``batches(...)[k]``.
        """
        indices = {"train": self.train_indices, "val": self.val_indices}[split]
        if len(indices) == 0:
            raise ValueError(f"the {split} split is empty; lower/raise val_fraction or add regions")
        columns = [self.dataset.parameter_names.index(p) for p in self.parameter_names]
        scaler = self.scaler

        def standardize(batch: dict[str, Any]) -> dict[str, np.ndarray]:
            raw = batch["params"][:, columns]
            return {"tile": batch["tile"], "params": scaler.transform(raw), "known": np.isfinite(raw)}

        ds = tile_batches(self.dataset, batch_size, indices=indices, seed=seed, shuffle=training,
                          augment_tiles=training, shard_index=shard_index, shard_count=shard_count, repeat=training)
        return ds.map(standardize)
