"""``urbangen quickstart`` end to end, and the README's commands being the ones CI runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _readme_setup_commands() -> list[str]:
    """The command lines of the README's first code block (the two set-up commands)."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_ci_runs_exactly_the_readme_setup_commands():
    commands = _readme_setup_commands()
    assert len(commands) == 2
    main_job, tests = commands
    assert "urbangen quickstart" in main_job and "pytest" in tests
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    # In this order: the main job, then the tests, each verbatim.
    assert main_job in ci_lines and tests in ci_lines
    assert ci_lines.index(main_job) < ci_lines.index(tests)


def test_default_cities_are_the_embedded_contrast():
    from urbangen.embedded import embedded_osm_file
    from urbangen.quickstart import quickstart_cities

    cities = quickstart_cities()
    assert [(c.name, c.group) for c in cities] == [
        ("helsinki", "micromobility"), ("osterbro", "micromobility"), ("kennesaw", "car-centric")]
    assert cities[1].osm_file == str(embedded_osm_file("osterbro"))
    assert all(Path(c.osm_file).is_file() for c in cities)  # offline: nothing to download


def test_groups_and_city_names_are_checked(tmp_path):
    from data_pipeline.errors import OSMFileNotFoundError
    from urbangen.quickstart import parse_groups, quickstart_cities

    assert parse_groups(["osterbro=micromobility", " kennesaw = car-centric "]) == {
        "osterbro": "micromobility", "kennesaw": "car-centric"}
    with pytest.raises(ValueError, match="CITY=GROUP"):
        parse_groups(["osterbro"])
    lyngby = tmp_path / "lyngby_osm_bbox.osm.xml.gz"
    lyngby.touch()
    cities = quickstart_cities([str(lyngby), f"cph-north={lyngby}"], ["Midtown, Houston, Texas, USA"],
                               {"lyngby_osm_bbox": "micromobility", "kennesaw": "suburb"})
    assert [(c.name, c.group) for c in cities] == [
        ("helsinki", "micromobility"), ("osterbro", "micromobility"), ("kennesaw", "suburb"),
        ("lyngby_osm_bbox", "micromobility"), ("cph-north", "cph-north"), ("midtown", "midtown")]
    assert cities[4].osm_file == str(lyngby.resolve())
    assert cities[5].place == "Midtown, Houston, Texas, USA"
    with pytest.raises(ValueError, match="unknown cities.*atlantis"):
        quickstart_cities([], [], {"atlantis": "x"})
    with pytest.raises(ValueError, match="both be called osterbro.*NAME=PATH"):
        quickstart_cities([f"osterbro={lyngby}"])
    with pytest.raises(OSMFileNotFoundError, match="missing.osm.pbf: no such OSM file"):
        quickstart_cities([f"mine={tmp_path / 'missing.osm.pbf'}"])  # before any city is built


def test_osm_file_values_name_their_city(tmp_path):
    from urbangen.osm_file_option import parse_osm_file

    assert parse_osm_file("cph=/data/osterbro.osm.pbf") == ("cph", Path("/data/osterbro.osm.pbf"))
    assert parse_osm_file(" østerbro = a=b.osm.pbf ") == ("østerbro", Path("a=b.osm.pbf"))
    assert parse_osm_file("/data/Kennesaw.osm.pbf") == ("kennesaw", Path("/data/Kennesaw.osm.pbf"))  # the stem
    odd = tmp_path / "x=y.osm.pbf"  # an existing file is a path, '=' or not
    odd.touch()
    assert parse_osm_file(str(odd)) == ("x_y", odd)
    assert parse_osm_file(Path("k=v.osm")) == ("k_v", Path("k=v.osm"))
    for bad, message in [("=city.osm.pbf", "name before '=' is empty"), ("cph=", "no file after '='"),
                         ("my city=c.osm", "'my city' may hold only"), ("data/c=d.osm", "'data/c' may hold only")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_osm_file(bad)


@pytest.mark.slow
def test_quickstart_runs_every_stage_on_the_embedded_cities_and_a_place_then_resumes(recorded_osterbro_place,
                                                                                    tmp_path, monkeypatch):
    """The embedded cities plus Østerbro through ``--place`` (osmnx with recorded responses)."""
    import pandas as pd
    import rasterio
    from typer.testing import CliRunner

    from data_pipeline.dataset import open_dataset
    from urbangen.checkpoints import Checkpointer
    from urbangen.cli import app

    out = tmp_path / "qs"
    # Two candidates per tile, not 16: generating took half of this test's seven minutes. CI's main job runs
    # the quickstart as the README gives it, with the shipped generator's own setting.
    # And each stitched street window drawn from 8 samples, not 32: decoding them was most of the generate
    # stage (100 of its 150 s). What the sampler chooses is tested in tests/test_proximity.py. The chosen tiles
    # kept as drawn, their latents not moved to continue the tiles before them: moving was most of what was
    # left (tests/test_proximity.py checks it too).
    monkeypatch.setattr("urbangen.generate.sampler.CANDIDATES", 8)
    monkeypatch.setattr("urbangen.generate.sampler.CONTINUE_STEPS", 0)
    args = ["quickstart", "--out", str(out), "--place", "Østerbro, Copenhagen", "--group", "østerbro=micromobility",
            "--steps", "6", "--candidates", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Start here: {out / 'report.md'}" in result.output  # says where to look

    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    ds = open_dataset(out / "data")
    counts = ds.tiles.city.value_counts().to_dict()
    assert set(counts) == {"helsinki", "osterbro", "kennesaw", "østerbro"}
    assert {c: v["tiles"] for c, v in results["data"]["cities"].items()} == counts
    assert results["data"]["cities"]["østerbro"]["group"] == "micromobility"
    assert results["data"]["cities"]["kennesaw"]["group"] == "car-centric"
    assert ds.manifest["cities"]["kennesaw"]["source"] == "kennesaw.osm.pbf"
    assert ds.manifest["cities"]["østerbro"]["source"] == "place: Østerbro, Copenhagen"
    assert ds.tile_px == 64 and ds.meters_per_pixel == 4.0

    for model in ("vae", "encoder", "pix2pix"):
        checkpointer = Checkpointer(out / "runs" / model / "checkpoints")
        assert checkpointer.latest_step() == 6 == results[f"train_{model}"]["steps"]
        checkpointer.close()
        assert results[f"train_{model}"]["train"], model

    # The layout: a georeferenced raster of the checkpoint's channels, measured against the request.
    with rasterio.open(out / "layouts" / "sample_000.tif") as tif:
        assert tif.count == len(ds.channels)
        assert (tif.width, tif.height) == (512, 256)  # 2048 x 1024 m at 4 m/px
    average = results["generate"]["average"]
    assert set(average) == {"building_coverage", "intersection_density_per_km2", "cycle_foot_share"}
    assert average["building_coverage"]["requested_mean"] == pytest.approx(0.225, abs=1e-6)
    assert average["building_coverage"]["achieved_mean"] is not None
    assert json.loads((out / "layouts" / "report.json").read_text())["candidates"] == 2
    assert "candidates: 2" in (out / "params" / "dense_core_to_low_density_edge.yaml").read_text()

    # The comparison has the pair, in every space, with probes and intervals.
    analysis = json.loads((out / "analysis" / "results.json").read_text())
    for space in ("pixels_pca", "parameters", "vae_conditional", "encoder"):
        assert list(analysis["spaces"][space]["groups"]) == ["car-centric vs micromobility"]
    # Cycling cities against car-centric sprawl: told apart in the parameters, far above the
    # shuffled-label control, with a region-permutation p-value that rejects "one distribution".
    groups = analysis["spaces"]["parameters"]["groups"]["car-centric vs micromobility"]
    assert groups["probe"]["auc"] > groups["probe_shuffled_labels"]["auc"] + 0.2
    assert groups["mmd_permutation_p"] < 0.05
    low, high = groups["frechet"]["ci95"]
    assert low <= groups["frechet"]["value"] <= high
    # The evaluation: every realism metric beside its floor and ceiling; the morphology ladder holds.
    evaluation = results["evaluate"]
    morphology = evaluation["realism"]["metrics"]["morphology"]
    assert morphology["reported"] and morphology["floor"] < morphology["ceiling"]
    for m in evaluation["realism"]["metrics"].values():
        assert m["reported"] == (m["ladder"]["real"] < m["ladder"]["blurred"] < m["ladder"]["shuffled"]
                                 < m["ladder"]["noise"])
    assert "floor (real)" in report_text(out) and "ceiling (noise)" in report_text(out)
    report = (out / "report.md").read_text()
    assert "helsinki vs østerbro" in report and "© OpenStreetMap contributors" in report
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link  # every link and figure of the report exists
    assert len(re.findall(r"!\[", report)) >= 5

    # Again with the same cities: finished stages are kept, nothing is rebuilt or retrained.
    manifest_mtime = (out / "data" / "manifest.json").stat().st_mtime_ns
    metrics = {m: (out / "runs" / m / "metrics.jsonl").read_text() for m in ("vae", "encoder", "pix2pix")}
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("finished by an earlier run") == 7
    assert (out / "data" / "manifest.json").stat().st_mtime_ns == manifest_mtime
    assert {m: (out / "runs" / m / "metrics.jsonl").read_text() for m in metrics} == metrics
    assert json.loads((out / "summary.json").read_text())["results"] == results

    # A stage whose output went missing is redone, and the rest kept (the dataset: the cheapest stage to redo,
    # 4 s where the evaluation took 50; built again from the same files, the same tiles).
    tiles = ds.tiles.copy()
    shutil.rmtree(out / "data")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert again.output.count("finished by an earlier run") == 6
    pd.testing.assert_frame_equal(open_dataset(out / "data").tiles, tiles)
    assert {m: (out / "runs" / m / "metrics.jsonl").read_text() for m in metrics} == metrics
    manifest_mtime = (out / "data" / "manifest.json").stat().st_mtime_ns

    # Other cities in the same folder: refused without --overwrite, and nothing is lost.
    refused = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--steps", "6"])
    assert refused.exit_code == 2
    assert "--overwrite" in refused.output
    assert (out / "data" / "manifest.json").stat().st_mtime_ns == manifest_mtime


def report_text(out: Path) -> str:
    return (out / "report.md").read_text()


def test_bad_input_fails_clearly_and_a_used_folder_is_protected(tmp_path):
    from typer.testing import CliRunner

    from urbangen.cli import app
    from urbangen.quickstart import _claim

    out = tmp_path / "qs"
    bad = CliRunner().invoke(app, ["quickstart", "--out", str(out), "--osm-file", str(tmp_path / "missing.osm")])
    assert bad.exit_code == 2 and "missing.osm: no such OSM file" in bad.output
    _claim(out, {"cities": ["another try"]}, overwrite=False)  # nothing finished there: free to reuse

    (out / "summary.json").write_text("{}")  # a stage finished: keep it unless told otherwise
    with pytest.raises(FileExistsError, match="--overwrite"):
        _claim(out, {"cities": ["yet another"]}, overwrite=False)
    _claim(out, {"cities": ["yet another"]}, overwrite=True)
    assert not (out / "summary.json").exists()

    mine = tmp_path / "my_thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("...")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a quickstart folder"):
            _claim(mine, {"cities": []}, overwrite=overwrite)
    assert (mine / "chapter1.tex").exists()
