"""Generation from parameter files, on checkpoints trained briefly on real Østerbro and Kennesaw tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import ROOT, load_config

PARAMS_DIR = ROOT / "experiments" / "params"
TRAINED_ON = ("building_coverage", "buildings_per_ha", "intersection_density_per_km2", "cycle_foot_share",
              "major_road_share", "open_space_share", "dead_end_share")


@pytest.fixture(scope="module")
def checkpoints(small_tiles, tmp_path_factory) -> dict[str, Path]:
    """pix2pix, VAE and encoder runs, each trained briefly on real tiles (generators conditioned on TRAINED_ON)."""
    from urbangen.training.tasks import train

    runs = {}
    for model, steps in (("pix2pix", 20), ("vae", 300), ("encoder", 40)):
        workdir = tmp_path_factory.mktemp("runs") / model
        train(load_config(model, dataset=str(small_tiles), parameters=TRAINED_ON, num_steps=steps,
                          eval_every=steps, sample_every=0, log_every=steps), workdir)
        runs[model] = workdir
    return runs


def example(name: str, checkpoint: Path, tmp_path: Path, **changes) -> Path:
    """An example parameter file pointed at ``checkpoint``, written beside the test's outputs."""
    raw = yaml.safe_load((PARAMS_DIR / name).read_text())
    raw["model"] = {"checkpoint": str(checkpoint)}
    raw.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("name", sorted(p.name for p in PARAMS_DIR.glob("*.yaml")))
def test_each_example_file_runs_end_to_end(checkpoints, tmp_path, name):
    from urbangen.generate.run import generate

    params = example(name, checkpoints["pix2pix"], tmp_path, size_m=[512, 384], samples=1)
    report = generate(params, tmp_path / "out")
    requested = yaml.safe_load(params.read_text())["parameters"]
    assert set(report["average"]) == set(requested)
    assert report["size_px"] == [128, 96]  # 4 m/px from the checkpoint
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert {"report.json", "report.md", "sample_000.png"} <= set(outputs)
    if "outputs" not in yaml.safe_load(params.read_text()) or "graphml" in requested:
        assert "sample_000_streets.graphml" in outputs
    assert "© OpenStreetMap contributors" in (tmp_path / "out" / "report.md").read_text()


def test_same_seed_same_bytes(checkpoints, tmp_path):
    from urbangen import progress
    from urbangen.generate.run import generate

    params = example("dense_core_to_low_density_edge.yaml", checkpoints["pix2pix"], tmp_path, size_m=[384, 256],
                     samples=2)
    generate(params, tmp_path / "a")
    reports = []
    with progress.listening(lambda *r: reports.append(r)):  # shown as the command line shows it: same bytes
        generate(params, tmp_path / "b")
    # Progress per sample, and per stage: every pass over the layout's windows reported to its end.
    assert [(done, total) for stage, done, total in reports if stage == "samples"] == [(0, 2), (1, 2), (1, 2), (2, 2)]
    last: dict = {}
    for stage, done, total in reports:
        assert 0 <= done <= total
        last[stage] = (done, total)
    assert "buildings, major roads, minor roads, cycle foot, open space, water: tiles drawn" in last  # its channels
    assert all(done == total for done, total in last.values()), last
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(files) >= 10
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    other = yaml.safe_load(params.read_text()) | {"seed": 4}
    params.write_text(yaml.safe_dump(other))
    generate(params, tmp_path / "c")
    assert (tmp_path / "c" / "sample_000.tif").read_bytes() != (tmp_path / "a" / "sample_000.tif").read_bytes()


def test_vector_outputs_read_back_with_geopandas_osmnx_and_rasterio(checkpoints, tmp_path):
    import geopandas as gpd
    import osmnx as ox
    import rasterio

    from urbangen.generate.run import generate

    params = example("copenhagen_like_cycling_district.yaml", checkpoints["vae"], tmp_path, size_m=512, samples=1,
                     model={"checkpoint": str(checkpoints["vae"]), "type": "vae"})
    generate(params, tmp_path / "out")
    out = tmp_path / "out"
    with rasterio.open(out / "sample_000.tif") as src:
        assert src.crs.to_epsg() == 32632 and src.res == (4.0, 4.0)
        assert (src.bounds.left, src.bounds.bottom) == (724000.0, 6177000.0)
        assert list(src.descriptions) == ["buildings", "major_roads", "minor_roads", "cycle_foot", "open_space",
                                          "water"]
        bands = src.read()
    streets = gpd.read_file(out / "sample_000_streets.geojson")
    buildings = gpd.read_file(out / "sample_000_buildings.geojson")
    assert streets.crs.to_epsg() == 4326 and buildings.crs.to_epsg() == 4326
    graph = ox.load_graphml(out / "sample_000_streets.graphml")
    assert graph.number_of_edges() == 2 * len(streets)  # both directions of every centreline
    if len(streets):
        lengths = streets.to_crs(32632).length.sort_values().to_numpy()
        graph_lengths = np.sort([d["length"] for _, _, d in graph.edges(data=True)])[::2]
        np.testing.assert_allclose(graph_lengths, lengths, rtol=1e-6)
        assert set(streets["highway"]) <= {"primary", "residential", "cycleway"}
    if len(buildings):  # building polygons cover the building pixels (within simplification)
        area_px = bands[0].sum() * 16.0
        assert buildings.to_crs(32632).area.sum() == pytest.approx(area_px, rel=0.25)


BAD_FILES = [
    ({"colour": "red"}, "colour", "unknown key"),
    ({"size_m": "big"}, "size_m", "must be a number"),
    ({"size_m": [100, -5]}, "size_m[1]", "between"),
    ({"samples": 1.5}, "samples", "integer"),
    ({"candidates": 0}, "candidates", "at least 1"),
    ({"target_scatter": 1.5}, "target_scatter", "between 0 and 1, got 1.5"),
    ({"target_scatter": -0.1}, "target_scatter", "between 0 and 1, got -0.1"),
    ({"footprints": "squares"}, "footprints", "must be one of 'rectangles' or 'as_drawn', got 'squares'"),
    ({"footprints": "rectangles"}, "footprints", "only a chain of generators (a shipped model) redraws footprints"),
    ({"parameters": {"building_coverage": 1.5}}, "parameters.building_coverage", "between 0 and 1"),
    ({"parameters": {"buildings_per_hectare": 3}}, "parameters.buildings_per_hectare", "unknown parameter"),
    ({"parameters": {"water_share": 0.1}}, "parameters.water_share", "not trained on it"),
    ({"parameters": {"building_coverage": {"gradient": {"from": 0.1, "to": 0.2, "direction": "up"}}}},
     "parameters.building_coverage.gradient.direction", "must be one of"),
    ({"parameters": {"building_coverage": {"spiral": 3}}}, "parameters.building_coverage",
     "must be a number or one of"),
    ({"model": {"checkpoint": "/nonexistent/run", "type": "pix2pix"}}, "model.checkpoint", "does not exist"),
    ({"model": {"type": "pix2pix"}}, "model.checkpoint", "is required"),
    ({"model": {"checkpoint": "CKPT", "type": "vae"}}, "model.type", "holds a pix2pix model"),
    ({"model": "city-1024"}, "model", "is not a shipped model"),
    ({"outputs": ["png", "pdf"]}, "outputs[1]", "unknown format"),
    ({"outputs": []}, "outputs", "non-empty list"),
    ({"parameters": {"building_coverage": {"gradient": {"from": 0.1, "to": 0.2, "towards": "east"}}}},
     "parameters.building_coverage.gradient.towards", "unknown key; expected one of from, to, direction"),
    ({"georeference": {"origin": [1, 2, 3]}}, "georeference.origin", "a list of two numbers"),
    ({"georeference": {"crs": "EPSG:4326"}}, "georeference.crs", "projected"),
    ({"streets": "missing.geojson"}, "streets", "does not exist"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_FILES, ids=[b[1] for b in BAD_FILES])
def test_bad_parameter_files_name_the_field_and_write_nothing(checkpoints, tmp_path, change, field, message):
    from data_pipeline.errors import ParameterFileError
    from urbangen.generate.run import generate

    raw = {"model": {"checkpoint": str(checkpoints["pix2pix"]), "type": "pix2pix"}, "size_m": 256,
           "parameters": {"building_coverage": 0.2}}
    for key, value in change.items():
        if key == "model" and isinstance(value, dict) and value.get("checkpoint") == "CKPT":
            value = {**value, "checkpoint": str(checkpoints["pix2pix"])}
        raw[key] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParameterFileError) as err:
        generate(path, tmp_path / "out")
    assert err.value.field == field and message in str(err.value) and str(path) in str(err.value)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_overwrite_replaces_an_earlier_output_and_clears_a_killed_runs_partial_folder(checkpoints, tmp_path):
    from data_pipeline.atomic import OWNER_FILE
    from urbangen.generate.run import MARKER, generate

    params = example("dense_core_to_low_density_edge.yaml", checkpoints["pix2pix"], tmp_path, size_m=256, samples=1,
                     outputs=["png", "report"])
    out = tmp_path / "out"
    generate(params, out)
    assert (out / MARKER).is_file() and not (out / OWNER_FILE).exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        generate(params, out)
    killed = tmp_path / ".out.partial-killed"  # signed by a writer that no longer holds its lock
    killed.mkdir()
    (killed / OWNER_FILE).write_text("pid 999999 on elsewhere\n")
    (out / "sample_000.png").unlink()
    report = generate(params, out, overwrite=True)
    assert (out / "sample_000.png").is_file() and (out / MARKER).is_file() and len(report["samples"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_malformed_yaml_and_cli_errors(checkpoints, tmp_path):
    from typer.testing import CliRunner

    from urbangen.cli import app

    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    result = CliRunner().invoke(app, ["generate", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "not valid YAML" in result.output
    assert not (tmp_path / "out").exists()


def test_achieved_building_coverage_rises_with_the_requested(checkpoints, tmp_path):
    """On a briefly trained conditional VAE, asking for more buildings gives more buildings."""
    from urbangen.generate.request import parse_request
    from urbangen.generate.run import generate
    from urbangen.inference import load_run

    gen = load_run(checkpoints["vae"])
    achieved = []
    for coverage in (0.02, 0.15, 0.35):
        request = parse_request({"model": {"checkpoint": str(checkpoints["vae"]), "type": "vae"}, "size_m": 512,
                                 "parameters": {"building_coverage": coverage}, "samples": 3, "outputs": ["report"]})
        report = generate(request, tmp_path / f"c{coverage}", generator=gen)
        achieved.append(report["average"]["building_coverage"]["achieved_mean"])
    assert achieved[0] < achieved[1] < achieved[2], achieved


def test_evaluate_reports_every_number_beside_its_floor_and_ceiling(checkpoints, small_tiles, tmp_path):
    import json

    from typer.testing import CliRunner

    from data_pipeline.dataset import open_dataset
    from urbangen.cli import app
    from urbangen.inference import load_run
    from urbangen.splits import check_split

    def args(out: str, *extra: str) -> list[str]:
        return ["evaluate", "--checkpoint", str(checkpoints["vae"]), "--dataset", str(small_tiles), "--encoder",
                str(checkpoints["encoder"]), "--out", str(tmp_path / out), "--tiles", "24", *extra]

    result = CliRunner().invoke(app, args("eval"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    # Only the run's test regions, and every comparison at one sample size.
    data = open_dataset(small_tiles)
    meta_split = check_split(load_run(checkpoints["vae"]).spec.split, data.tiles)
    assert report["n"] == 24 == report["realism"]["n"] == report["conditioning"]["n"] == report["diversity"]["n"]
    assert report["split"]["regions"] == "test" and report["split"]["held_out_tiles"] == len(meta_split.test)
    assert len(report["split"]["tile_rows"]) == 24
    assert set(report["split"]["tile_rows"]) <= set(meta_split.test.tolist())
    for name, m in report["realism"]["metrics"].items():
        lad = m["ladder"]
        rising = lad["real"] < lad["blurred"] < lad["shuffled"] < lad["noise"]
        assert m["reported"] == rising == m["ladder_holds"], name
        assert (m["floor"], m["ceiling"]) == (lad["real"], lad["noise"])
        assert (m["generated"] is None) != m["reported"]
    assert report["realism"]["metrics"]["morphology"]["reported"]
    # Conditioning: failures counted from the stored values, never dropped; the floor beats ignoring the request.
    cond = report["conditioning"]
    requested, achieved = np.array(cond["requested"], float), np.array(cond["achieved"], float)
    for j, name in enumerate(TRAINED_ON):
        row = cond["parameters"][name]
        assert row["generated"]["failures"] == int((np.isfinite(requested[:, j]) & ~np.isfinite(achieved[:, j])).sum())
    coverage = cond["parameters"]["building_coverage"]
    assert coverage["floor"]["r2"] > 0.95 > coverage["unconditional"]["r2"]
    assert coverage["floor"]["mae"] < coverage["generated"]["mae"]
    assert cond["given"] == [] and cond["conditioned"] == list(TRAINED_ON)  # a VAE is given nothing
    d = report["diversity"]
    assert d["pixel_disagreement_between_samples"] > 0 and d["pixel_disagreement_between_real_neighbours"] > 0
    # Copying: the generated tiles and as many real test tiles, each against every training tile of the split.
    cp = report["copying"]
    assert cp["n"] == 24 and cp["training_tiles"] == len(meta_split.train)
    assert set(cp["nearest_training_rows"]) <= set(meta_split.train.tolist())
    assert cp["real_test_median"] > 0 and cp["ratio"] == pytest.approx(cp["generated_median"] / cp["real_test_median"])
    # Given an encoder, the same in its space; each example's nearest training tile there is drawn beside it.
    es = cp["encoder_space"]
    assert set(es["nearest_training_rows"]) <= set(meta_split.train.tolist()) and len(es["generated_distances"]) == 24
    assert es["real_test_median"] > 0 and es["ratio"] == pytest.approx(es["generated_median"] / es["real_test_median"])
    text = (tmp_path / "eval" / "report.md").read_text()
    assert "floor (real)" in text and "ceiling (noise)" in text and "© OpenStreetMap contributors" in text
    assert "## Copying" in text and "training tiles" in text and "encoder's embedding space" in text
    # The same seed gives the same numbers, progress shown or not; another split seed is refused.
    again = CliRunner().invoke(app, args("again"), env={"URBANGEN_NO_PROGRESS": "0"})
    assert again.exit_code == 0 and "progress: single tiles generated" in again.output  # the log's last line
    assert json.loads((tmp_path / "again" / "evaluation.json").read_text()) == report
    refused = CliRunner().invoke(app, args("other", "--split-seed", "7"))
    assert refused.exit_code == 2 and "seed" in refused.output and not (tmp_path / "other").exists()

    # The validation regions, for choosing a setting: only their tiles (none of the test regions'), the report
    # says so, and a comparison with the test regions' evaluation is refused: their tiles do not pair up.
    from data_pipeline.errors import InvalidValueError
    from urbangen.compare import compare_evaluations

    validation = CliRunner().invoke(app, ["evaluate", "--checkpoint", str(checkpoints["vae"]), "--dataset",
                                          str(small_tiles), "--out", str(tmp_path / "val"), "--tiles", "8",
                                          "--stitched-mosaics", "0", "--regions", "validation"])
    assert validation.exit_code == 0, validation.output
    on_validation = json.loads((tmp_path / "val" / "evaluation.json").read_text())
    rows = set(on_validation["split"]["tile_rows"])
    assert on_validation["split"]["regions"] == "validation" and len(rows) == 8
    assert rows <= set(meta_split.val.tolist()) and not rows & set(meta_split.test.tolist())
    assert on_validation["split"]["held_out_tiles"] == len(meta_split.val)
    assert "**Validation regions**" in (tmp_path / "val" / "report.md").read_text()
    with pytest.raises(InvalidValueError, match="A was evaluated on the test regions and B on the validation"):
        compare_evaluations(report, on_validation)
    unknown = CliRunner().invoke(app, args("unknown", "--regions", "train"))
    assert unknown.exit_code == 2 and "choose test" in unknown.output and not (tmp_path / "unknown").exists()


def test_buildings_around_a_given_real_street_network(small_tiles, osm_path, tmp_path):
    """A streets-to-buildings pix2pix keeps the given Østerbro streets and draws the buildings around them."""
    import rasterio
    import shapely
    from conftest import OSTERBRO

    from data_pipeline.grid import project_to_utm
    from data_pipeline.sources import read_osm_file
    from urbangen.generate.run import generate
    from urbangen.training.tasks import train

    run = tmp_path / "run"
    train(load_config("pix2pix", "streets_to_buildings", dataset=str(small_tiles), parameters=TRAINED_ON,
                      num_steps=10, eval_every=10, log_every=10, sample_every=0, batch_size=8,
                      **{"pix2pix.ngf": 8, "pix2pix.ndf": 8}), run)
    features = project_to_utm(read_osm_file(osm_path(OSTERBRO)))
    cx, cy = features.streets.union_all().centroid.coords[0]
    x0, y0 = float(int(cx - 256)), float(int(cy - 256))
    box = shapely.box(x0, y0, x0 + 512, y0 + 512)
    streets = features.streets[features.streets.intersects(box)][["highway", "geometry"]]
    streets_path = tmp_path / "streets.geojson"
    streets.to_crs("EPSG:4326").to_file(streets_path, driver="GeoJSON")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "model": {"checkpoint": str(run), "type": "pix2pix"}, "size_m": 512,
        "parameters": {"building_coverage": 0.3}, "streets": "streets.geojson", "samples": 1,
        "georeference": {"origin": [x0, y0], "crs": str(features.crs)}}))
    generate(params, tmp_path / "out")
    with rasterio.open(tmp_path / "out" / "sample_000.tif") as src:
        names = list(src.descriptions)
        layout = src.read()
    assert names[:3] == ["major_roads", "minor_roads", "cycle_foot"] and names[3] == "buildings"
    # The given streets lie where the vector streets run: a street channel is set within a pixel of
    # each road's midpoint (checked from the geometry, not from the rasterizer). Of the footways most
    # (85 %) suffice: a path that only touches the box may lie outside it at its clipped midpoint's pixel.
    drawn = features.streets[features.streets.intersects(box)
                             & features.streets["street_class"].isin(["major", "minor", "cycle_foot"])].clip(box)
    drawn = drawn.explode(index_parts=False)
    drawn = drawn[drawn.length > 20]
    assert len(drawn) > 30  # a real, dense street network

    def near_a_street_pixel(line) -> bool:
        mid = line.interpolate(0.5, normalized=True)
        row, col = int((y0 + 512 - mid.y) // 4.0), int((mid.x - x0) // 4.0)
        return bool(layout[:3, max(row - 1, 0):row + 2, max(col - 1, 0):col + 2].any())

    hits = drawn.geometry.map(near_a_street_pixel)
    # Roads are drawn where they are in osmnx's drive network (dataset format 2: no service roads).
    roads = (drawn["street_class"].isin(["major", "minor"]) & drawn["drive"]).to_numpy()
    paths = (drawn["street_class"] == "cycle_foot").to_numpy()
    assert roads.sum() > 10 and hits[roads].all()
    assert paths.sum() > 10 and hits[paths].mean() > 0.85
    # The buildings are what the run draws: evaluated, the street parameters come out as given
    # (copied from the real tile, reported apart), the building parameters as conditioned.
    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.common import generate_for, read_real
    from urbangen.evaluators.conditioning import Conditioning
    from urbangen.inference import load_run
    from urbangen.measure import STREET_CHANNELS
    from urbangen.splits import check_split

    model = load_run(run)
    data = open_dataset(small_tiles)
    real = read_real(data, check_split(model.spec.split, data.tiles).test[:8], model.spec.parameter_names)
    generated = generate_for(model, real)
    streets_idx = [data.channels.index(c) for c in STREET_CHANNELS]
    assert np.array_equal(generated[..., streets_idx], real.tiles[..., streets_idx])
    result = Conditioning(real).run(model, generated)
    street_params = [p for p in TRAINED_ON if p not in ("building_coverage", "buildings_per_ha", "open_space_share")]
    assert result["given"] == street_params
    assert result["conditioned"] == ["building_coverage", "buildings_per_ha"]
    assert result["not_drawn"] == ["open_space_share"]  # this run draws buildings only
    for p in street_params:  # given, so measured exactly as the real tiles' own (the floor)
        assert result["parameters"][p]["generated"] == result["parameters"][p]["floor"]
    # Each MAE's interval takes the test tiles' regions as its units, recorded per tile to pair runs by.
    assert result["regions"] == real.regions.tolist()
    coverage = result["parameters"]["building_coverage"]["generated"]
    assert coverage["mae_ci_groups"] == len(set(real.regions)) >= 2
    assert coverage["mae_ci95"][0] <= coverage["mae"] <= coverage["mae_ci95"][1]


def test_a_given_network_draws_its_roads_as_the_data_does_no_service_or_private_way(tmp_path):
    """The road channels of the training data hold osmnx's drive network: a given network's service road and
    private street are left out as there, read from the file's own tags; its public street and footway are not."""
    import geopandas as gpd
    from shapely.geometry import LineString

    from urbangen.generate.request import GenerationRequest
    from urbangen.generate.streets import rasterize_streets

    rows = [("residential", None, 20.0), ("residential", "private", 60.0), ("service", None, 100.0),
            ("footway", None, 140.0)]
    frame = gpd.GeoDataFrame({"highway": [h for h, _, _ in rows], "access": [a for _, a, _ in rows]},
                             geometry=[LineString([(0, y), (256, y)]) for _, _, y in rows], crs="EPSG:3857")
    path = tmp_path / "streets.geojson"
    frame.to_file(path, driver="GeoJSON")
    request = GenerationRequest(size_m=(256.0, 256.0), parameters={}, streets=path)
    channels = ["major_roads", "minor_roads", "cycle_foot"]
    layout = rasterize_streets(request, channels, 64, 64, 4.0)
    row_of = {y: int((256 - y) // 4) for _, _, y in rows}  # row 0 is the north edge
    minor, cycle = layout[..., 1], layout[..., 2]
    assert minor[row_of[20.0]].all() and cycle[row_of[140.0]].all()  # a footway a pixel wide, not dashes
    assert not minor[row_of[60.0]].any() and not minor[row_of[100.0]].any()
    assert not layout[..., 0].any()
