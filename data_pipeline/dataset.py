"""The dataset on disk: a contract that training, generation and analysis build on.

Layout of a dataset directory ``DIR``::

    DIR/manifest.json        format version, tiling, channels, parameters, cities, attribution
    DIR/tiles.parquet        one row per tile: id, city, CRS, bounds, region, parameters
    DIR/rasters/CITY.zarr    uint8 array (n_tiles_of_city, H, W, C), one chunk per tile
    DIR/coverage/CITY.geojson  the city's coverage polygon (where its data was mapped), lon/lat

A dataset is written into a sibling temporary directory and moved into
place in one ``rename`` only when complete, so an interrupted build never
leaves a directory that looks like a dataset. Only a directory holding such a
manifest (or an empty one) is ever replaced (see :mod:`data_pipeline.atomic`).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipeline.atomic import PartialDir, check_replaceable, is_empty_dir, write_text_atomic
from data_pipeline.errors import DatasetError

#: 2 (2026-12-03): the road channels draw osmnx's drive network only, the network whose intersections and
#: dead ends the parameters count (no service roads: driveways and parking aisles had made real tiles
#: measure about 30 intersections a km² more than their own parameters). 1: every road.
FORMAT_VERSION = 2
#: Versions of datasets this urbangen wrote before: recognised as its own (``--overwrite`` may replace them),
#: but not read.
OLDER_FORMAT_VERSIONS = (1,)
ATTRIBUTION = "© OpenStreetMap contributors (ODbL)"
MANIFEST = "manifest.json"
TILES = "tiles.parquet"
RASTERS = "rasters"
#: Columns of tiles.parquet before the parameter columns.
TILE_COLUMNS = ("tile_id", "city", "crs", "x0", "y0", "x1", "y1", "region", "raster_index", "buildings_known",
                "coverage")
COVERAGE = "coverage"


def _zarr_compressor():
    from zarr.codecs import BloscCodec

    # Binary masks: bit-shuffled zstd stores a 256 x 256 x 6 tile in a few KB.
    return BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")


def create_raster_array(path: str | Path, n_tiles: int, tile_px: int, n_channels: int):
    """A new zarr array for a city's tiles: ``(n_tiles, H, W, C)`` uint8, one chunk per tile.

    Chunk files are named ``c.I.0.0.0`` in one folder, not ``c/I/0/0/0``: the nested
    default makes three folders per tile, and creating, linking and removing
    them took half of a city build's raster time (Columbus: 13,453 ``mkdir``).
    """
    import zarr

    return zarr.create_array(
        store=str(path),
        shape=(n_tiles, tile_px, tile_px, n_channels),
        chunks=(1, tile_px, tile_px, n_channels),
        chunk_key_encoding={"name": "default", "separator": "."},
        dtype="uint8",
        compressors=_zarr_compressor(),
    )


def link_or_copy(src: str, dst: str) -> None:
    """Hard-link a file (instant, no extra space) and copy it where links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


class DatasetWriter:
    """Writes a dataset into a temporary directory; :meth:`commit` publishes it.

    Use as a context manager: leaving the block with an exception removes the
    temporary directory and leaves ``out_dir`` as it was.

    Parameters
    ----------
    out_dir
        The dataset directory. It may be missing or an empty directory; an
        existing dataset is replaced only with ``overwrite``, and anything else
        is never replaced.

    Raises
    ------
    ForeignDirectoryError
        If ``out_dir`` holds something that is not a dataset (see :func:`is_dataset_dir`).
    DatasetError
        If ``out_dir`` is a dataset and ``overwrite`` is false.
    """

    def __init__(self, out_dir: str | Path, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        check_out_dir(self.out_dir, overwrite)
        # Removes only partial directories of builds that have ended: a concurrent build's stays.
        self._partial = PartialDir(self.out_dir)
        self.tmp_dir = self._partial.path
        (self.tmp_dir / RASTERS).mkdir()
        self._frames: list[pd.DataFrame] = []
        self._cities: dict[str, dict[str, Any]] = {}
        self._arrays: dict[str, Any] = {}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # After a commit the directory has been renamed away; otherwise it is scrap.
        self._partial.discard()

    def add_city(self, city: str, n_tiles: int, tile_px: int, n_channels: int, info: dict[str, Any]) -> None:
        """Create the raster array of a city before its tiles are written."""
        if city in self._cities:
            raise DatasetError(f"city {city!r} is in the dataset twice; give each a unique name")
        self._cities[city] = dict(info, n_tiles=n_tiles)
        self._arrays[city] = create_raster_array(self.tmp_dir / RASTERS / f"{city}.zarr", n_tiles, tile_px,
                                                 n_channels)

    def add_city_files(self, city: str, rasters: Path, rows: pd.DataFrame, coverage_geojson: Path,
                       info: dict[str, Any]) -> None:
        """Add a city built elsewhere: its raster array folder, its table rows and its coverage file.

        ``info`` is the city's manifest entry; ``info["coverage"]["file"]`` is where
        the coverage file goes, relative to the dataset (``coverage/CITY.geojson``).

        The files are hard-linked where possible (copied otherwise), so the
        sources stay as they were until the dataset is committed.
        """
        if city in self._cities:
            raise DatasetError(f"city {city!r} is in the dataset twice; give each a unique name")
        shutil.copytree(rasters, self.tmp_dir / RASTERS / f"{city}.zarr", copy_function=link_or_copy)
        (self.tmp_dir / COVERAGE).mkdir(exist_ok=True)
        link_or_copy(str(coverage_geojson), str(self.tmp_dir / info["coverage"]["file"]))
        self._cities[city] = dict(info, n_tiles=len(rows))
        self._frames.append(rows)

    def write_tiles(self, city: str, indices: np.ndarray, tiles: np.ndarray) -> None:
        array = self._arrays[city]
        for i, tile in zip(indices, tiles):
            array[int(i)] = tile

    def add_rows(self, frame: pd.DataFrame) -> None:
        self._frames.append(frame)

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Write the table and manifest, then move the dataset into place atomically."""
        table = pd.concat(self._frames, ignore_index=True)
        table.to_parquet(self.tmp_dir / TILES, index=False)
        manifest = dict(manifest, format_version=FORMAT_VERSION, attribution=ATTRIBUTION)
        manifest["cities"] = self._cities
        manifest["n_tiles"] = len(table)
        # The manifest is written last: a directory without one is not a dataset.
        write_text_atomic(self.tmp_dir / MANIFEST, json.dumps(manifest, indent=2, default=str))
        # Checked again: someone (or another build) may have written to out_dir while this one ran.
        check_out_dir(self.out_dir, self.overwrite)
        return self._partial.publish()


def is_dataset_dir(path: str | Path) -> bool:
    """Whether ``path`` is recognisably a dataset: its manifest has a ``format_version`` this urbangen wrote."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format_version") in (FORMAT_VERSION, *OLDER_FORMAT_VERSIONS)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Raise unless ``out_dir`` is missing, empty, or a dataset that ``overwrite`` may replace."""
    check_replaceable(out_dir, is_dataset_dir,
                      f"an urbangen dataset ({MANIFEST} with format_version {FORMAT_VERSION})")
    if not overwrite and os.path.lexists(out_dir) and not is_empty_dir(out_dir):
        raise DatasetError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")


@dataclass
class TileDataset:
    """A dataset opened for reading.

    Examples
    --------
    >>> ds = open_dataset("data/helsinki")          # doctest: +SKIP
    >>> ds.read_tile(0).shape                        # doctest: +SKIP
    (256, 256, 6)
    >>> ds.tiles[["city", "building_coverage"]]      # doctest: +SKIP
    """

    path: Path
    manifest: dict[str, Any]
    tiles: pd.DataFrame

    @property
    def channels(self) -> list[str]:
        return [c["name"] for c in self.manifest["channels"]]

    @property
    def parameter_names(self) -> list[str]:
        return [p["name"] for p in self.manifest["parameters"]]

    @property
    def meters_per_pixel(self) -> float:
        return float(self.manifest["tiling"]["meters_per_pixel"])

    @property
    def tile_px(self) -> int:
        return int(self.manifest["tiling"]["tile_px"])

    def __len__(self) -> int:
        return len(self.tiles)

    @cached_property
    def _arrays(self) -> dict[str, Any]:
        import zarr

        return {
            city: zarr.open_array(str(self.path / RASTERS / f"{city}.zarr"), mode="r")
            for city in self.manifest["cities"]
        }

    def read_tile(self, i: int) -> np.ndarray:
        """Tile ``i`` (row ``i`` of :attr:`tiles`) as a uint8 (H, W, C) array of 0/1 masks."""
        row = self.tiles.iloc[int(i)]
        return np.asarray(self._arrays[row["city"]][int(row["raster_index"])])

    def read_tiles(self, indices) -> np.ndarray:
        return np.stack([self.read_tile(i) for i in indices])

    def parameters(self, indices=None) -> np.ndarray:
        """(n, P) float64 parameter matrix in :attr:`parameter_names` order."""
        frame = self.tiles if indices is None else self.tiles.iloc[np.asarray(indices)]
        return frame[self.parameter_names].to_numpy(dtype=np.float64)

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes re-open the zarr arrays themselves.
        state = dict(self.__dict__)
        state.pop("_arrays", None)
        return state


def open_dataset(path: str | Path) -> TileDataset:
    """Open a dataset directory written by ``urbangen data build``.

    Raises
    ------
    DatasetError
        If the directory is missing, incomplete (no manifest) or of another format version.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise DatasetError(f"{path}: no such dataset directory")
    if not manifest_path.is_file():
        raise DatasetError(f"{path}: no {MANIFEST}; not a dataset, or its build did not finish")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: dataset format {manifest.get('format_version')}, this urbangen reads {FORMAT_VERSION}"
            + ("; rebuild it with `urbangen data build ... --overwrite`"
               if manifest.get("format_version") in OLDER_FORMAT_VERSIONS else "")
        )
    tiles = pd.read_parquet(path / TILES)
    return TileDataset(path=path, manifest=manifest, tiles=tiles)
