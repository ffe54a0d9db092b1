"""Training data: a train/validation/test split by whole regions (:mod:`urbangen.splits`) and standardized batches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grain
import numpy as np

from data_pipeline.dataset import TileDataset, open_dataset
from data_pipeline.errors import InvalidValueError
from data_pipeline.loader import tile_batches
from urbangen.conditioning import ParameterScaler
from urbangen.splits import Split, region_split


@dataclass
class TrainingData:
    """An opened dataset, its train/validation/test split, and the scaler fitted on the training split.

    Validation tiles choose checkpoints and stop training early; test tiles
    are for reported numbers only and never touched by :mod:`urbangen.training`.
    """

    dataset: TileDataset
    split: Split
    parameter_names: list[str]
    scaler: ParameterScaler
    #: Per tile row, whether the run uses it (all when None); see ``buildings_known_only`` of :meth:`open`.
    usable: np.ndarray | None = None

    @classmethod
    def open(cls, path: str, *, parameters: Sequence[str] = (), val_fraction: float = 0.2,
             test_fraction: float = 0.2, buffer_m: float | None = None, seed: int = 0,
             scaler: ParameterScaler | None = None, buildings_known_only: bool = False,
             split_like: str = "") -> TrainingData:
        """Open ``path``, split it and fit (or reuse, when resuming) the parameter scaler.

        ``buffer_m`` of 0 or None is one tile (``tile_px * meters_per_pixel``);
        see :func:`urbangen.splits.region_split` for the rest.
        ``buildings_known_only`` keeps only tiles whose source mapped its
        buildings (a model that draws buildings must not learn that
        streets-only sources have none). The split is made on every tile
        first, so it is the same split as the other models' on this dataset
        (with the same ``split_like``).
        ``split_like``: a model file, or a shipped model's file name, trained
        on the same ground at another scale, whose split's regions this one
        follows (``like`` of :func:`urbangen.splits.region_split`); both
        datasets must have been built with the same ``region_m``, which
        names the regions.
        """
        dataset = open_dataset(path)
        names = list(parameters) or dataset.parameter_names
        unknown = [p for p in names if p not in dataset.parameter_names]
        if unknown:
            raise InvalidValueError(f"parameters {unknown} are not in the dataset; it has {dataset.parameter_names}")
        if not buffer_m:
            buffer_m = dataset.tile_px * dataset.meters_per_pixel
        like = None
        if split_like:
            from urbangen.pretrained import read_model, shipped_file

            model_file = Path(split_like) if Path(split_like).exists() else shipped_file(split_like)
            recorded = read_model(model_file).spec.split
            if recorded is None:
                raise InvalidValueError(f"split_like: {model_file} records no split to follow")
            like = Split.from_dict(recorded)
        split = region_split(dataset.tiles, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                             buffer_m=float(buffer_m), like=like,
                             region_m=float(dataset.manifest["tiling"]["region_m"]) if like else None)
        usable = dataset.tiles["buildings_known"].to_numpy(bool) if buildings_known_only else None
        if scaler is None:
            columns = [dataset.parameter_names.index(p) for p in names]
            train = split.train if usable is None else split.train[usable[split.train]]
            scaler = ParameterScaler.fit(names, dataset.parameters(train)[:, columns])
        elif list(scaler.names) != names:
            raise InvalidValueError(f"the checkpoint was trained on parameters {list(scaler.names)}, not {names}")
        return cls(dataset, split, names, scaler, usable)

    def indices(self, name: str) -> np.ndarray:
        """Row indices of split ``name`` that the run uses."""
        idx = self.split.indices(name)
        return idx if self.usable is None else idx[self.usable[idx]]

    @property
    def train_indices(self) -> np.ndarray:
        return self.indices("train")

    @property
    def val_indices(self) -> np.ndarray:
        return self.indices("val")

    @property
    def test_indices(self) -> np.ndarray:
        return self.indices("test")

    @property
    def split_record(self) -> dict[str, Any]:
        """The split as checkpoints record it (``meta["split"]``, :meth:`urbangen.splits.Split.to_dict`)."""
        return self.split.to_dict()

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
        indices = self.indices(split)
        if len(indices) == 0:
            raise InvalidValueError(f"the {split} split is empty: change val_fraction/test_fraction/split_buffer_m, "
                             "or use a dataset with more regions")
        columns = [self.dataset.parameter_names.index(p) for p in self.parameter_names]
        scaler = self.scaler

        def standardize(batch: dict[str, Any]) -> dict[str, np.ndarray]:
            raw = batch["params"][:, columns]
            return {"tile": batch["tile"], "params": scaler.transform(raw), "known": np.isfinite(raw)}

        ds = tile_batches(self.dataset, batch_size, indices=indices, seed=seed, shuffle=training,
                          augment_tiles=training, shard_index=shard_index, shard_count=shard_count, repeat=training)
        return ds.map(standardize)
