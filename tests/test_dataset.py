"""The dataset contract: manifest, table, rasters, atomic writes, the Grain loader and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from data_pipeline import rasterize as rasterize_module
from data_pipeline.build import CitySpec, build_dataset, default_city
from data_pipeline.config import TilingConfig
from data_pipeline.dataset import ATTRIBUTION, open_dataset
from data_pipeline.errors import DatasetError
from data_pipeline.loader import TileSource, tile_batches
from data_pipeline.parameters import PARAMETERS
from tests.conftest import LYNGBY, OSTERBRO
from urbangen.cli import app


@pytest.fixture(scope="module")
def helsinki(tmp_path_factory):
    return build_dataset([default_city()], tmp_path_factory.mktemp("d") / "helsinki", TilingConfig(stride_px=64))


def test_manifest_and_table_follow_the_contract(helsinki):
    m = json.loads((helsinki.path / "manifest.json").read_text())
    assert m["attribution"] == ATTRIBUTION == "© OpenStreetMap contributors (ODbL)"
    assert m["tiling"]["meters_per_pixel"] == 2.0 and m["tiling"]["tile_px"] == 256
    assert [c["name"] for c in m["channels"]] == ["buildings", "major_roads", "minor_roads", "cycle_foot",
                                                  "open_space", "water"]
    assert {p["name"]: p["unit"] for p in m["parameters"]} == {k: v[0] for k, v in PARAMETERS.items()}
    city = m["cities"]["helsinki"]
    assert city["crs"] == "EPSG:32635" and city["source"] == "Helsinki.osm.pbf" and city["n_tiles"] == len(helsinki)
    table = pd.read_parquet(helsinki.path / "tiles.parquet")
    for col in ("tile_id", "city", "crs", "x0", "y0", "x1", "y1", *PARAMETERS):
        assert col in table.columns
    assert np.allclose(table.x1 - table.x0, 512) and np.allclose(table.y1 - table.y0, 512)
    assert np.allclose(table.x0 % 128, 0)  # on the stride grid
    tile = helsinki.read_tile(len(helsinki) - 1)
    assert tile.shape == (256, 256, 6) and tile.dtype == np.uint8 and set(np.unique(tile)) <= {0, 1}
    # One chunk file per tile, side by side: no folder per tile (zarr's nested default makes three).
    rasters = helsinki.path / "rasters" / "helsinki.zarr"
    assert not [p for p in rasters.iterdir() if p.is_dir()]
    assert len(list(rasters.glob("c.*.0.0.0"))) == len(helsinki)


def test_interrupted_build_leaves_no_dataset(osm_path, tmp_path, monkeypatch):
    real = rasterize_module.rasterize_tiles

    def dies_midway(*args, **kwargs):
        for k, block in enumerate(real(*args, **kwargs)):
            if k == 1:
                raise KeyboardInterrupt
            yield block

    monkeypatch.setattr("data_pipeline.city.rasterize_tiles", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        build_dataset([CitySpec("lyngby", osm_file=str(osm_path(LYNGBY)))], tmp_path / "ds",
                      TilingConfig(block_tiles=2))
    assert list(tmp_path.iterdir()) == []


def test_sigkilled_build_keeps_the_old_dataset(osm_path, tmp_path):
    out = tmp_path / "ds"
    build_dataset([CitySpec("osterbro", osm_file=str(osm_path(OSTERBRO)))], out)
    before = (out / "manifest.json").read_text()
    proc = subprocess.Popen(
        [sys.executable, "-m", "urbangen.cli", "data", "build", "--osm-file", str(osm_path(LYNGBY)),
         "--out", str(out), "--overwrite", "--stride-px", "128"],
        env=dict(os.environ, URBANGEN_NO_PROGRESS="1"),
    )
    # Killed while it writes the city's rasters (its part's partial directory): the dataset's own
    # partial directory lives only for the last, sub-second step, too short to hit reliably.
    writing = ".ds.cities/.*.partial-*/rasters.zarr/c.*"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob(writing)):
        time.sleep(0.01)
    assert list(tmp_path.glob(writing)), "the build never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "manifest.json").read_text() == before
    assert open_dataset(out).manifest["cities"].keys() == {"osterbro"}
    # The next build clears what the killed one left.
    build_dataset([default_city()], out, overwrite=True)
    assert not list(tmp_path.glob(".ds.partial-*")) and not (tmp_path / ".ds.cities").exists()


def test_open_dataset_refuses_what_is_not_a_dataset(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "half").mkdir()
    with pytest.raises(DatasetError, match="did not finish"):
        open_dataset(tmp_path / "half")


def test_loader_is_deterministic_sharded_and_augments_without_changing_content(helsinki):
    a = tile_batches(helsinki, 4, seed=3)
    b = tile_batches(helsinki, 4, seed=3)
    c = tile_batches(helsinki, 4, seed=4)
    assert all(np.array_equal(a[k]["tile"], b[k]["tile"]) for k in range(5))
    assert not all(np.array_equal(a[k]["index"], c[k]["index"]) for k in range(3))
    # Two epochs see every tile once each, in different orders.
    n = len(helsinki) // 4
    first = np.concatenate([a[k]["index"] for k in range(n)])
    second = np.concatenate([a[k]["index"] for k in range(n, 2 * n)])
    assert len(set(first)) == len(first) and not np.array_equal(first, second)
    # Augmentation only flips and rotates: per-channel pixel counts are unchanged.
    batch = a[0]
    for tile, idx in zip(batch["tile"], batch["index"]):
        assert np.array_equal(tile.sum(axis=(0, 1)), helsinki.read_tile(idx).sum(axis=(0, 1)))
    np.testing.assert_allclose(batch["params"], helsinki.parameters(batch["index"]).astype(np.float32))
    # Hosts read disjoint shards that together cover the data.
    shards = [
        set(np.concatenate([tile_batches(helsinki, 2, shard_index=h, shard_count=2, repeat=False)[k]["index"]
                            for k in range(len(helsinki) // 4)]))
        for h in (0, 1)
    ]
    assert not shards[0] & shards[1]
    assert len(shards[0] | shards[1]) >= len(helsinki) - 4


def test_a_source_held_in_memory_gives_what_zarr_holds_and_a_large_one_streams(helsinki):
    rows = np.arange(len(helsinki))[::-3]
    held = TileSource(helsinki, rows)
    all_bytes = len(rows) * helsinki.tile_px ** 2 * len(helsinki.channels)
    streamed = TileSource(helsinki, rows, in_memory_max_bytes=all_bytes - 1)
    for i in (0, len(rows) // 2, len(rows) - 1):
        from_zarr = np.asarray(helsinki._arrays["helsinki"][int(helsinki.tiles.iloc[rows[i]]["raster_index"])])
        assert np.array_equal(held[i]["tile"], from_zarr) and np.array_equal(streamed[i]["tile"], from_zarr)
        assert held[i]["index"] == streamed[i]["index"] == rows[i]
    # Just over the limit, the source reads each tile from zarr when asked.
    assert held._tiles is not None and streamed._tiles is None


def test_cli_builds_from_a_config_and_shows(osm_path, tmp_path, monkeypatch):
    monkeypatch.setenv("URBANGEN_OSM_DIR", str(osm_path(OSTERBRO).parent.parent))
    cfg = tmp_path / "cities.yaml"
    cfg.write_text(
        "tiling: {stride_px: 128}\n"
        "cities:\n"
        "  - {name: osterbro, osm_file: '${URBANGEN_OSM_DIR}/copenhagen/osterbro_osm_bbox.osm.xml.gz', "
        "group: micromobility}\n"
        "  - {name: helsinki_default, osm_file: '${URBANGEN_OSM_DIR}/helsinki/Helsinki.osm.pbf'}\n"
    )
    runner = CliRunner()
    out = tmp_path / "ds"
    result = runner.invoke(app, ["data", "build", "--config", str(cfg), "--out", str(out)])
    assert result.exit_code == 0, result.output
    ds = open_dataset(out)
    assert set(ds.tiles["city"]) == {"osterbro", "helsinki_default"}
    assert ds.manifest["tiling"]["stride_px"] == 128
    result = runner.invoke(app, ["data", "show", str(out)])
    assert result.exit_code == 0, result.output
    assert "osterbro" in result.output and (out / "mosaic.png").stat().st_size > 10_000


def test_cli_reports_bad_input_clearly(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["data", "build", "--osm-file", str(tmp_path / "none.osm"), "--out",
                                 str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "no such OSM file" in result.output
    assert not (tmp_path / "x").exists()


def test_the_city_comparison_configs_read_as_documented(osm_dir, monkeypatch, tmp_path):
    """``experiments/cities/*.yaml``: a variable path is relative to the working directory, like the variable."""
    from data_pipeline.build import read_build_file
    from tests.conftest import ROOT

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("URBANGEN_OSM_DIR", os.path.relpath(osm_dir, tmp_path))
    build = read_build_file(ROOT / "experiments/cities/offline_car_centric_vs_micromobility.yaml")
    cities, tiling, out = build.cities, build.tiling, build.out
    assert {c.name: c.group for c in cities} == {"osterbro": "micromobility", "lyngby": "micromobility",
                                                 "kennesaw": "car_centric"}
    assert all(os.path.isfile(c.osm_file) for c in cities)
    assert (tiling.meters_per_pixel, tiling.tile_px, out) == (2.0, 256, "data/car_centric_vs_micromobility")

    cities = read_build_file(ROOT / "experiments/cities/houston_vs_copenhagen.yaml").cities
    groups = {c.name: c.group for c in cities}
    assert groups["copenhagen"] == "micromobility" and groups["houston_inner_loop"] == "car_centric"
    west, south, east, north = next(c.bbox for c in cities if c.name == "houston_inner_loop")
    assert west < -95.37 < east and south < 29.76 < north  # downtown Houston (-95.37, 29.76) is inside

    monkeypatch.delenv("URBANGEN_OSM_DIR")
    with pytest.raises(ValueError, match="unset variable"):
        read_build_file(ROOT / "experiments/cities/offline_car_centric_vs_micromobility.yaml")


def test_a_wrong_build_file_names_every_bad_entry_by_its_place(tmp_path):
    from data_pipeline.build import read_build_file
    from data_pipeline.errors import InvalidValueError

    path = tmp_path / "cities.yaml"
    path.write_text("tiling: {meters_per_pixel: 4.0}\nblok_km: 3\ncities:\n"
                    "  - {name: a, osm_file: x.osm, bbox: [1, 2, 3, nope]}\n"
                    "  - {name: b, place: Somewhere, colour: red}\n")
    with pytest.raises(InvalidValueError) as raised:
        read_build_file(path)
    message = str(raised.value)
    assert "cities[0].bbox[3]" in message and "cities[1].colour" in message and "blok_km" in message

    path.write_text("block_km: 2.5\ncities: [{name: a, osm_file: x.osm}]\n")
    build = read_build_file(path)
    assert build.block_km == 2.5 and build.cities[0].osm_file == str(tmp_path / "x.osm")
    path.write_text("cities: []\n")
    with pytest.raises(InvalidValueError, match="cities"):
        read_build_file(path)
