"""Local metric CRS and the square tile grid laid in it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from data_pipeline.config import TilingConfig
from data_pipeline.errors import NoTilesError
from data_pipeline.features import OSMFeatures


def utm_crs(lon: float, lat: float) -> str:
    """EPSG code of the UTM zone holding a lon/lat point (WGS 84 / UTM, north or south)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def project_to_utm(features: OSMFeatures) -> OSMFeatures:
    """Project every layer to the UTM zone of the streets' centre."""
    lonlat = features.streets.to_crs("EPSG:4326")
    west, south, east, north = lonlat.total_bounds
    return features.to_crs(utm_crs((west + east) / 2.0, (south + north) / 2.0))


@dataclass(frozen=True)
class TileGrid:
    """Tile bounds in a projected CRS.

    ``bounds[i] = (x0, y0, x1, y1)``; tiles sit on multiples of the stride, so
    two builds of the same place with the same settings give the same tiles.
    """

    bounds: np.ndarray  # (n, 4) float64
    crs: str

    def __len__(self) -> int:
        return len(self.bounds)

    def boxes(self) -> np.ndarray:
        return shapely.box(*self.bounds.T)


def tiling_extent(features: OSMFeatures, config: TilingConfig) -> tuple[float, float, float, float]:
    """Box to tile: the source's declared bounds, else a quantile box of street vertices."""
    if features.extent is not None:
        return features.extent
    coords = shapely.get_coordinates(features.streets.geometry.values)
    q = config.extent_quantile
    lo = np.quantile(coords, q, axis=0)
    hi = np.quantile(coords, 1.0 - q, axis=0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def make_grid(features: OSMFeatures, config: TilingConfig) -> TileGrid:
    """Lay the tile grid over the (projected) features' extent.

    Only tiles that lie wholly inside the extent are kept, so no tile is cut
    by the edge of the data; then tiles with less than
    ``config.min_street_km`` of streets are dropped.

    Raises
    ------
    NoTilesError
        If the extent is smaller than one tile or every tile is nearly empty.
    """
    west, south, east, north = tiling_extent(features, config)
    size, step = config.tile_m, config.stride_m
    xs = np.arange(math.ceil(west / step) * step, east - size + 1e-6, step)
    ys = np.arange(math.ceil(south / step) * step, north - size + 1e-6, step)
    if len(xs) == 0 or len(ys) == 0:
        raise NoTilesError(
            f"{features.source}: the mapped extent ({(east - west) / 1000:.2f} x "
            f"{(north - south) / 1000:.2f} km) is smaller than one {size:.0f} m tile; "
            "use a larger area or smaller tiles (tile_px, meters_per_pixel)."
        )
    # North to south, then west to east: the reading order of a map.
    gx, gy = np.meshgrid(xs, ys[::-1])
    x0, y0 = gx.ravel(), gy.ravel()
    bounds = np.stack([x0, y0, x0 + size, y0 + size], axis=1)

    boxes = shapely.box(*bounds.T)
    lines = features.streets.geometry.values
    tree = shapely.STRtree(lines)
    tile_idx, line_idx = tree.query(boxes, predicate="intersects")
    clipped = shapely.length(shapely.intersection(lines[line_idx], boxes[tile_idx]))
    street_km = np.bincount(tile_idx, weights=clipped, minlength=len(bounds)) / 1000.0
    keep = street_km >= config.min_street_km
    if not keep.any():
        raise NoTilesError(
            f"{features.source}: none of {len(bounds)} tiles holds {config.min_street_km} km of streets"
        )
    return TileGrid(bounds=bounds[keep], crs=str(features.crs))
