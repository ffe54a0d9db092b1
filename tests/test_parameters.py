"""Per-tile parameters and rasters on real cities, against independent references.

References: osmnx's own XML parser and graph (street lengths, building
footprints), geopandas/shapely clipping, ``osmnx.bearing.orientation_entropy``
and ``osmnx.consolidate_intersections``.
"""

from __future__ import annotations

import geopandas as gpd
import networkx as nx
import numpy as np
import osmnx as ox
import pytest
import shapely

from data_pipeline.build import CitySpec, build_dataset
from data_pipeline.config import TilingConfig
from data_pipeline.dataset import open_dataset
from data_pipeline.grid import project_to_utm
from data_pipeline.parameters import drive_graph
from data_pipeline.sources import read_osm_file
from data_pipeline.street_graph import intersection_clusters, orientation_entropy
from tests.conftest import HELSINKI, HOUSTON_GRAPHML, KENNESAW, OSTERBRO

CONFIG = TilingConfig(stride_px=128)


@pytest.fixture(scope="session")
def cities_dataset(osm_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "cities"
    return build_dataset(
        [
            CitySpec("osterbro", osm_file=str(osm_path(OSTERBRO)), group="micromobility"),
            CitySpec("kennesaw", osm_file=str(osm_path(KENNESAW)), group="car_centric"),
            CitySpec("houston", osm_file=str(osm_path(HOUSTON_GRAPHML)), group="car_centric"),
            CitySpec("helsinki", osm_file=str(osm_path(HELSINKI))),
        ],
        out,
        CONFIG,
    )


def _city(ds, name):
    return ds.tiles[ds.tiles["city"] == name]


def _reference_buildings(path, crs) -> np.ndarray:
    gdf = ox.features_from_xml(path, tags={"building": True})
    gdf = gdf[gdf.geom_type.isin(["Polygon", "MultiPolygon"]) & (gdf["building"] != "no")]
    return gdf.to_crs(crs).geometry.values


@pytest.mark.parametrize("name, relative", [("osterbro", OSTERBRO), ("kennesaw", KENNESAW)])
def test_building_coverage_equals_shapely_clip_of_osmnx_footprints(cities_dataset, osm_path, name, relative):
    tiles = _city(cities_dataset, name)
    ref = _reference_buildings(osm_path(relative), tiles["crs"].iloc[0])
    for _, t in tiles.iterrows():
        box = shapely.box(t.x0, t.y0, t.x1, t.y1)
        clipped = gpd.GeoSeries(ref).clip(box)
        expected = shapely.union_all(clipped.values).area / box.area
        assert t.building_coverage == pytest.approx(expected, abs=0.002), t.tile_id


def test_street_length_density_equals_osmnx_edges_clipped(cities_dataset, osm_path):
    tiles = _city(cities_dataset, "osterbro")
    graph = ox.graph_from_xml(osm_path(OSTERBRO), simplify=False, retain_all=True)
    edges = ox.graph_to_gdfs(ox.convert.to_undirected(graph), nodes=False)
    edges = edges.to_crs(tiles["crs"].iloc[0])
    highway = edges["highway"].map(lambda h: h[0] if isinstance(h, list) else h)
    groups = {
        "major_road_density_km_per_km2": ["motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary", "secondary_link"],
        "minor_road_density_km_per_km2": ["tertiary", "tertiary_link", "residential", "unclassified", "living_street", "service", "road"],
    }
    checked = 0
    for column, classes in groups.items():
        lines = edges[highway.isin(classes)].geometry
        for _, t in tiles.iterrows():
            box = shapely.box(t.x0, t.y0, t.x1, t.y1)
            expected = lines.clip(box).length.sum() / 1000 / (box.area / 1e6)
            if expected > 1.0:
                assert t[column] == pytest.approx(expected, rel=0.01), (column, t.tile_id)
                checked += 1
    assert checked > 20


@pytest.mark.parametrize("relative", [OSTERBRO, KENNESAW, HOUSTON_GRAPHML])
def test_orientation_entropy_equals_osmnx(osm_path, relative):
    features = project_to_utm(read_osm_file(osm_path(relative)))
    g = drive_graph(features)
    multigraph = nx.MultiGraph(crs="EPSG:4326")
    for i, (lon, lat) in enumerate(g.node_lonlat):
        multigraph.add_node(i, x=lon, y=lat)
    for u, v, length in zip(g.u, g.v, g.length):
        multigraph.add_edge(int(u), int(v), length=float(length))
    multigraph = ox.bearing.add_edge_bearings(multigraph)
    expected = ox.bearing.orientation_entropy(multigraph, num_bins=36)
    assert orientation_entropy(g) == pytest.approx(expected, abs=1e-6)
    assert 2.0 < expected < np.log(36)


def test_intersections_equal_osmnx_consolidation(osm_path):
    features = project_to_utm(read_osm_file(osm_path(OSTERBRO)))
    g = drive_graph(features)
    ours = intersection_clusters(g, tolerance_m=10.0)
    keep = np.flatnonzero(g.street_count >= 3)
    graph = nx.MultiDiGraph(crs=features.crs)
    for i in keep:
        graph.add_node(int(i), x=float(g.node_xy[i, 0]), y=float(g.node_xy[i, 1]))
    theirs = ox.consolidate_intersections(graph, tolerance=10, rebuild_graph=False, dead_ends=True)
    # osmnx buffers with 16-segment circles, so pairs at almost exactly 20 m may differ.
    assert abs(len(ours) - len(theirs)) <= max(2, 0.005 * len(theirs))
    assert len(theirs) > 300


def test_raster_building_fraction_matches_coverage_on_every_tile(cities_dataset):
    ds = cities_dataset
    b = ds.channels.index("buildings")
    known = ds.tiles[ds.tiles["buildings_known"]]
    assert len(known) > 50
    for i in known.index:
        assert ds.read_tile(i)[..., b].mean() == pytest.approx(ds.tiles.loc[i, "building_coverage"], abs=0.02)


def test_known_building_centroid_lands_in_the_right_pixel(cities_dataset, osm_path):
    ds = cities_dataset
    tiles = _city(ds, "osterbro")
    crs = tiles["crs"].iloc[0]
    ref = gpd.GeoSeries(_reference_buildings(osm_path(OSTERBRO), crs))
    inside = (tiles.x0.min() + 50 < ref.centroid.x) & (ref.centroid.x < tiles.x1.max() - 50)
    inside &= (tiles.y0.min() + 50 < ref.centroid.y) & (ref.centroid.y < tiles.y1.max() - 50)
    # Large, compact buildings whose centroid is well inside the footprint.
    ok = ref[inside & ref.contains(ref.centroid) & (ref.area > 400)]
    ok = ok[ok.centroid.buffer(4).within(ok)]
    assert len(ok) > 5
    mpp = ds.meters_per_pixel
    b = ds.channels.index("buildings")
    for geom in ok.iloc[:10]:
        c = geom.centroid
        hit = tiles[(tiles.x0 <= c.x) & (c.x < tiles.x1) & (tiles.y0 <= c.y) & (c.y < tiles.y1)]
        assert len(hit) >= 1
        t = hit.iloc[0]
        row, col = int((t.y1 - c.y) // mpp), int((c.x - t.x0) // mpp)
        tile = ds.read_tile(hit.index[0])
        assert tile[row, col, b] == 1
    # With rows counted from the south edge (a flipped raster) most lookups miss.
    mirrored_hits = 0
    for geom in ok.iloc[:10]:
        c = geom.centroid
        hit = tiles[(tiles.x0 <= c.x) & (c.x < tiles.x1) & (tiles.y0 <= c.y) & (c.y < tiles.y1)]
        t = hit.iloc[0]
        row, col = int((c.y - t.y0) // mpp), int((c.x - t.x0) // mpp)  # flipped rows
        mirrored_hits += ds.read_tile(hit.index[0])[row, col, b]
    assert mirrored_hits < 10


def test_copenhagen_is_more_cycle_and_foot_and_more_connected_than_kennesaw(cities_dataset):
    cph, ken = _city(cities_dataset, "osterbro"), _city(cities_dataset, "kennesaw")
    assert cph["cycle_foot_share"].median() > ken["cycle_foot_share"].median() + 0.2
    assert cph["intersection_density_per_km2"].median() > 2 * ken["intersection_density_per_km2"].median()
    assert cph["building_coverage"].median() > ken["building_coverage"].median()


def test_street_only_source_flags_buildings_unknown(cities_dataset):
    ds = open_dataset(cities_dataset.path)
    houston = _city(ds, "houston")
    assert len(houston) > 20
    assert not houston["buildings_known"].any()
    assert houston["building_coverage"].isna().all()
    assert houston["intersection_density_per_km2"].notna().all()
    assert ds.manifest["cities"]["houston"]["layers_known"]["buildings"] is False
    assert _city(ds, "kennesaw")["buildings_known"].all()
