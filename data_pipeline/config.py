"""Tiling settings: one frozen dataclass, recorded in every dataset's manifest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from data_pipeline import classify
from data_pipeline.errors import InvalidValueError

#: Raster channels, in their default order, with what each one draws.
CHANNELS: dict[str, str] = {
    "buildings": "building footprints (building=*, not 'no')",
    "major_roads": "motorway, trunk, primary, secondary and their links, at ROAD_WIDTH_M",
    "minor_roads": "tertiary, residential, unclassified, living_street, service, road, at ROAD_WIDTH_M",
    "cycle_foot": "cycleway, footway, path, pedestrian, steps, track, bridleway; plus streets "
    "tagged cycleway*=track|lane, drawn CYCLE_LANE_WIDTH_M wider than the street on each side",
    "open_space": "parks, gardens, playgrounds, recreation grounds, commons, squares, "
    "pedestrian areas, grass and village greens",
    "water": "natural=water, waterway=riverbank|dock, landuse=reservoir|basin",
}


@dataclass(frozen=True)
class TilingConfig:
    """How a city is cut into tiles and rasterized.

    Attributes
    ----------
    meters_per_pixel
        Ground size of one pixel in the local UTM CRS.
    tile_px
        Tile side in pixels (a tile is ``tile_px * meters_per_pixel`` metres).
    stride_px
        Step between neighbouring tiles in pixels; less than ``tile_px``
        makes overlapping tiles. None means ``tile_px`` (no overlap).
    channels
        Raster channels in order; any subset of :data:`CHANNELS`.
    min_street_km
        A tile is kept only if it holds at least this many km of streets,
        which drops tiles of forest, sea or unmapped land.
    min_coverage
        A tile is kept only when at least this share of it lies inside the
        city's coverage polygon (see :mod:`data_pipeline.coverage`).
    coverage_cell_m
        Cell side of the coverage estimated from the data when the source
        gives no bounds.
    intersection_tolerance_m
        Intersection nodes closer than twice this distance are one
        intersection (osmnx's ``consolidate_intersections`` buffer radius).
    road_width_m
        Overrides of :data:`data_pipeline.classify.ROAD_WIDTH_M` by ``highway`` value.
    block_tiles
        Tiles per side of the block rasterized at once (bounds memory use).
    region_m
        Side of the square regions that group tiles for geographic
        train/validation splits.
    """

    meters_per_pixel: float = 2.0
    tile_px: int = 256
    stride_px: int | None = None
    channels: tuple[str, ...] = tuple(CHANNELS)
    min_street_km: float = 0.25
    min_coverage: float = 0.99
    coverage_cell_m: float = 250.0
    intersection_tolerance_m: float = 10.0
    road_width_m: dict[str, float] = field(default_factory=dict)
    block_tiles: int = 8
    region_m: float = 2048.0

    def __post_init__(self) -> None:
        if self.meters_per_pixel <= 0:
            raise InvalidValueError(f"meters_per_pixel must be positive, got {self.meters_per_pixel}")
        if self.tile_px < 8:
            raise InvalidValueError(f"tile_px must be at least 8, got {self.tile_px}")
        if self.coverage_cell_m <= 0:
            raise InvalidValueError(f"coverage_cell_m must be positive, got {self.coverage_cell_m}")
        if not 0.0 < self.min_coverage <= 1.0:
            raise InvalidValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")
        if self.stride_px is not None and not 0 < self.stride_px <= self.tile_px:
            raise InvalidValueError(f"stride_px must be in (0, tile_px], got {self.stride_px}")
        unknown = set(self.channels) - set(CHANNELS)
        if unknown or not self.channels:
            raise InvalidValueError(f"unknown channels {sorted(unknown)}; choose from {list(CHANNELS)}")
        unknown_roads = set(self.road_width_m) - set(classify.ROAD_WIDTH_M)
        if unknown_roads:
            raise InvalidValueError(f"road_width_m names unknown highway values {sorted(unknown_roads)}")

    @property
    def stride(self) -> int:
        return self.stride_px or self.tile_px

    @property
    def tile_m(self) -> float:
        return self.tile_px * self.meters_per_pixel

    @property
    def stride_m(self) -> float:
        return self.stride * self.meters_per_pixel

    def road_width(self, highway: str) -> float:
        return self.road_width_m.get(highway, classify.ROAD_WIDTH_M[highway])

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TilingConfig:
        values = dict(values)
        if "channels" in values:
            values["channels"] = tuple(values["channels"])
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise InvalidValueError(f"unknown tiling settings {sorted(unknown)}")
        return cls(**values)
