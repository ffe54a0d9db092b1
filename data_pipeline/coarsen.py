"""A coarser dataset cut from a finer one: whole windows of its tiles, pooled to fewer metres per pixel.

The arterial stage of the shipped generator draws major roads over 1 km at
16 m/px, a scale no 256 m tile of the offline city set shows whole. Its
training windows are cut from the finer dataset's own tiles, so that they
cover only ground of the split they are taken from (the generator's training
tiles): a window is kept only where every tile under it is one of them.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_pipeline.dataset import COVERAGE, TILE_COLUMNS, DatasetWriter, TileDataset
from data_pipeline.errors import InvalidValueError


def tile_windows(tiles: pd.DataFrame, window_tiles: int) -> list[np.ndarray]:
    """Every square of ``window_tiles`` x ``window_tiles`` side-by-side tiles of ``tiles``, as row positions.

    Returns
    -------
    list of (window_tiles, window_tiles) int arrays
        Positions (``iloc``) into ``tiles``, row 0 the window's north row,
        column 0 its west column; windows of one city, at every tile offset
        (they overlap), in the order of their north-west tile.
    """
    tiles = tiles.reset_index(drop=True)
    windows = []
    for _, city in tiles.groupby("city", sort=True):
        size = float(city["x1"].iloc[0] - city["x0"].iloc[0])
        col = np.rint(city["x0"].to_numpy() / size).astype(np.int64)
        row = np.rint(-city["y1"].to_numpy() / size).astype(np.int64)  # rows grow southwards
        at = {(r, c): i for r, c, i in zip(row, col, city.index)}
        for r0, c0 in sorted(at):
            cells = [[at.get((r0 + a, c0 + b)) for b in range(window_tiles)] for a in range(window_tiles)]
            if all(i is not None for line in cells for i in line):
                windows.append(np.array(cells, dtype=np.int64))
    return windows


def max_pool(image: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, C) 0/1 masks to (H / factor, W / factor, C): a coarse pixel is set where any of its pixels is."""
    h, w, c = image.shape
    return image.reshape(h // factor, factor, w // factor, factor, c).max(axis=(1, 3))


def coarsen_dataset(source: TileDataset, out_dir: str | Path, *, tile_indices: Sequence[int], factor: int,
                    window_tiles: int, channels: Sequence[str], provenance: dict[str, Any],
                    overwrite: bool = False) -> Path:
    """Write windows of ``source``'s tiles ``tile_indices`` as a dataset at ``factor`` x its metres per pixel.

    Parameters
    ----------
    source
        The finer dataset.
    out_dir
        Where the coarse dataset goes (replaced only if it is a dataset and ``overwrite``).
    tile_indices
        Rows of ``source.tiles`` that windows may cover (a split's training tiles).
    factor
        Fine pixels per coarse pixel, along each side (max-pooled).
    window_tiles
        Fine tiles per window, along each side; the coarse tile is
        ``window_tiles * tile_px / factor`` pixels wide.
    channels
        The source channels kept.
    provenance
        Recorded in the manifest as ``derived_from``.

    Returns
    -------
    Path
        The committed dataset directory.
    """
    t = source.tile_px
    if t % factor:
        raise InvalidValueError(f"tiles of {t} px do not pool by {factor}")
    stride = int(source.manifest["tiling"].get("stride_px") or t)  # None: side by side
    if stride != t:
        raise InvalidValueError(f"{source.path}: its tiles overlap (stride {stride} px, tiles {t} px); windows are "
                                "cut from side-by-side tiles")
    unknown = [c for c in channels if c not in source.channels]
    if unknown:
        raise InvalidValueError(f"channels {unknown} are not in {source.path}; it has {source.channels}")
    positions = np.sort(np.asarray(tile_indices, dtype=np.int64))  # rows of source.tiles
    windows = [positions[w] for w in tile_windows(source.tiles.iloc[positions], window_tiles)]
    if not windows:
        raise InvalidValueError(f"no {window_tiles} x {window_tiles} window of the chosen tiles of {source.path}")
    keep = [source.channels.index(c) for c in channels]
    coarse_px = window_tiles * t // factor
    mpp = source.meters_per_pixel * factor
    region_m = 2 * window_tiles * t * source.meters_per_pixel  # split blocks of 2 x 2 windows
    manifest = {k: v for k, v in source.manifest.items() if k not in ("cities", "n_tiles", "format_version")}
    manifest["tiling"] = dict(source.manifest["tiling"], meters_per_pixel=mpp, tile_px=coarse_px, stride_px=t // factor,
                              channels=list(channels), region_m=region_m)
    manifest["channels"] = [c for c in source.manifest["channels"] if c["name"] in channels]
    manifest["derived_from"] = dict(provenance, dataset=str(source.path), factor=factor, window_tiles=window_tiles,
                                    pooling="max")
    by_city: dict[str, list[np.ndarray]] = {}
    for w in windows:
        by_city.setdefault(str(source.tiles["city"].iloc[w[0, 0]]), []).append(w)
    params = source.parameter_names
    with DatasetWriter(out_dir, overwrite=overwrite) as writer:
        for city, city_windows in sorted(by_city.items()):
            info = source.manifest["cities"][city]
            writer.add_city(city, len(city_windows), coarse_px, len(keep), info)
            (writer.tmp_dir / COVERAGE).mkdir(exist_ok=True)
            shutil.copyfile(source.path / info["coverage"]["file"], writer.tmp_dir / info["coverage"]["file"])
            # Windows at every tile offset share most of their tiles: each is read once.
            read = {int(i): source.read_tile(i)[..., keep] for i in np.unique(np.stack(city_windows))}
            rows = []
            for k, w in enumerate(city_windows):
                mosaic = np.concatenate([np.concatenate([read[int(i)] for i in line], axis=1) for line in w], axis=0)
                writer.write_tiles(city, np.array([k]), max_pool(mosaic, factor)[None])
                cells = source.tiles.iloc[w.ravel()]
                x0, y1 = float(cells["x0"].min()), float(cells["y1"].max())
                row: dict[str, Any] = {
                    "tile_id": f"{city}-w{k:05d}", "city": city, "crs": cells["crs"].iloc[0],
                    "x0": x0, "y0": float(cells["y0"].min()), "x1": float(cells["x1"].max()), "y1": y1,
                    "region": f"{city}:{int(np.floor(x0 / region_m))}:{int(np.floor(y1 / region_m))}",
                    "raster_index": k, "buildings_known": bool(cells["buildings_known"].all()),
                    "coverage": float(cells["coverage"].mean()),
                }
                # The mean of equal tiles: a density's or area share's value over the window (others, such as the
                # mean footprint, approximately). A tile that could not measure a parameter (no street: no
                # dead-end share) is left out of its mean.
                row.update({p: float(np.nanmean(cells[p])) if cells[p].notna().any() else np.nan for p in params})
                rows.append(row)
            writer.add_rows(pd.DataFrame(rows, columns=list(TILE_COLUMNS) + params))
        return writer.commit(manifest)
