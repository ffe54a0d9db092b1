"""The generators that ship in the package: their file format, latent fields, seams and street connectivity."""

from __future__ import annotations

from pathlib import Path

import jax
import networkx as nx
import numpy as np
import pytest
from conftest import load_config


@pytest.fixture(scope="module")
def latent_run(small_tiles, tmp_path_factory) -> Path:
    """A tiny street stage (pix2pix with a latent map, BicycleGAN-trained) on real Østerbro and Kennesaw tiles."""
    from urbangen.training.tasks import train

    workdir = tmp_path_factory.mktemp("runs") / "streets"
    summary = train(load_config("pix2pix", "city_streets_test", dataset=str(small_tiles), num_steps=12,
                                eval_every=12, sample_every=0, log_every=4, batch_size=4), workdir)
    assert np.isfinite(summary["train"]["train/kl"]) and np.isfinite(summary["train"]["train/latent"])
    return workdir


def test_a_model_file_generates_exactly_what_its_run_does(latent_run, tmp_path):
    """Export and read back: the same spec and, for the same key and latent, the same probabilities."""
    from urbangen.inference import load_run
    from urbangen.pretrained import export_model, read_model

    run = load_run(latent_run, "latest")
    path = export_model(run, tmp_path / "streets.msgpack")
    shipped = read_model(path)
    # The same spec, but for the machine's folders: the run and its dataset are named, not located.
    assert Path(run.spec.workdir).is_absolute() and Path(run.spec.dataset).is_absolute()
    assert shipped.spec.workdir == latent_run.name and shipped.spec.dataset == Path(run.spec.dataset).name
    assert shipped.spec.config["dataset"] == Path(run.spec.dataset).name
    assert shipped.spec.model_dump(exclude={"workdir", "dataset", "config"}) == \
        run.spec.model_dump(exclude={"workdir", "dataset", "config"})
    assert {k: v for k, v in shipped.spec.config.items() if k != "dataset"} == \
        {k: v for k, v in run.spec.config.items() if k != "dataset"}
    assert shipped.spec.latent_channels == 8 and shipped.spec.latent_stride == 8
    maps = np.random.default_rng(0).standard_normal((3, 64, 64, len(run.spec.parameter_names))).astype(np.float32)
    key = jax.random.key(3)
    a, b = run.generate_tiles(maps, key), shipped.generate_tiles(maps, key)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 64, 64, 3)
    # Different latents give different layouts: the latent is a real noise source.
    c = shipped.generate_tiles(maps, jax.random.key(4))
    assert np.abs(a - c).mean() > 1e-4
    # Half-precision weights (how the package ships them): half the file, nearly the same layouts.
    half = read_model(export_model(run, tmp_path / "half.msgpack", dtype="float16"))
    assert path.stat().st_size / (tmp_path / "half.msgpack").stat().st_size > 1.8
    h = half.generate_tiles(maps, key)
    assert np.abs(h - a).max() < 0.02 and ((h > 0.5) != (a > 0.5)).mean() < 1e-3


def _strings(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("name", ["city-64", "buildings-256", "encoder-64"])
def test_shipped_model_files_name_no_folder_of_the_machine_they_were_made_on(name):
    """Every string in a shipped file's run spec, read from the file itself, is free of absolute paths."""
    import json

    from flax import serialization

    from urbangen.pretrained import SHIPPED, shipped_file

    for filename in SHIPPED[name]:
        payload = serialization.msgpack_restore(shipped_file(filename).read_bytes())
        spec = json.loads(payload["spec"])
        assert spec["workdir"] and spec["dataset"]
        absolute = [s for s in _strings(spec) if s.startswith(("/", "~")) or s[1:3] in (":\\", ":/")]
        assert not absolute, f"{filename} names {absolute}"


def test_a_foreign_file_is_refused_by_name(tmp_path):
    from data_pipeline.errors import RunSpecError
    from urbangen.pretrained import load_model, read_model

    junk = tmp_path / "model.msgpack"
    junk.write_bytes(b"not a model")
    with pytest.raises(RunSpecError, match="not an urbangen model file"):
        read_model(junk)
    with pytest.raises(RunSpecError, match="neither a shipped model"):
        load_model(tmp_path / "missing")


def test_overlapping_windows_share_one_latent_field(latent_run):
    """Each window of a stitched layout reads its own crop of one latent field, so overlaps agree."""
    from urbangen.generate.sampler import generate_layout
    from urbangen.inference import load_run

    model = load_run(latent_run, "latest")
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    class Recorder:
        spec = model.spec

        def generate_tiles(self, maps, key, given=None, latent=None):
            seen.append(np.asarray(latent))
            return model.generate_tiles(maps, key, given, latent)

    fields = np.full((160, 96, len(model.spec.parameter_names)), np.nan)
    generate_layout(Recorder(), fields, jax.random.key(0), batch_size=2)
    latents = np.concatenate(seen)
    # Windows start every 32 px (4 latent cells); the last one is flush with the padded end (160 -> 160, 96).
    starts = [(r, c) for r in (0, 32, 64, 96) for c in (0, 32)]
    assert len(latents) == len(starts)
    field = {}
    for (r, c), lat in zip(starts, latents):
        for i in range(8):
            for j in range(8):
                cell = (r // 8 + i, c // 8 + j)
                if cell in field:
                    np.testing.assert_array_equal(field[cell], lat[i, j])
                field[cell] = lat[i, j]
    assert len(field) == 20 * 12


def _largest_share_networkx(tile: np.ndarray) -> float:
    """Reference: the street pixels as an 8-neighbour graph, components by networkx."""
    mask = tile[..., :3].any(axis=-1)
    g = nx.Graph()
    pixels = list(zip(*np.nonzero(mask)))
    g.add_nodes_from(pixels)
    on = set(pixels)
    for r, c in pixels:
        for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
            if (r + dr, c + dc) in on:
                g.add_edge((r, c), (r + dr, c + dc))
    return max(len(c) for c in nx.connected_components(g)) / len(pixels)


def test_largest_component_share_matches_networkx_on_real_tiles(small_tiles):
    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.streets import largest_component_share

    data = open_dataset(small_tiles)
    assert list(data.channels[1:4]) == ["major_roads", "minor_roads", "cycle_foot"]
    tiles = data.read_tiles(np.arange(0, len(data), max(1, len(data) // 12)))
    ours = largest_component_share(tiles, list(data.channels))
    reference = [_largest_share_networkx(t[..., 1:4]) for t in tiles]
    np.testing.assert_allclose(ours, reference)
    assert 0.2 < np.mean(ours) <= 1.0
    # Cut every street every 8 px: the network falls apart and the share drops.
    cut = tiles.copy()
    cut[:, ::8, :, 1:4] = 0
    cut[:, :, ::8, 1:4] = 0
    assert np.nanmean(largest_component_share(cut, list(data.channels))) < 0.5 * np.mean(ours)


def test_seam_ratios_find_a_seam_and_not_one_in_real_land(small_tiles):
    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.seams import Seams, real_mosaics, seam_ratios

    data = open_dataset(small_tiles)
    mosaics = real_mosaics(data, np.arange(len(data)), 2)
    assert len(mosaics) >= 8 and mosaics[0].shape == (128, 128, len(data.channels))
    channels = list(data.channels)
    # Real land, pooled four mosaics (24 lines) at a time: no seam, so near 1.
    groups = Seams(mosaics, channels, 32).real_groups(24)
    assert len(groups) >= 2
    floor = max(abs(g["change_rate_ratio"] - 1) for g in groups)
    assert floor < 0.35
    # Every other 32 px band from another place: a jump on each line, as mismatched tiles would make.
    seamed = mosaics[0].copy()
    for k in range(0, 128, 64):
        seamed[:, k + 32:k + 64] = mosaics[1][:, k + 32:k + 64]
    for k in range(0, 128, 64):
        seamed[k + 32:k + 64] = mosaics[2][k + 32:k + 64]
    assert seam_ratios(seamed, channels, 32)["change_rate_ratio"] - 1 > floor


@pytest.fixture(scope="module")
def buildings_run(small_tiles, tmp_path_factory) -> Path:
    """A tiny buildings stage: buildings, open space and water around real streets."""
    from urbangen.training.tasks import train

    workdir = tmp_path_factory.mktemp("runs") / "buildings"
    train(load_config("pix2pix", "city_buildings_test", dataset=str(small_tiles), num_steps=12, eval_every=12,
                      sample_every=0, log_every=4, batch_size=4), workdir)
    return workdir


def test_a_two_stage_chain_draws_streets_then_buildings_around_them(latent_run, buildings_run, small_tiles,
                                                                    tmp_path):
    """Files of both stages as one chain: every number of the evaluation, and a parameter file that names it."""
    import yaml

    from urbangen.evaluate import evaluate
    from urbangen.footprints import rectangular_stage
    from urbangen.generate.run import generate
    from urbangen.inference import GeneratorChain, load_run
    from urbangen.pretrained import export_model, load_model
    from urbangen.specks import speckless_stage

    files = [export_model(load_run(run, "latest"), tmp_path / f"{name}.msgpack")
             for name, run in (("streets", latent_run), ("buildings", buildings_run))]
    chain = load_model(files)
    assert isinstance(chain, GeneratorChain)
    assert chain.spec.output_channels == ("major_roads", "minor_roads", "cycle_foot", "buildings", "open_space",
                                          "water")
    assert chain.spec.input_channels == ()
    # The buildings stage reads what the street stage drew, thresholded: feeding it those streets by hand
    # gives the same buildings, without specks and their footprints redrawn as the chain hands them on.
    maps = np.zeros((2, 64, 64, len(chain.spec.parameter_names)), np.float32)
    probs = chain.generate_tiles(maps, jax.random.key(0))
    streets = (probs[..., :3] > 0.5).astype(np.uint8)
    buildings = chain.stages[1].generate_tiles(maps[..., chain.columns(chain.stages[1])],
                                               jax.random.fold_in(jax.random.key(0), 1), streets)
    drawn = {c: streets[..., i] for i, c in enumerate(("major_roads", "minor_roads", "cycle_foot"))}
    spec = chain.stages[1].spec
    np.testing.assert_array_equal(probs[..., 3:], rectangular_stage(*speckless_stage(buildings, None, spec), spec,
                                                                    drawn)[0])

    # One candidate: measuring each candidate of this barely trained chain's speckled tiles took half the test's
    # four minutes. Sampling by selection runs through the chain below, where the parameter file asks for 2
    # (tests/test_selection.py checks what it chooses).
    result = evaluate(chain, small_tiles, tmp_path / "eval", max_tiles=16, n_boot=20, seams_m=512, stitched_mosaics=1,
                      candidates=1)
    assert result["candidates"] == 1 and result["footprints"] == "rectangles"
    assert {"realism", "conditioning", "diversity", "streets", "seams", "stitched_conditioning",
            "acceptance"} <= set(result)
    assert result["stitched_conditioning"]["tiles"] in (4, 16)  # one test mosaic of 2 x 2 or 4 x 4 tiles
    criteria = {row["metric"] for row in result["acceptance"]}
    assert "MAE building_coverage" in criteria and "conditioning failure rate" in criteria
    assert "MAE building_coverage, stitched layouts of real mosaics' fields" in criteria
    assert any(c.startswith("seams:") for c in criteria)
    assert all("floor" in row and "target" in row for row in result["acceptance"])
    for name in ("report.md", "examples.png", "stitched.png", "stitched_conditioning.png", "evaluation.json"):
        assert (tmp_path / "eval" / name).is_file()
    assert "Against the bar" in (tmp_path / "eval" / "report.md").read_text()
    # The buildings stage alone, around the real test tiles' streets: the bar judges what it draws, not the
    # streets it is given (copied from the real tiles, their W1 is 0 by construction).
    around = evaluate(chain.stages[1], small_tiles, tmp_path / "eval_buildings", max_tiles=8, n_boot=20, seams_m=0,
                      stitched_mosaics=0, candidates=1)
    criteria = {row["metric"] for row in around["acceptance"]}
    assert around["given_channels"] == ["major_roads", "minor_roads", "cycle_foot"]
    assert "W1 building_coverage (× floor)" in criteria and "MAE building_coverage" in criteria
    assert not [c for c in criteria if "intersection" in c or "dead_end" in c or "cycle_foot" in c]

    params = tmp_path / "chain.yaml"
    params.write_text(yaml.safe_dump({"model": {"checkpoint": [str(f) for f in files]}, "size_m": 320,
                                      "parameters": {"building_coverage": 0.2}, "samples": 1, "candidates": 2,
                                      "footprints": "as_drawn", "outputs": ["png", "report"]}))
    report = generate(params, tmp_path / "out")
    assert report["model"] == "chain" and report["size_px"] == [80, 80] and report["candidates"] == 2
    assert report["footprints"] == "as_drawn"


def test_the_shipped_generator_draws_major_roads_that_run_on(monkeypatch):
    """city-64's arterial stage draws a 1 km layout's major roads over the whole of it: most of their pixels lie
    in pieces reaching 500 m, where the street stage alone, drawing 256 m at a time, leaves short pieces."""
    from urbangen.evaluators.streets import major_road_reach
    from urbangen.generate.sampler import generate_layout
    from urbangen.inference import GeneratorChain
    from urbangen.pretrained import load_shipped

    # Each stitched street window drawn from 8 samples, not 32, and kept as drawn, its latent not moved to continue
    # the tiles before it: 89 -> 17 s alone (moving took 47 s of the 64 left with 8 samples). The arterials, the
    # subject here, are drawn before the street windows; reach below is 1.0 so, 0.90 with 32 samples moved.
    monkeypatch.setattr("urbangen.generate.sampler.CANDIDATES", 8)
    monkeypatch.setattr("urbangen.generate.sampler.CONTINUE_STEPS", 0)
    chain = load_shipped("city-64")
    arterials = chain.stages[0]
    assert (chain.factor(arterials), arterials.spec.tile_m, arterials.spec.output_channels) == (
        4, 1024.0, ("major_roads",))
    names = list(chain.spec.parameter_names)
    request = np.array(chain.spec.scaler_mean)  # the training tiles' mean, with major roads asked for
    request[names.index("major_road_density_km_per_km2")] = 4.0
    request[names.index("major_road_share")] = 0.2
    fields = np.broadcast_to(request, (256, 256, len(names))).copy()
    channels = list(chain.spec.output_channels)
    key = jax.random.key(3)
    layout = generate_layout(chain, fields, key) > 0.5
    without = generate_layout(GeneratorChain.of("streets only", chain.stages[1:]), fields, key) > 0.5
    reach, reach_without = (major_road_reach(x[None], channels, 4.0)[0] for x in (layout, without))
    # One 1 km sample (real 1 km mosaics 0.96 on average, generated 2 x 2 km layouts 0.92).
    assert reach > 0.5 > 0.2 > reach_without, (reach, reach_without)
    # As much major road as real 1 km asked for 4 km/km² have, at 12 m wide: about 5 % of the ground.
    assert 0.02 < layout[..., channels.index("major_roads")].mean() < 0.1
    # Tiles asking for no major road get none: the arterials are cut out of them, and the street stage's own major
    # roads become minor roads there; the tiles asking for them keep theirs.
    split = fields.copy()
    split[:, :128, names.index("major_road_density_km_per_km2")] = 0.0
    split[:, :128, names.index("major_road_share")] = 0.0
    split[:, 128:, names.index("major_road_density_km_per_km2")] = 8.0
    major = generate_layout(chain, split, key)[..., channels.index("major_roads")] > 0.5
    assert not major[:, :128].any() and major[:, 128:].mean() > 0.02, major[:, 128:].mean()
    # A layout smaller than the arterial stage's 1 km is drawn without it, as single tiles are.
    small = fields[:128, :128]
    np.testing.assert_array_equal(generate_layout(chain, small, key),
                                  generate_layout(GeneratorChain.of("streets only", chain.stages[1:]), small, key))


def test_the_shipped_2m_building_stage_draws_around_a_real_street_network(osm_path, tmp_path):
    """buildings-256 (trained on a GPU) around 512 m of real Østerbro streets, from a parameter file: the streets
    stay as given, at 2 m/px; buildings keep off them as real ones do, and follow the coverage asked for (sampling
    by selection, as a chain given the streets)."""
    import rasterio
    import shapely
    import yaml
    from conftest import OSTERBRO

    from data_pipeline.grid import project_to_utm
    from data_pipeline.sources import read_osm_file
    from urbangen.generate.run import generate

    features = project_to_utm(read_osm_file(osm_path(OSTERBRO)))
    cx, cy = features.streets.union_all().centroid.coords[0]
    x0, y0 = float(int(cx - 256)), float(int(cy - 256))
    box = shapely.box(x0, y0, x0 + 512, y0 + 512)
    features.streets[features.streets.intersects(box)][["highway", "geometry"]].to_crs("EPSG:4326").to_file(
        tmp_path / "streets.geojson", driver="GeoJSON")
    real_coverage = float(features.buildings.clip(box).area.sum() / box.area)
    layouts = {}
    for coverage in (0.05, 0.35):
        params = tmp_path / f"params_{coverage}.yaml"
        params.write_text(yaml.safe_dump({
            "model": "buildings-256", "size_m": 512, "parameters": {"building_coverage": coverage},
            "streets": "streets.geojson", "samples": 1, "seed": 0, "outputs": ["geotiff"],
            "georeference": {"origin": [x0, y0], "crs": str(features.crs)}}))
        generate(params, tmp_path / f"out_{coverage}")
        with rasterio.open(tmp_path / f"out_{coverage}" / "sample_000.tif") as src:
            assert src.res == (2.0, 2.0) and (src.width, src.height) == (256, 256)
            layouts[coverage] = dict(zip(src.descriptions, src.read()))
    streets = np.maximum.reduce([layouts[0.35][c] for c in ("major_roads", "minor_roads", "cycle_foot")]) > 0
    assert np.array_equal(streets, np.maximum.reduce(
        [layouts[0.05][c] for c in ("major_roads", "minor_roads", "cycle_foot")]) > 0)
    assert 0.05 < streets.mean() < 0.5  # a dense street network, drawn from the file
    for coverage, layout in layouts.items():
        buildings = layout["buildings"] > 0
        # Here 0.5 % and 4.2 %; on the 175 held-out test tiles 1.5 % carry a generated building, 1.1 % a real one.
        assert buildings[streets].mean() < 0.06, (coverage, buildings[streets].mean())
    low, high = (layouts[c]["buildings"].mean() for c in (0.05, 0.35))
    # Measured: 0.051 for 0.05, 0.364 for 0.35 (the real ground holds 0.25), the best of 16 samples by the
    # calibration shipped with it; one sample drew 0.075 and 0.415.
    assert abs(low - 0.05) < 0.03 and abs(high - 0.35) < 0.06, (low, high, real_coverage)
