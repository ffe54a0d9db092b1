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
    candidates = candidate_tiles(coverage, config, features.source)
    keep = has_streets(features, candidates.bounds, config)
    return candidates.keep(keep, str(features.crs), features.source, config)


@dataclass(frozen=True)
class CandidateTiles:
    """The tiles of the grid that lie enough inside the coverage, before the street test.

    ``outside`` counts the grid's tiles left out for lying outside.
    """

    bounds: np.ndarray  # (n, 4), north to south, then west to east
    share: np.ndarray  # (n,) share inside the coverage
    outside: int

    def keep(self, keep: np.ndarray, crs: str, source: str, config: TilingConfig) -> TileGrid:
        """The grid of the candidates that passed the street test (raises NoTilesError if none did)."""
        dropped = {"outside_coverage": self.outside, "too_few_streets": int((~keep).sum())}
        if not keep.any():
            raise NoTilesError(
                f"{source}: no tile is both {config.min_coverage:.0%} inside the mapped area and holds "
                f"{config.min_street_km} km of streets ({dropped['outside_coverage']} outside, "
                f"{dropped['too_few_streets']} with too few streets)"
            )
        return TileGrid(bounds=self.bounds[keep], crs=crs, coverage=self.share[keep], dropped=dropped)


def candidate_tiles(coverage: shapely.Geometry, config: TilingConfig, source: str) -> CandidateTiles:
    """The grid's tiles at least ``config.min_coverage`` inside ``coverage`` (projected metres).

    Tiles sit on multiples of the stride, so the candidates depend on the
    coverage alone, not on which features were read.
    """
    size, step = config.tile_m, config.stride_m
    if coverage.is_empty:
        raise NoTilesError(f"{source}: no mapped area found (the coverage is empty); "
                           "give the area with --clip W S E N or --boundary FILE")
    west, south, east, north = coverage.bounds
    xs = np.arange(math.floor(west / step) * step, east - size + 1e-6, step)
    ys = np.arange(math.floor(south / step) * step, north - size + 1e-6, step)
    if len(xs) == 0 or len(ys) == 0:
        raise NoTilesError(
            f"{source}: the mapped area ({(east - west) / 1000:.2f} x "
            f"{(north - south) / 1000:.2f} km) is smaller than one {size:.0f} m tile; "
            "use a larger area or smaller tiles (tile_px, meters_per_pixel)."
        )
    # North to south, then west to east: the reading order of a map.
    gx, gy = np.meshgrid(xs, ys[::-1])
    x0, y0 = gx.ravel(), gy.ravel()
    bounds = np.stack([x0, y0, x0 + size, y0 + size], axis=1)
    share = inside_share(coverage, shapely.box(*bounds.T))
    covered = share >= config.min_coverage
    return CandidateTiles(bounds=bounds[covered], share=share[covered], outside=int((~covered).sum()))


def has_streets(features: OSMFeatures, bounds: np.ndarray, config: TilingConfig) -> np.ndarray:
    """Whether each tile holds at least ``config.min_street_km`` of the features' streets."""
    boxes = shapely.box(*bounds.T)
    lines = features.streets.geometry.values
    tree = shapely.STRtree(lines)
    tile_idx, line_idx = tree.query(boxes, predicate="intersects")
    order = np.lexsort((line_idx, tile_idx))  # summed in the features' order, as the parameters are
    tile_idx, line_idx = tile_idx[order], line_idx[order]
    clipped = shapely.length(shapely.intersection(lines[line_idx], boxes[tile_idx]))
    street_km = np.bincount(tile_idx, weights=clipped, minlength=len(bounds)) / 1000.0
    return street_km >= config.min_street_km
