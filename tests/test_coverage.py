"""Coverage: tiles only where the data was mapped (clip, boundary, place, file bounds, or estimated)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import osmium
import pytest
import shapely
from typer.testing import CliRunner

from data_pipeline.build import CitySpec, build_dataset
from data_pipeline.config import TilingConfig
from data_pipeline.errors import BoundaryError
from tests.conftest import HELSINKI, HOUSTON_GRAPHML, OSTERBRO

CONFIG = TilingConfig(meters_per_pixel=4.0, tile_px=64, stride_px=32)
#: A small box inside Østerbro's mapped core, in degrees.
CLIP = (12.565, 55.695, 12.585, 55.710)


def _tile_boxes(ds):
    t = ds.tiles
    return shapely.box(t.x0, t.y0, t.x1, t.y1), t["crs"].iloc[0]


def _with_far_relation(src, dst):
    """The extract plus, 90 km west (in the next UTM zone), a bus route relation over new highway ways and a
    village of 120 buildings beside it, as the members of a relation an ``osmium extract -s smart`` keeps."""
    node_id, way_id = iter(range(9_000_000_000_000, 9_000_001_000_000)), iter(range(9_000_000_000, 9_000_100_000))
    with osmium.SimpleWriter(str(dst)) as writer:
        for obj in osmium.FileProcessor(str(src)):
            writer.add(obj)

        def way(points, tags):
            refs = []
            for lon, lat in points:
                refs.append(next(node_id))
                writer.add_node(osmium.osm.mutable.Node(id=refs[-1], location=(lon, lat)))
            writer.add_way(osmium.osm.mutable.Way(id=(wid := next(way_id)), nodes=refs, tags=tags))
            return wid

        route = [way([(11.0 + 0.0075 * w + 0.0004 * i, 55.70) for i in range(20)], {"highway": "primary"})
                 for w in range(6)]
        for b in range(120):  # 20 x 20 m houses in rows north of the road
            x, y = 11.0 + 0.0004 * (b % 40), 55.7003 + 0.0004 * (b // 40)
            way([(x, y), (x + 0.0003, y), (x + 0.0003, y + 0.00018), (x, y + 0.00018), (x, y)], {"building": "house"})
        writer.add_relation(osmium.osm.mutable.Relation(
            id=next(way_id), members=[("w", w, "") for w in route], tags={"type": "route", "route": "bus"}))


def test_a_far_away_relation_adds_no_tile(osm_path, tmp_path):
    plain = build_dataset([CitySpec("osterbro", osm_file=str(osm_path(OSTERBRO)))], tmp_path / "plain", CONFIG)
    extended = tmp_path / "osterbro_with_route.osm.pbf"
    _with_far_relation(osm_path(OSTERBRO), extended)
    with_route = build_dataset([CitySpec("osterbro", osm_file=str(extended))], tmp_path / "route", CONFIG)
    cols = ["x0", "y0", "x1", "y1", "crs"]
    assert with_route.tiles[cols].equals(plain.tiles[cols])
    assert len(plain) > 100
    info = with_route.manifest["cities"]["osterbro"]
    assert info["coverage"]["source"] == "estimated"
    assert info["tiles_dropped"]["outside_coverage"] > 0
    assert (plain.tiles["coverage"] >= 0.99).all()


def test_a_boundary_polygon_in_another_crs_keeps_only_tiles_inside_it(osm_path, tmp_path):
    # A triangle, written in Web Mercator: no tile may lie more than 1% outside it.
    lonlat = shapely.Polygon([(12.555, 55.692), (12.592, 55.695), (12.575, 55.716)])
    boundary = tmp_path / "triangle.geojson"
    boundary.write_text(gpd.GeoSeries([lonlat], crs=4326).to_crs(3857).to_json())
    ds = build_dataset([CitySpec("osterbro", osm_file=str(osm_path(OSTERBRO)), boundary=str(boundary))],
                       tmp_path / "ds", CONFIG)
    boxes, crs = _tile_boxes(ds)
    triangle = gpd.GeoSeries([lonlat], crs=4326).to_crs(crs).iloc[0]
    outside = shapely.area(shapely.difference(boxes, triangle)) / shapely.area(boxes)
    assert len(ds) > 10
    assert outside.max() <= 0.01
    assert np.allclose(ds.tiles["coverage"], 1 - outside, atol=1e-3)
    assert ds.manifest["cities"]["osterbro"]["coverage"]["source"] == "boundary"
    stored = gpd.read_file(ds.path / ds.manifest["cities"]["osterbro"]["coverage"]["file"])
    assert stored.to_crs(crs).iloc[0].geometry.symmetric_difference(triangle).area < 1e-3 * triangle.area


def _assert_inside_clip(ds, city):
    boxes, crs = _tile_boxes(ds)
    box = gpd.GeoSeries([shapely.segmentize(shapely.box(*CLIP), 0.0005)], crs=4326).to_crs(crs).iloc[0]
    assert len(ds) > 0
    assert (shapely.area(shapely.difference(boxes, box)) / shapely.area(boxes)).max() <= 0.01
    assert ds.manifest["cities"][city]["coverage"]["source"] == "clip"


@pytest.mark.parametrize("relative", [OSTERBRO, HELSINKI, HOUSTON_GRAPHML], ids=["xml", "pbf", "graphml"])
def test_clip_works_on_every_file_kind(osm_path, tmp_path, relative):
    if relative == HELSINKI:  # central Helsinki, not Copenhagen
        clip = (24.940, 60.166, 24.950, 60.176)
    elif relative == HOUSTON_GRAPHML:
        clip = (-95.395, 29.715, -95.380, 29.730)
    else:
        clip = CLIP
    ds = build_dataset([CitySpec("c", osm_file=str(osm_path(relative)), clip=clip)], tmp_path / "ds", CONFIG)
    boxes, crs = _tile_boxes(ds)
    box = gpd.GeoSeries([shapely.segmentize(shapely.box(*clip), 0.0005)], crs=4326).to_crs(crs).iloc[0]
    assert len(ds) > 0
    assert (shapely.area(shapely.difference(boxes, box)) / shapely.area(boxes)).max() <= 0.01
    assert ds.manifest["cities"]["c"]["coverage"]["source"] == "clip"


def test_clip_and_boundary_work_on_downloads(recorded_osterbro_place, tmp_path):
    west, south, east, north = recorded_osterbro_place
    placed = build_dataset([CitySpec("osterbro", place="Østerbro, Copenhagen")], tmp_path / "place", CONFIG)
    assert placed.manifest["cities"]["osterbro"]["coverage"]["source"] == "place"
    clipped = build_dataset([CitySpec("osterbro", place="Østerbro, Copenhagen", clip=CLIP)], tmp_path / "clip", CONFIG)
    _assert_inside_clip(clipped, "osterbro")
    assert len(clipped) < len(placed)
    boxed = build_dataset([CitySpec("b", bbox=(west, south, east, north), clip=CLIP)], tmp_path / "bbox", CONFIG)
    _assert_inside_clip(boxed, "b")


def test_clip_and_boundary_from_the_command_line(osm_path, tmp_path):
    from urbangen.cli import app

    runner = CliRunner()
    out = tmp_path / "clip"
    result = runner.invoke(app, ["data", "build", "--osm-file", str(osm_path(OSTERBRO)), "--out", str(out),
                                 "--tile-px", "64", "--meters-per-pixel", "4", "--clip", *map(str, CLIP)])
    assert result.exit_code == 0, result.output
    assert (json.loads((out / "manifest.json").read_text())
            ["cities"]["osterbro_osm_bbox"]["coverage"]["source"] == "clip")
    missing = runner.invoke(app, ["data", "build", "--osm-file", str(osm_path(OSTERBRO)), "--out",
                                  str(tmp_path / "b"), "--boundary", str(tmp_path / "nope.geojson")])
    assert missing.exit_code == 2 and "no such boundary file" in missing.output
    assert not (tmp_path / "b").exists()


def test_bad_clip_and_boundary_are_refused_clearly(tmp_path):
    with pytest.raises(BoundaryError, match="not a lon/lat box"):
        CitySpec("c", osm_file="x.osm", clip=(13.0, 55.0, 12.0, 56.0)).user_coverage()
    points = tmp_path / "points.geojson"
    points.write_text(gpd.GeoSeries([shapely.Point(12.5, 55.7)], crs=4326).to_json())
    with pytest.raises(BoundaryError, match="no polygon"):
        CitySpec("c", osm_file="x.osm", boundary=str(points)).user_coverage()
