"""The vector layers of one place, as read from any source.

Every source (local OSM file, osmnx download, GraphML) ends as an
:class:`OSMFeatures`, so everything downstream has one input type.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from data_pipeline import classify
from data_pipeline.errors import NoStreetsError

LAYERS = ("buildings", "cycle_foot", "open_space", "water")

#: Tag columns a tagged frame may carry (missing ones are treated as absent).
TAG_COLUMNS = (
    *classify.KEYS_READ, "area", *classify.CYCLE_ON_STREET_KEYS,
)


@dataclass(frozen=True)
class OSMFeatures:
    """Streets, buildings, open space and water of one place.

    Attributes
    ----------
    streets
        One row per street way: ``geometry`` (LineString), ``highway``,
        ``street_class`` (``major``, ``minor`` or ``cycle_foot``) and
        ``cycle_infra`` (a cycle track or lane tagged on the street).
    buildings, open_space, water
        Polygon layers as GeoSeries.
    source
        File name or query the data came from.
    timestamp
        OSM data time stamp where the source gives one, else None.
    extent
        ``(west, south, east, north)`` the source declares (file bounds or
        query box) in the layers' CRS, or None when unknown.
    layers_known
        Whether each of :data:`LAYERS` was present in the source at all.
        A street-only source has ``buildings: False``: its zero building
        pixels mean "not mapped here", not "no buildings".
    """

    streets: gpd.GeoDataFrame
    buildings: gpd.GeoSeries
    open_space: gpd.GeoSeries
    water: gpd.GeoSeries
    source: str
    timestamp: str | None = None
    extent: tuple[float, float, float, float] | None = None
    layers_known: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(LAYERS, True))

    @property
    def crs(self) -> Any:
        return self.streets.crs

    def to_crs(self, crs: Any) -> OSMFeatures:
        """Return the same features in another CRS (the extent is transformed too)."""
        extent = self.extent
        if extent is not None:
            extent = tuple(
                gpd.GeoSeries([shapely.box(*extent)], crs=self.crs).to_crs(crs).total_bounds
            )
        return replace(
            self,
            streets=self.streets.to_crs(crs),
            buildings=self.buildings.to_crs(crs),
            open_space=self.open_space.to_crs(crs),
            water=self.water.to_crs(crs),
            extent=extent,
        )


def _tag_value(value: Any) -> str | None:
    """A tag value as a string, or None when absent (NaN, None, empty list).

    osmnx stores merged tags as lists; the first value is the way's own.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[0] if len(value) else None
    return value if isinstance(value, str) else None


def _column(frame: pd.DataFrame, key: str) -> pd.Series:
    values = frame[key].to_numpy(dtype=object) if key in frame.columns else [None] * len(frame)
    return pd.Series([_tag_value(v) for v in values], index=frame.index, dtype=object)


def features_from_tagged_frame(
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    timestamp: str | None = None,
    extent: tuple[float, float, float, float] | None = None,
    layers_known: dict[str, bool] | None = None,
) -> OSMFeatures:
    """Classify a frame of OSM geometries with tag columns into :class:`OSMFeatures`.

    Parameters
    ----------
    frame
        One row per OSM way or area with a ``geometry`` column and any of
        :data:`TAG_COLUMNS` as columns (osmnx's ``features_from_*`` output
        has this shape, and so has the local-file reader's).
    source, timestamp, extent, layers_known
        Passed through to :class:`OSMFeatures`.

    Raises
    ------
    NoStreetsError
        If no street of a class the pipeline uses is present.
    """
    crs = frame.crs
    geoms = frame.geometry.values
    gtype = shapely.get_type_id(geoms)
    is_line = np.isin(gtype, (1, 5))  # LineString, MultiLineString
    is_poly = np.isin(gtype, (3, 6))  # Polygon, MultiPolygon

    tags = pd.DataFrame({k: _column(frame, k) for k in TAG_COLUMNS})
    highway = tags["highway"]
    street_cls = pd.Series([classify.street_class(h) for h in highway], index=highway.index, dtype=object)
    street_mask = is_line & street_cls.notna().to_numpy()
    if not street_mask.any():
        raise NoStreetsError(
            f"{source}: no streets found (no highway=* way of the classes "
            f"major/minor/cycle_foot); nothing to tile."
        )
    street_tags = tags[street_mask]
    cycle_infra = np.array(
        [classify.has_cycle_infrastructure(r) for r in street_tags.to_dict("records")], dtype=bool
    )
    streets = gpd.GeoDataFrame(
        {
            "highway": highway[street_mask].to_numpy(),
            "street_class": street_cls[street_mask].to_numpy(),
            "cycle_infra": cycle_infra,
        },
        geometry=geoms[street_mask],
        crs=crs,
    ).reset_index(drop=True)

    poly_tags = tags[is_poly].to_dict("records")
    layer = np.array([classify.area_layer(t) or "" for t in poly_tags], dtype=object)
    polys = geoms[is_poly]
    polys = shapely.make_valid(polys) if len(polys) else polys

    def layer_series(name: str) -> gpd.GeoSeries:
        sel = polys[layer == name] if len(polys) else polys
        return gpd.GeoSeries(sel, crs=crs).reset_index(drop=True)

    known = dict.fromkeys(LAYERS, True) if layers_known is None else dict(layers_known)
    return OSMFeatures(
        streets=streets,
        buildings=layer_series("building"),
        open_space=layer_series("open_space"),
        water=layer_series("water"),
        source=source,
        timestamp=timestamp,
        extent=extent,
        layers_known=known,
    )
