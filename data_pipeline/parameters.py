"""Per-tile urban-form parameters, measured on the clipped vector geometry.

Everything here works on projected (metre) coordinates and never looks at
pixels, so the parameters are independent of the raster resolution.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import shapely

from data_pipeline.config import TilingConfig
from data_pipeline.errors import InvalidValueError
from data_pipeline.features import OSMFeatures
from data_pipeline.street_graph import (
    StreetGraph,
    build_street_graph,
    intersection_clusters,
    orientation_entropy,
    street_graph_of,
)

#: name -> (unit, description). The order is the column order of tiles.parquet.
PARAMETERS: dict[str, tuple[str, str]] = {
    "building_coverage": ("fraction", "building footprint area in the tile / tile area (overlaps counted once)"),
    "buildings_per_ha": ("1/ha", "buildings whose representative point lies in the tile, per hectare"),
    "mean_footprint_m2": ("m2", "mean full footprint area of those buildings (0 when there are none)"),
    "intersection_density_per_km2": ("1/km2", "osmnx drive-network intersections per km2: simplified-graph nodes with "
                                     ">= 3 streets, consolidated within 10 m (osmnx consolidate_intersections)"),
    "walk_network_density_km_per_km2": ("km/km2", "length of the ways in osmnx's walk network"),
    "major_road_density_km_per_km2": ("km/km2", "length of motorway, trunk, primary, secondary and links"),
    "minor_road_density_km_per_km2": ("km/km2", "length of tertiary, residential, unclassified, living_street, road"),
    "service_road_density_km_per_km2": ("km/km2", "length of highway=service (driveways, parking aisles, alleys), "
                                        "which osmnx's drive network leaves out"),
    "cycle_foot_density_km_per_km2": ("km/km2", "length of cycle/foot ways plus streets with a cycle track or lane"),
    "cycle_foot_share": ("fraction", "cycle/foot length (as above) / length of major, minor and cycle/foot ways "
                         "(service roads, which no channel draws, left out)"),
    "major_road_share": ("fraction", "major road length / the same"),
    "orientation_entropy": ("nats", "osmnx orientation entropy (36 bins) of osmnx drive-network edges whose midpoint "
                            "is in the tile"),
    "dead_end_share": ("fraction", "osmnx drive-network nodes in the tile with one street / all its nodes"),
    "open_space_share": ("fraction", "open space area in the tile / tile area"),
    "water_share": ("fraction", "water area in the tile / tile area"),
}
#: Parameters that are unknown (NaN) when a layer is missing from the source.
DEPENDS_ON_LAYER: dict[str, tuple[str, ...]] = {
    "buildings": ("building_coverage", "buildings_per_ha", "mean_footprint_m2"),
    "cycle_foot": ("cycle_foot_density_km_per_km2", "cycle_foot_share"),
    # A street-only source (an osmnx drive GraphML) holds no service roads, paths or footways.
    "all_streets": ("walk_network_density_km_per_km2", "service_road_density_km_per_km2",
                    "cycle_foot_density_km_per_km2", "cycle_foot_share", "major_road_share"),
    "open_space": ("open_space_share",),
    "water": ("water_share",),
}


def drive_graph(features: OSMFeatures) -> StreetGraph:
    """osmnx's simplified ``drive`` graph of projected features."""
    if features.drive_network is not None:  # the source is an osmnx graph already (GraphML)
        return street_graph_of(features.drive_network, features.crs)
    streets = features.streets[features.streets["drive"].to_numpy(dtype=bool)]
    lonlat = streets.to_crs("EPSG:4326").geometry.values
    return build_street_graph(lonlat, streets, features.crs, streets["nodes"])


def network_summary(graph: StreetGraph, tolerance_m: float = 10.0) -> dict[str, float | None]:
    """Whole-network statistics of a drive graph: intersections, dead-end share, orientation entropy.

    Statistics of an empty network are None (they are written to JSON, which has no NaN).
    """
    entropy = orientation_entropy(graph)
    return {
        "intersections": int(len(intersection_clusters(graph, tolerance_m))),
        "nodes": int(len(graph.node_xy)),
        "dead_end_share": float((graph.street_count == 1).mean()) if len(graph.node_xy) else None,
        "orientation_entropy": None if np.isnan(entropy) else entropy,
    }


def _pairs_in_order(tile_idx: np.ndarray, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """STRtree query pairs sorted by tile, then item: sums then run in the features' order, not the tree's.

    So a tile's figures are the same to the last bit whichever other features
    were read with it (a block of a region, or the whole region).
    """
    order = np.lexsort((item_idx, tile_idx))
    return tile_idx[order], item_idx[order]


def _clipped_union_fraction(polygons: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per box: area of the union of the polygons clipped to it, over the box area."""
    out = np.zeros(len(boxes))
    if len(polygons) == 0:
        return out
    tree = shapely.STRtree(polygons)
    tile_idx, poly_idx = _pairs_in_order(*tree.query(boxes, predicate="intersects"))
    splits = np.flatnonzero(np.diff(tile_idx)) + 1
    for tiles, polys in zip(np.split(tile_idx, splits), np.split(poly_idx, splits)):
        if len(tiles) == 0:
            continue
        t = tiles[0]
        pieces = shapely.intersection(polygons[polys], boxes[t])
        out[t] = shapely.area(shapely.union_all(pieces)) / shapely.area(boxes[t])
    return out


def _clipped_lengths(lines: np.ndarray, boxes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(n_boxes, n_weights) summed length of the lines inside each box, per weight column."""
    out = np.zeros((len(boxes), weights.shape[1]))
    if len(lines) == 0:
        return out
    tile_idx, line_idx = _pairs_in_order(*shapely.STRtree(lines).query(boxes, predicate="intersects"))
    length = shapely.length(shapely.intersection(lines[line_idx], boxes[tile_idx]))
    for j in range(weights.shape[1]):
        out[:, j] = np.bincount(tile_idx, weights=length * weights[line_idx, j], minlength=len(boxes))
    return out


def _points_in_boxes(points: np.ndarray, bounds: np.ndarray) -> list[np.ndarray]:
    """Indices of the points inside each box, half-open [x0, x1) x [y0, y1)."""
    if len(points) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in bounds]
    order = np.argsort(points[:, 0], kind="stable")  # equal x in input order: sums do not depend on the sort
    xs = points[order, 0]
    result = []
    for x0, y0, x1, y1 in bounds:
        lo, hi = np.searchsorted(xs, [x0, x1], side="left")
        cand = order[lo:hi]
        y = points[cand, 1]
        result.append(cand[(y >= y0) & (y < y1)])
    return result


def tile_parameters(
    features: OSMFeatures,
    bounds: np.ndarray,
    config: TilingConfig,
    graph: StreetGraph | None = None,
    cut_ends: np.ndarray | None = None,
) -> pd.DataFrame:
    """Measure :data:`PARAMETERS` for each tile.

    Parameters
    ----------
    features
        Projected features (metre CRS).
    bounds
        (n, 4) tile bounds ``x0, y0, x1, y1`` in the features' CRS.
    config
        Tiling settings (the intersection tolerance is used).
    graph
        The drive-network graph, if already built (see :func:`drive_graph`).
    cut_ends
        Per node of ``graph``, True where the node is no node of the network
        but the end of a street cut by the edge of the mapped ground (a raster
        layout's edge: see :func:`urbangen.measure.measure_windows`). Such ends
        are not counted in ``dead_end_share``: on a city's own graph the street
        goes on.

    Returns
    -------
    pandas.DataFrame
        One row per tile, one column per parameter. Parameters of a layer the
        source does not know (``features.layers_known``) are NaN.
    """
    if cut_ends is not None and (graph is None or len(cut_ends) != len(graph.street_count)):
        raise InvalidValueError("cut_ends marks the nodes of a given graph: pass that graph, with one entry a node")
    bounds = np.asarray(bounds, dtype=np.float64)
    boxes = shapely.box(*bounds.T)
    area_m2 = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
    area_km2 = area_m2 / 1e6
    out: dict[str, Any] = {}

    # Density.
    buildings = features.buildings.geometry.values
    out["building_coverage"] = _clipped_union_fraction(buildings, boxes)
    rep = shapely.get_coordinates(shapely.point_on_surface(buildings)) if len(buildings) else np.zeros((0, 2))
    footprint = shapely.area(buildings)
    members = _points_in_boxes(rep, bounds)
    out["buildings_per_ha"] = np.array([len(m) for m in members]) / (area_m2 / 1e4)
    out["mean_footprint_m2"] = np.array([footprint[m].mean() if len(m) else 0.0 for m in members])

    # Street lengths by class.
    streets = features.streets
    cls = streets["street_class"].to_numpy()
    service = streets["highway"].to_numpy() == "service"
    cycle = (cls == "cycle_foot") | streets["cycle_infra"].to_numpy(dtype=bool)
    walk_net = streets["walk"].to_numpy(dtype=bool)
    weights = np.stack(
        [cls == "major", (cls == "minor") & ~service, service, cls == "cycle_foot", cycle, walk_net], axis=1
    ).astype(np.float64)
    km = _clipped_lengths(streets.geometry.values, boxes, weights) / 1000.0
    major, minor, service_km, cycle_only, cycle_all, walk = km.T
    # Of the ways the layers draw: with service roads (not drawn, see data_pipeline.rasterize) in the
    # total, held-out tiles drawn and measured back read a cycle/foot share 0.09 above their own.
    total = major + minor + cycle_only
    with np.errstate(invalid="ignore", divide="ignore"):
        out["walk_network_density_km_per_km2"] = walk / area_km2
        out["major_road_density_km_per_km2"] = major / area_km2
        out["minor_road_density_km_per_km2"] = minor / area_km2
        out["service_road_density_km_per_km2"] = service_km / area_km2
        out["cycle_foot_density_km_per_km2"] = cycle_all / area_km2
        out["cycle_foot_share"] = np.where(total > 0, cycle_all / np.where(total > 0, total, 1), 0.0)
        out["major_road_share"] = np.where(total > 0, major / np.where(total > 0, total, 1), 0.0)

    # People flow and network form, on the drive graph.
    graph = drive_graph(features) if graph is None else graph
    centres = intersection_clusters(graph, config.intersection_tolerance_m)
    out["intersection_density_per_km2"] = np.array(
        [len(m) for m in _points_in_boxes(centres, bounds)]
    ) / area_km2
    mid = (graph.node_xy[graph.u] + graph.node_xy[graph.v]) / 2.0
    edges_in = _points_in_boxes(mid, bounds)
    out["orientation_entropy"] = np.array([orientation_entropy(graph, e) for e in edges_in])
    count = graph.street_count
    counted = np.ones(len(count), bool) if cut_ends is None else ~np.asarray(cut_ends, bool)
    nodes_in = [m[counted[m]] for m in _points_in_boxes(graph.node_xy, bounds)]
    out["dead_end_share"] = np.array(
        [(count[m] == 1).mean() if len(m) else 0.0 for m in nodes_in]
    )

    out["open_space_share"] = _clipped_union_fraction(features.open_space.geometry.values, boxes)
    out["water_share"] = _clipped_union_fraction(features.water.geometry.values, boxes)

    frame = pd.DataFrame({name: np.asarray(out[name], dtype=np.float64) for name in PARAMETERS})
    for layer, names in DEPENDS_ON_LAYER.items():
        if not features.layers_known.get(layer, True):
            frame.loc[:, list(names)] = np.nan
    return frame


def parameter_table(names: Iterable[str] | None = None) -> list[dict[str, str]]:
    """Name, unit and description of parameters, as written to the manifest."""
    names = list(PARAMETERS) if names is None else list(names)
    return [{"name": n, "unit": PARAMETERS[n][0], "description": PARAMETERS[n][1]} for n in names]
