"""Local metric CRS and the square tile grid laid in it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from data_pipeline.config import TilingConfig
from data_pipeline.coverage import inside_share
from data_pipeline.errors import NoTilesError
from data_pipeline.features import OSMFeatures


def utm_crs(lon: float, lat: float) -> str:
    """EPSG code of the UTM zone holding a lon/lat point (WGS 84 / UTM, north or south)."""
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def project_to_utm(features: OSMFeatures, area: shapely.Geometry | None = None) -> OSMFeatures:
    """Project every layer to the UTM zone of ``area`` (lon/lat), else of the source's coverage, else
    of the streets' median vertex.

    The median, not the centre of the bounds: a relation's members far away
    must not move the zone.
    """
    area = area if area is not None else (features.coverage.polygon if features.coverage is not None else None)
    if area is not None and not area.is_empty:
        point = area.representative_point()
        lon, lat = point.x, point.y
    else:
        lonlat = shapely.get_coordinates(features.streets.to_crs("EPSG:4326").geometry.values)
        lon, lat = np.median(lonlat, axis=0)
    return features.to_crs(utm_crs(float(lon), float(lat)))


@dataclass(frozen=True)
class TileGrid:
    """Tile bounds in a projected CRS, with what was dropped.

    ``bounds[i] = (x0, y0, x1, y1)``; tiles sit on multiples of the stride, so
    two builds of the same place with the same settings give the same tiles.
    """

    bounds: np.ndarray  # (n, 4) float64
    crs: str
    coverage: np.ndarray  # (n,) share of each tile inside the coverage polygon
    dropped: dict[str, int]

    def __len__(self) -> int:
        return len(self.bounds)

    def boxes(self) -> np.ndarray:
        return shapely.box(*self.bounds.T)


def make_grid(features: OSMFeatures, config: TilingConfig, coverage: shapely.Geometry) -> TileGrid:
    """Lay the tile grid over the coverage polygon (projected, as the features).

    A tile is kept when at least ``config.min_coverage`` of it lies inside
    the coverage and it holds ``config.min_street_km`` of streets.

    Raises
    ------
    NoTilesError
        If the coverage is smaller than one tile or no tile passes.
    """
    size, step = config.tile_m, config.stride_m
    if coverage.is_empty:
        raise NoTilesError(f"{features.source}: no mapped area found (the coverage is empty); "
                           "give the area with --clip W S E N or --boundary FILE")
    west, south, east, north = coverage.bounds
    xs = np.arange(math.floor(west / step) * step, east - size + 1e-6, step)
    ys = np.arange(math.floor(south / step) * step, north - size + 1e-6, step)
    if len(xs) == 0 or len(ys) == 0:
        raise NoTilesError(
            f"{features.source}: the mapped area ({(east - west) / 1000:.2f} x "
            f"{(north - south) / 1000:.2f} km) is smaller than one {size:.0f} m tile; "
            "use a larger area or smaller tiles (tile_px, meters_per_pixel)."
        )
    # North to south, then west to east: the reading order of a map.
    gx, gy = np.meshgrid(xs, ys[::-1])
    x0, y0 = gx.ravel(), gy.ravel()
    bounds = np.stack([x0, y0, x0 + size, y0 + size], axis=1)
    boxes = shapely.box(*bounds.T)
    share = inside_share(coverage, boxes)
    covered = share >= config.min_coverage

    lines = features.streets.geometry.values
    tree = shapely.STRtree(lines)
    tile_idx, line_idx = tree.query(boxes[covered], predicate="intersects")
    clipped = shapely.length(shapely.intersection(lines[line_idx], boxes[covered][tile_idx]))
    street_km = np.zeros(len(bounds))
    street_km[covered] = np.bincount(tile_idx, weights=clipped, minlength=int(covered.sum())) / 1000.0
    keep = covered & (street_km >= config.min_street_km)
    dropped = {"outside_coverage": int((~covered).sum()), "too_few_streets": int((covered & ~keep).sum())}
    if not keep.any():
        raise NoTilesError(
            f"{features.source}: no tile is both {config.min_coverage:.0%} inside the mapped area and holds "
            f"{config.min_street_km} km of streets ({dropped['outside_coverage']} outside, "
            f"{dropped['too_few_streets']} with too few streets)"
        )
    return TileGrid(bounds=bounds[keep], crs=str(features.crs), coverage=share[keep], dropped=dropped)
