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
from data_pipeline.street_graph import GRAPH_TAGS, filter_keys, way_filter

#: Layers a source may or may not hold. ``all_streets`` is False for a source
#: that holds only part of the street network (an osmnx ``drive`` GraphML).
LAYERS = ("buildings", "cycle_foot", "open_space", "water", "all_streets")

#: Tag columns a tagged frame may carry (missing ones are treated as absent): the keys
#: that classify layers, and those osmnx's network filters and graph read.
TAG_COLUMNS = tuple(dict.fromkeys(
    (*classify.KEYS_READ, "area", *classify.CYCLE_ON_STREET_KEYS, *filter_keys(), *GRAPH_TAGS)
))
#: Column of a tagged frame with each way's OSM node ids (as osmnx's features frames have).
NODES_COLUMN = "nodes"


@dataclass(frozen=True)
class OSMFeatures:
    """Streets, buildings, open space and water of one place.

    Attributes
    ----------
    streets
        One row per street way: ``geometry`` (LineString), ``highway``,
        ``street_class`` (``major``, ``minor``, ``cycle_foot``, or ``other``
        for a way of no drawn class that is in an osmnx network),
        ``cycle_infra`` (a cycle track or lane tagged on the street),
        ``drive`` and ``walk`` (in osmnx's ``drive`` and ``walk`` networks),
        ``oneway`` and ``junction`` (tags the graph reads) and ``nodes`` (OSM
        node ids of the vertices, None where the source has none).
    buildings, open_space, water
        Polygon layers as GeoSeries.
    source
        File name or query the data came from.
    timestamp
        OSM data time stamp where the source gives one, else None.
    extent
        ``(west, south, east, north)`` the source declares (file bounds or
        query box) in the layers' CRS, or None when unknown.
    coverage
        Where the source says its data was mapped (:class:`data_pipeline.coverage.Coverage`:
        file bounds, query box or place boundary), in the layers' CRS; None when it does not say.
    drive_network
        The osmnx-simplified lon/lat drive graph when the source is one
        (GraphML), used as osmnx made it; None when it is built from the ways.
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
    coverage: Any = None
    drive_network: Any = None

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
            coverage=None if self.coverage is None else self.coverage.to_crs(self.crs, crs),
        )


def _tag_value(value: Any) -> str | None:
    """A tag value as a string, or None when absent (NaN, None, empty list).

    osmnx stores merged tags as lists; the first value is the way's own.
    """
    if isinstance(value, (list, tuple, np.ndarray)):
        value = value[0] if len(value) else None
    return value if isinstance(value, str) else None


def _column(frame: pd.DataFrame, key: str) -> pd.Series:
    if key not in frame.columns:
        return pd.Series(None, index=frame.index, dtype=object)
    values = frame[key]
    if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # the file reader's: no lists
        return pd.Series(values.to_numpy(dtype=object, na_value=None), index=frame.index, dtype=object)
    return pd.Series([_tag_value(v) for v in values.to_numpy(dtype=object)], index=frame.index, dtype=object)


def _node_lists(frame: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """The selected rows' node id lists (osmnx features frames and the file reader have them), else None."""
    out = np.full(int(mask.sum()), None, dtype=object)
    if NODES_COLUMN in frame.columns:
        for i, nodes in enumerate(frame[NODES_COLUMN].to_numpy(dtype=object)[mask]):
            if isinstance(nodes, (list, tuple, np.ndarray)) and len(nodes):
                out[i] = np.asarray(nodes, dtype=np.int64)
    return out


def _streets(frame: gpd.GeoDataFrame, tags: pd.DataFrame, is_line: np.ndarray) -> gpd.GeoDataFrame:
    """The street rows of :attr:`OSMFeatures.streets` from a tagged frame's lines."""
    highway = tags["highway"]
    street_cls = pd.Series([classify.street_class(h) for h in highway], index=highway.index, dtype=object)
    drive, walk = way_filter("drive").mask(tags), way_filter("walk").mask(tags)
    street_mask = is_line & (street_cls.notna().to_numpy() | drive | walk)
    street_tags = tags[street_mask]
    cycle_infra = classify.cycle_infrastructure(street_tags)
    return gpd.GeoDataFrame(
        {
            "highway": highway[street_mask].to_numpy(),
            "street_class": street_cls[street_mask].fillna("other").to_numpy(),
            "cycle_infra": cycle_infra,
            "drive": drive[street_mask],
            "walk": walk[street_mask],
            **{k: street_tags[k].to_numpy() for k in GRAPH_TAGS},
            NODES_COLUMN: _node_lists(frame, street_mask),
        },
        geometry=frame.geometry.values[street_mask],
        crs=frame.crs,
    ).reset_index(drop=True)


def street_frame(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """:attr:`OSMFeatures.streets` of a frame of street lines with tag columns (``highway`` at least).

    For street networks that did not come from OSM: drawn, generated or read
    from GeoJSON. Lines of no street class and in no osmnx network are dropped.
    """
    tags = pd.DataFrame({k: _column(frame, k) for k in TAG_COLUMNS}, index=frame.index)
    is_line = np.isin(shapely.get_type_id(frame.geometry.values), (1, 5))
    return _streets(frame, tags, is_line)


def features_from_tagged_frame(
    frame: gpd.GeoDataFrame,
    *,
    source: str,
    timestamp: str | None = None,
    extent: tuple[float, float, float, float] | None = None,
    layers_known: dict[str, bool] | None = None,
    whole_source: bool = True,
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
    whole_source
        False for a part of a source (a block of a region): it need not hold
        streets, and ``layers_known`` is taken as given (a block without
        buildings says nothing about the source's buildings).

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
    streets = _streets(frame, tags, is_line)
    if whole_source and not (streets["street_class"] != "other").any():
        raise NoStreetsError(
            f"{source}: no streets found (no highway=* way of the classes "
            f"major/minor/cycle_foot); nothing to tile."
        )

    poly_tags = tags.loc[is_poly, list(classify.AREA_KEYS)].to_dict("records")
    layer = np.array([classify.area_layer(t) or "" for t in poly_tags], dtype=object)
    polys = geoms[is_poly]
    polys = shapely.make_valid(polys) if len(polys) else polys

    def layer_series(name: str) -> gpd.GeoSeries:
        sel = polys[layer == name] if len(polys) else polys
        return gpd.GeoSeries(sel, crs=crs).reset_index(drop=True)

    known = dict.fromkeys(LAYERS, True) if layers_known is None else dict(layers_known)
    if whole_source and not (layer == "building").any():
        # Not one building in a whole extract means they were filtered out or never mapped (a streets-only
        # PBF), not that the city has none: their pixels would be "known empty", which is false.
        known["buildings"] = False
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
