"""Many-city builds on Dask: the same dataset as a serial build, failures kept apart, reruns that resume."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
import yaml
from conftest import HOUSTON_GRAPHML, KENNESAW, LYNGBY

from data_pipeline.build import CitySpec, build_dataset
from data_pipeline.city_tasks import CityParts
from data_pipeline.config import TilingConfig
from data_pipeline.errors import CityBuildError, CorruptOSMFileError

AUSTIN_CAMPUS = "austin/austin_ut_campus_osm_bbox.osm.xml.gz"
BALTIMORE = "baltimore/baltimore.osm.pbf"
SMALL = TilingConfig(meters_per_pixel=4.0, tile_px=64, region_m=1024)


@pytest.fixture(scope="module")
def three_cities(osm_path) -> list[CitySpec]:
    """Three real extracts of three formats' worth of work: Overpass XML with buildings, and osmnx GraphML."""
    return [CitySpec("austin_campus", osm_file=str(osm_path(AUSTIN_CAMPUS)), group="car_centric"),
            CitySpec("kennesaw", osm_file=str(osm_path(KENNESAW)), group="car_centric"),
            CitySpec("houston", osm_file=str(osm_path(HOUSTON_GRAPHML)), group="car_centric")]


def _differing_files(left: Path, right: Path) -> list[str]:
    """Files that are missing on one side or differ in a byte (filecmp with shallow=False)."""
    compared = filecmp.dircmp(left, right)
    bad = [str(left / n) for n in compared.left_only + compared.right_only]
    _, mismatch, errors = filecmp.cmpfiles(left, right, compared.common_files, shallow=False)
    bad += [str(left / n) for n in mismatch + errors]
    for name in compared.common_dirs:
        bad += _differing_files(left / name, right / name)
    return bad


def test_a_dask_build_writes_the_serial_build_byte_for_byte(three_cities, tmp_path):
    from distributed import LocalCluster

    serial = build_dataset(three_cities, tmp_path / "serial", SMALL)
    # Through a scheduler's address, as `--scheduler tcp://HOST:8786` sends the tasks to a real cluster.
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        results = []
        dask = build_dataset(three_cities, tmp_path / "dask", SMALL, scheduler=cluster.scheduler_address,
                             results=results)

    assert _differing_files(serial.path / "rasters", dask.path / "rasters") == []
    assert _differing_files(serial.path / "coverage", dask.path / "coverage") == []
    pd.testing.assert_frame_equal(serial.tiles, dask.tiles)
    assert serial.manifest["cities"] == dask.manifest["cities"]
    assert list(dask.manifest["cities"]) == ["austin_campus", "kennesaw", "houston"]  # the config's order
    assert sorted(r.city for r in results) == ["austin_campus", "houston", "kennesaw"]
    assert len({r.host for r in results}) == 2  # both workers took a city
    assert all(r.peak_rss_mb > 0 for r in results)
    assert not CityParts(tmp_path / "dask").path.exists()  # a complete build leaves no parts behind


def test_local_workers_forked_from_a_fork_server_write_the_serial_build(three_cities, tmp_path):
    """`urbangen data build` with a config starts the local cluster's fork server before its own imports,
    the cluster forks its workers from it, and they write the serial build's dataset, byte for byte."""
    cities = [three_cities[0], three_cities[2]]
    config = tmp_path / "cities.yaml"
    config.write_text(yaml.safe_dump({
        "tiling": {"meters_per_pixel": SMALL.meters_per_pixel, "tile_px": SMALL.tile_px, "region_m": SMALL.region_m},
        "cities": [{"name": c.name, "osm_file": c.osm_file, "group": c.group} for c in cities]}))
    script = textwrap.dedent("""
        import sys
        import data_pipeline.workers as workers
        start, when = workers.start_fork_server, []
        def recorded():
            when.append("geopandas" in sys.modules)
            start()
        workers.start_fork_server = recorded
        from urbangen.cli import main
        sys.argv = ["urbangen", "data", "build", "--config", sys.argv[1], "--out", sys.argv[2], "--workers", "2"]
        try:
            main()
        except SystemExit as exit:
            assert not exit.code, exit.code
        from data_pipeline.city_tasks import _start_method
        print(_start_method(), when)
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    run = subprocess.run([sys.executable, "-c", script, str(config), str(tmp_path / "forked")], capture_output=True,
                         text=True, timeout=600, env={**env, "URBANGEN_NO_PROGRESS": "1"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "forkserver [False]"  # started once, before the pipeline's imports

    serial = build_dataset(cities, tmp_path / "serial", SMALL)
    assert _differing_files(serial.path / "rasters", tmp_path / "forked" / "rasters") == []
    pd.testing.assert_frame_equal(serial.tiles, pd.read_parquet(tmp_path / "forked" / "tiles.parquet"))


def test_the_fork_server_finds_modules_and_sets_the_environment_as_dask_would(tmp_path):
    """The server imports this process's pipeline, not one in the directory it starts in; its workers get
    one thread per numerical library and Dask's hash seed where this process set none, and this process's
    own environment stays as it was."""
    impostor = tmp_path / "elsewhere" / "data_pipeline"
    impostor.mkdir(parents=True)
    marker = tmp_path / "impostor_imported"
    (impostor / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    script = textwrap.dedent("""
        import multiprocessing, os, sys
        from data_pipeline.workers import WORKER_ENVIRON, start_fork_server
        os.chdir(sys.argv[1])
        start_fork_server()
        with multiprocessing.get_context("forkserver").Pool(1) as pool:
            child = [pool.apply(os.getenv, (name,)) for name in WORKER_ENVIRON]
        print(*child, os.environ.get("OMP_NUM_THREADS"), os.environ.get("MKL_NUM_THREADS"),
              os.environ.get("PYTHONSAFEPATH"))
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                            "PYTHONHASHSEED", "PYTHONSAFEPATH")}
    run = subprocess.run([sys.executable, "-c", script, str(impostor.parent)], capture_output=True, text=True,
                         timeout=300, env={**env, "OMP_NUM_THREADS": "3"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["3", "1", "1", "6640", "3", "None", "None"]
    assert not marker.exists()


def test_local_workers_are_spawned_unless_the_fork_server_was_started_or_dask_names_a_method(monkeypatch):
    import dask

    import data_pipeline.city_tasks as city_tasks

    monkeypatch.setattr(dask.config, "paths", [])  # no config file of this machine's
    monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", raising=False)
    monkeypatch.setattr(city_tasks, "fork_server_started", lambda: False)
    assert city_tasks._start_method() == "spawn"
    monkeypatch.setattr(city_tasks, "fork_server_started", lambda: True)
    assert city_tasks._start_method() == "forkserver"
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD", "spawn")
    assert city_tasks._start_method() == "spawn"
    monkeypatch.delenv("DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD")
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        assert city_tasks._start_method() == "fork"


def test_a_failing_city_is_reported_and_the_others_kept_for_the_rerun(three_cities, tmp_path):
    broken = tmp_path / "broken.osm"
    broken.write_text("<osm version='0.6'><node id='1'")  # cut off: not readable
    cities = [three_cities[0], CitySpec("broken", osm_file=str(broken)), three_cities[2]]
    out = tmp_path / "ds"

    with pytest.raises(CityBuildError) as failed:
        build_dataset(cities, out, SMALL, scheduler="local", workers=2)
    message = str(failed.value)
    assert "1 of 3 cities failed" in message and "broken: CorruptOSMFileError" in message
    assert not out.exists()  # nothing published without --skip-failed
    parts = CityParts(out)
    kept = {p.name for p in parts.path.iterdir() if p.is_dir()}
    assert kept == {"austin_campus", "houston"}

    # Rerun with the city's source fixed: only that city is built; the others come from their parts.
    fixed = CitySpec("broken", osm_file=three_cities[1].osm_file)
    results = []
    dataset = build_dataset([cities[0], fixed, cities[2]], out, SMALL, results=results)
    assert [r.city for r in results] == ["broken"]
    assert list(dataset.manifest["cities"]) == ["austin_campus", "broken", "houston"]
    assert not parts.path.exists()
    reference = build_dataset(three_cities[:1], tmp_path / "austin_alone", SMALL)
    alone, joined = (d.path / "rasters" / "austin_campus.zarr" for d in (reference, dataset))
    assert _differing_files(alone, joined) == []  # the kept part's bytes, as a build of it alone
    pd.testing.assert_frame_equal(
        reference.tiles, dataset.tiles[dataset.tiles.city == "austin_campus"].reset_index(drop=True))


def test_a_local_cluster_starts_only_for_more_than_one_task(three_cities, tmp_path, monkeypatch):
    """One city left to build (not in blocks), or none, is built in this process: a cluster would add only its
    start-up; one city in blocks still goes to the cluster, its blocks being tasks of their own."""
    import distributed

    started = []

    class Cluster(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            started.append(kwargs["n_workers"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", Cluster)
    out = tmp_path / "ds"
    build_dataset(three_cities[:1], out, SMALL, scheduler="local", workers=1)
    build_dataset(three_cities[:1], out, SMALL, scheduler="local", workers=1, overwrite=True)
    assert started == []
    two = [three_cities[0], CitySpec("missing", osm_file=str(tmp_path / "nowhere.osm.pbf"))]
    for _ in range(2):  # the rerun has the first city's part: one city is left
        with pytest.raises(CityBuildError):
            build_dataset(two, tmp_path / "two", SMALL, scheduler="local", workers=1)
    assert started == [1]
    build_dataset(three_cities[:1], tmp_path / "blocked", SMALL, scheduler="local", workers=1, block_km=0.5)
    assert started == [1, 1]
    from data_pipeline.city import build_city_part

    parts = CityParts(tmp_path / "kept")  # two cities, both built already (a run stopped before publishing)
    parts.create()
    for city in three_cities[:2]:
        build_city_part(city, SMALL, parts.part(city.name))
    results = []
    dataset = build_dataset(three_cities[:2], tmp_path / "kept", SMALL, scheduler="local", workers=1,
                            results=results)
    assert results == [] and started == [1, 1] and list(dataset.manifest["cities"]) == ["austin_campus", "kennesaw"]


def test_skip_failed_publishes_the_rest_and_names_the_failures(three_cities, tmp_path):
    cities = [three_cities[0], CitySpec("missing", osm_file=str(tmp_path / "nowhere.osm.pbf"))]
    dataset = build_dataset(cities, tmp_path / "ds", SMALL, skip_failed=True)
    assert list(dataset.manifest["cities"]) == ["austin_campus"]
    assert "OSMFileNotFoundError" in dataset.manifest["cities_failed"]["missing"]
    assert CityParts(tmp_path / "ds").part("austin_campus").is_dir()  # kept for a rerun with the file found


def test_a_part_built_with_other_settings_is_rebuilt(three_cities, tmp_path):
    out = tmp_path / "ds"
    parts = CityParts(out)
    parts.create()
    from data_pipeline.city import build_city_part

    build_city_part(three_cities[0], TilingConfig(meters_per_pixel=4.0, tile_px=32), parts.part("austin_campus"))
    results = []
    dataset = build_dataset(three_cities[:1], out, SMALL, results=results)
    assert [r.city for r in results] == ["austin_campus"]  # rebuilt: the tiling differs
    assert dataset.tile_px == 64


def test_a_one_city_build_raises_its_own_error(tmp_path):
    bad = tmp_path / "bad.osm"
    bad.write_text("not osm")
    with pytest.raises(CorruptOSMFileError):
        build_dataset([CitySpec("bad", osm_file=str(bad))], tmp_path / "ds", SMALL)


def test_the_parts_folder_is_removed_only_when_marked(tmp_path):
    out = tmp_path / "ds"
    parts = CityParts(out)
    parts.path.mkdir()
    (parts.path / "mine.txt").write_text("not urbangen's")
    parts.remove()
    assert (parts.path / "mine.txt").read_text() == "not urbangen's"


def test_a_region_built_in_blocks_equals_the_whole_build(osm_path, tmp_path):
    """The largest shared extract (Lyngby, 6 x 6 km, coverage estimated from its ways) and a PBF with declared
    bounds (Baltimore), in blocks of at most 2 x 2 km on two Dask workers, against whole-city builds."""
    from distributed import LocalCluster

    cities = [CitySpec("lyngby", osm_file=str(osm_path(LYNGBY))),
              CitySpec("baltimore", osm_file=str(osm_path(BALTIMORE)))]
    whole = build_dataset(cities, tmp_path / "whole", SMALL)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        results = []
        blocked = build_dataset(cities, tmp_path / "blocked", SMALL, scheduler=cluster.scheduler_address,
                                block_km=2.0, results=results)

    assert {r.city: r.n_tasks > 3 for r in results} == {"lyngby": True, "baltimore": True}  # several blocks each
    assert blocked.manifest["cities"]["lyngby"]["blocks"]["block_km"] <= 2.0
    assert _differing_files(whole.path / "rasters", blocked.path / "rasters") == []
    assert _differing_files(whole.path / "coverage", blocked.path / "coverage") == []
    pd.testing.assert_frame_equal(whole.tiles, blocked.tiles, check_exact=True)  # parameters to the last bit
    for name in ("lyngby", "baltimore"):
        ours, theirs = (dict(d.manifest["cities"][name]) for d in (whole, blocked))
        for key in ("drive_network", "blocks"):  # the network summary of a blocked city covers its blocks only
            ours.pop(key, None)
            theirs.pop(key, None)
        assert ours == theirs
    assert all(np.isfinite(r.own_peak_mb) for r in results)  # memory is measured per task (bench_scale.py)


def test_chains_found_from_node_ids_hold_every_simplified_edge_near_an_area(osm_path):
    """A block's read box is grown by chains of ways (node ids alone) before osmnx's simplified graph is built
    once, from the ways of the chains that meet its tiles and margin; the box is exact only if every simplified
    edge near the block's tiles lies along such a chain, and the graph only if those ways give the same edges
    and intersections there. Checked against osmnx's own simplification of Lyngby's whole drive network, around
    four 1 km areas spread over it."""
    from dataclasses import replace

    from data_pipeline.blocks import _Chains
    from data_pipeline.grid import utm_crs
    from data_pipeline.parameters import drive_graph
    from data_pipeline.sources import read_osm_file
    from data_pipeline.street_graph import intersection_clusters

    lonlat = read_osm_file(osm_path(LYNGBY))
    centre = lonlat.streets.geometry.union_all().centroid
    features = lonlat.to_crs(utm_crs(centre.x, centre.y))
    graph = drive_graph(features)
    chains = _Chains.of(features.streets)
    ends = np.stack([graph.node_xy[graph.u], graph.node_xy[graph.v]], axis=1)  # (edges, 2, xy)
    x0, y0, x1, y1 = features.streets.total_bounds

    def inside(xy, box):
        return (xy[..., 0] >= box[0]) & (xy[..., 0] <= box[2]) & (xy[..., 1] >= box[1]) & (xy[..., 1] <= box[3])

    def near_edges(g, box):  # each edge near the box by its two ends, to a millimetre, either way round
        e = np.round(np.stack([g.node_xy[g.u], g.node_xy[g.v]], axis=1), 3)
        e = e[inside(e, box).any(axis=1) | inside(e.mean(axis=1), box)]
        return sorted({tuple(sorted(map(tuple, pair))) for pair in e})

    def nodes_in(g, box):
        here = inside(g.node_xy, box)
        return sorted(zip(*np.round(g.node_xy[here], 3).T, g.street_count[here]))

    def centres_in(g, box):
        c = intersection_clusters(g, 10.0)
        return sorted(map(tuple, np.round(c[inside(c, box)], 3)))

    for cx, cy in graph.node_xy[np.argsort(graph.node_xy[:, 0])[[len(graph.node_xy) * k // 5 for k in range(1, 5)]]]:
        area = (cx - 500, cy - 500, cx + 500, cy + 500)
        near = inside(ends, area).any(axis=1) | inside(ends.mean(axis=1), area)
        reach = chains.reach(area)
        assert near.sum() > 20 and reach is not None
        # (to a micrometre: the graph's nodes go back to lon/lat and are projected again)
        assert inside(ends[near], (reach[0] - 1e-6, reach[1] - 1e-6, reach[2] + 1e-6, reach[3] + 1e-6)).all()
        # and the reach is the area's neighbourhood, not the extract
        assert (reach[2] - reach[0]) * (reach[3] - reach[1]) < 0.5 * (x1 - x0) * (y1 - y0)

        ways = chains.graph_streets(features.streets, area, features.crs)
        drive = features.streets[features.streets["drive"]]
        assert shapely.get_num_coordinates(ways.geometry.values).sum() < \
            0.5 * shapely.get_num_coordinates(drive.geometry.values).sum()
        part = drive_graph(replace(features, streets=ways))
        assert near_edges(part, area) == near_edges(graph, area)
        assert nodes_in(part, area) == nodes_in(graph, area)  # and street counts, as the whole network has them
        inner = (area[0] + 100, area[1] + 100, area[2] - 100, area[3] - 100)
        assert centres_in(part, inner) == centres_in(graph, inner)


def test_an_intersection_cluster_reaching_past_the_graph_margin_sends_a_block_to_every_way_read():
    """A block's graph covers its tiles and GRAPH_MARGIN_M around them; a cluster of intersections (chained
    within two tolerances) reaching the edge of that box, and spreading over the tiles or around them, may lack
    nodes there, so the block builds its graph from every way read instead."""
    from data_pipeline.blocks import _cluster_leaves
    from data_pipeline.street_graph import StreetGraph

    tiles, near = (0.0, 0.0, 100.0, 100.0), (-128.0, -128.0, 228.0, 228.0)

    def clusters(*runs):  # intersection nodes (three streets each) along straight runs, 15 m apart
        xy = np.concatenate([np.linspace(a, b, int(np.ceil(np.hypot(*np.subtract(b, a)) / 15.0)) + 1)
                             for a, b in runs])
        nothing = np.zeros(0, dtype=np.int64)
        return StreetGraph(xy, xy, np.full(len(xy), 3), nothing, nothing)

    assert not _cluster_leaves(clusters(((40, 50), (60, 50))), 10.0, tiles, near)  # well inside
    assert _cluster_leaves(clusters(((90, 50), (220, 50))), 10.0, tiles, near)  # from the tiles to the edge
    assert not _cluster_leaves(clusters(((150, 200), (225, 200))), 10.0, tiles, near)  # at the edge, far away
    # An L around the tiles' corner, no node within two tolerances of them: its centre may still fall inside.
    assert _cluster_leaves(clusters(((50, 125), (125, 125)), ((125, 125), (125, -125))), 10.0, tiles, near)


def test_a_task_leaves_older_objects_out_of_cycle_collections_and_gives_them_back(osm_path, monkeypatch, tmp_path):
    """Each task of a build (a city, a plan, a block, a join) freezes the objects alive before it (gc.freeze), so
    that the full collections its own objects set off do not walk the imported modules; on exit they are
    collectable again, a cycle made inside is still collected, and a caller's own freeze is left alone."""
    import gc
    import weakref

    from data_pipeline import blocks
    from data_pipeline import city as city_module
    from data_pipeline.city import build_city_part, older_objects_frozen

    assert gc.get_freeze_count() == 0
    seen = []
    for module in (city_module, blocks):
        monkeypatch.setattr(module, "drive_graph", lambda features, graph=module.drive_graph:
                            seen.append(gc.get_freeze_count()) or graph(features))
    campus = CitySpec("campus", osm_file=str(osm_path(AUSTIN_CAMPUS)))
    build_city_part(campus, SMALL, tmp_path / "part")
    build_dataset([campus], tmp_path / "blocked", SMALL, block_km=0.5)
    assert len(seen) > 2 and min(seen) > 10_000  # the whole city's graph and each block's; the modules at least
    assert gc.get_freeze_count() == 0

    class Node:
        pass

    with older_objects_frozen():
        a, b = Node(), Node()
        a.other, b.other = b, a
        alive = weakref.ref(a)
        del a, b
        gc.collect()
        assert alive() is None

    gc.freeze()
    try:
        frozen = gc.get_freeze_count()  # (frozen objects freed meanwhile leave the count: it may fall a little)
        with older_objects_frozen():
            assert 0.9 * frozen < gc.get_freeze_count() <= frozen
        assert 0.9 * frozen < gc.get_freeze_count() <= frozen  # not unfrozen on exit
    finally:
        gc.unfreeze()


def test_a_plans_blocks_are_squares_of_whole_tiles_from_the_candidates_corner(osm_path, tmp_path):
    """Blocks are at most ``block_km`` a side and hold whole tiles, on a grid that starts at the candidate tiles'
    corner rather than the CRS's origin: Lyngby's 6.7 x 5.9 km of tiles at 2 km fall into fewer blocks so."""
    from data_pipeline.blocks import plan_city

    plan = plan_city(CitySpec("lyngby", osm_file=str(osm_path(LYNGBY))), SMALL, tmp_path / "plan", block_km=2.0)
    bounds = plan.candidates.bounds
    assert plan.block_m <= 2000.0 and plan.block_m % SMALL.stride_m == 0
    assert plan.block_origin == tuple(bounds[:, :2].min(axis=0))
    assert sorted(np.concatenate(plan.blocks).tolist()) == list(range(len(bounds)))  # each tile in one block
    for idx, key, area in zip(plan.blocks, plan.block_keys, plan.tile_areas):
        corner = np.asarray(plan.block_origin) + np.asarray(key) * plan.block_m
        assert (bounds[idx, :2] >= corner).all() and (bounds[idx, :2] < corner + plan.block_m).all()
        assert area[2] - area[0] <= plan.block_m + SMALL.tile_m and area[3] - area[1] <= plan.block_m + SMALL.tile_m
    from_crs_origin = len(np.unique(np.floor(bounds[:, :2] / plan.block_m), axis=0))
    assert len(plan.blocks) < from_crs_origin


def test_a_blocks_streets_read_ahead_equal_a_scan_of_the_store_for_each_box(osm_path, tmp_path, monkeypatch):
    """A block reads its streets once for a box READ_AHEAD_M larger than asked and serves the box's growths
    from the rows held: the same rows, in the same order, as a scan of the plan's stored file for each box."""
    import geopandas as gpd

    from data_pipeline import blocks

    plan = blocks.plan_city(CitySpec("kennesaw", osm_file=str(osm_path(KENNESAW))), SMALL, tmp_path / "plan",
                            block_km=1.0)
    folder = Path(plan.chunks_dir)

    def lonlat_box(box):
        return tuple(gpd.GeoSeries([shapely.box(*box)], crs=plan.crs).to_crs(4326).total_bounds)

    scans = []
    monkeypatch.setattr(blocks, "_scan", lambda *a, scan=blocks._scan: scans.append(a) or scan(*a))
    around = blocks._StreetsAround(folder, lonlat_box)
    x0, y0, x1, y1 = plan.tile_areas[len(plan.tile_areas) // 2]
    grown = [200.0, 500.0, 900.0, 1100.0, 1500.0]  # the last two beyond the read-ahead: read again
    for g in grown:
        box = (x0 - g, y0 - g, x1 + g, y1 + g)
        held = around.read(box)
        n_scans = len(scans)
        scanned = blocks._read_stored(folder, "streets", lonlat_box(box))
        scans[n_scans:] = []
        assert held is not None and len(held) > 0
        pd.testing.assert_frame_equal(held.reset_index(drop=True), scanned.reset_index(drop=True), check_exact=True)
    assert len(scans) == 2 < len(grown)

