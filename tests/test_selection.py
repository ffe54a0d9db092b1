"""Sampling by selection (urbangen.generate.selection): of k samples, the one whose measured form is nearest."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from data_pipeline.errors import InvalidValueError
from urbangen.generate.selection import UNMEASURED, by_parameters, parameter_errors
from urbangen.proximity import PATH_LEVELS


def _stage(names: tuple[str, ...], outputs: tuple[str, ...], mean: tuple[float, ...], std: tuple[float, ...]):
    spec = SimpleNamespace(parameter_names=names, output_channels=outputs, meters_per_pixel=4.0,
                           scaler_mean=mean, scaler_std=std)
    return SimpleNamespace(spec=spec)


def test_errors_are_the_standardized_distance_of_the_measured_coverage():
    """Rectangles of buildings: their coverage, counted in float64 pixels, is what the error is measured from."""
    layouts = np.zeros((3, 64, 64, 1), np.uint8)
    layouts[0, 4:12, 4:20] = 1  # 128 px
    layouts[1, 2:42, 10:40] = 1  # 1200 px
    layouts[2, 0:50, 0:60] = 1  # 3000 px
    share = layouts.reshape(3, -1).astype(np.float64).mean(axis=1)
    stage = _stage(("building_coverage",), ("buildings",), (0.2,), (0.1,))
    requested = np.full((3, 1), (0.3 - 0.2) / 0.1)
    errors = parameter_errors(stage, layouts, requested)
    np.testing.assert_allclose(errors, np.abs(share - 0.3) / 0.1, atol=1e-6)
    assert int(np.argmin(errors)) == 1


def test_errors_weigh_each_parameter_by_its_weight(monkeypatch):
    """Coverage weighing 3 and buildings per hectare 1: a tile's error is (3 e_coverage + e_count) / 4, each e
    counted by hand (one 32 x 32 px building on a 256 m square tile: a share 0.25, 1 / 6.5536 ha). Scored with
    no seeds (a stitched layout's window), (e_coverage + e_count) / 2, unless asked to weigh them (a complete
    window), and seeds asked not to weigh them weigh the same; weights given replace WEIGHTS."""
    import urbangen.generate.selection as selection
    from urbangen.generate.sampler import PATH_LEVEL_WEIGHTS
    from urbangen.measure import PARAMETER_CHANNELS

    assert set(selection.WEIGHTS) | set(PATH_LEVEL_WEIGHTS) <= set(PARAMETER_CHANNELS)  # a misspelt name: weight 1
    monkeypatch.setattr(selection, "WEIGHTS", {"building_coverage": 3.0})
    layouts = np.zeros((1, 64, 64, 1), np.uint8)
    layouts[0, 16:48, 16:48] = 1
    stage = _stage(("building_coverage", "buildings_per_ha"), ("buildings",), (0.2, 1.0), (0.1, 0.5))
    requested = np.array([[1.0, -1.0]])  # coverage 0.3, 0.5 buildings per hectare
    e_coverage, e_count = abs(0.25 - 0.3) / 0.1, abs(1 / 6.5536 - 0.5) / 0.5
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested, np.zeros(1, np.int64)),
                               [(3 * e_coverage + e_count) / 4], rtol=1e-6)
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested), [(e_coverage + e_count) / 2], rtol=1e-6)
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested, weighted=True),
                               [(3 * e_coverage + e_count) / 4], rtol=1e-6)
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested, np.zeros(1, np.int64), weighted=False),
                               [(e_coverage + e_count) / 2], rtol=1e-6)
    # Weights of its own (a stitched tile's path level: urbangen.generate.sampler.PATH_LEVEL_WEIGHTS) replace
    # WEIGHTS where weighted, a parameter not named weighing 1, and change nothing where not weighted.
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested, weighted=True,
                                                weights={"buildings_per_ha": 5.0}),
                               [(e_coverage + 5 * e_count) / 6], rtol=1e-6)
    np.testing.assert_allclose(parameter_errors(stage, layouts, requested, weighted=False,
                                                weights={"buildings_per_ha": 5.0}),
                               [(e_coverage + e_count) / 2], rtol=1e-6)


def test_a_parameter_that_cannot_be_measured_counts_as_far_off():
    """No streets: no bearings to take an entropy of; the sample is scored UNMEASURED, never as a match."""
    stage = _stage(("orientation_entropy",), ("major_roads", "minor_roads", "cycle_foot"), (3.0,), (0.3,))
    empty = np.zeros((1, 64, 64, 3), np.uint8)
    assert parameter_errors(stage, empty, np.zeros((1, 1)))[0] == UNMEASURED


def test_calibration_fits_match_independent_least_squares_and_move_the_target():
    """One predictor: scipy's least-squares line; several: scikit-learn's linear regression, an unknown request
    counting as the training mean. With the fit, a sample measuring what real tiles measure for the request
    scores 0, one measuring the request itself does not."""
    from scipy.stats import linregress
    from sklearn.linear_model import LinearRegression

    from urbangen.conditioning import ParameterScaler
    from urbangen.generate.selection import fit_calibration

    rng = np.random.default_rng(0)
    v = rng.uniform(0.0, 0.5, 200)
    measured = 0.02 + 0.6 * v + rng.normal(0.0, 0.01, 200)
    v[3], measured[7] = np.nan, np.nan  # unknown pairs are left out
    scaler = ParameterScaler(("building_coverage",), (0.2,), (0.1,))
    calibration = fit_calibration(v[:, None], measured[:, None], ["building_coverage"], scaler=scaler,
                                  predictors={}, tile_px=64, meters_per_pixel=4.0, fitted_on="synthetic")
    ok = np.isfinite(v) & np.isfinite(measured)
    ref = linregress(v[ok], measured[ok])
    line = calibration.lines["building_coverage"]
    assert line.n == 198
    np.testing.assert_allclose(line.r2, ref.rvalue ** 2, rtol=1e-9)
    z = np.array([[(0.3 - 0.2) / 0.1]])
    np.testing.assert_allclose(calibration.target(["building_coverage"], z, ["building_coverage"]),
                               [[ref.intercept + ref.slope * 0.3]], rtol=1e-9)
    np.testing.assert_allclose(calibration.target(["building_coverage"], z, ["building_coverage"]),
                               [[0.02 + 0.6 * 0.3]], atol=0.01)

    # Several predictors; requests of b unknown on 20 tiles (the model sees its training mean there).
    a, b = rng.uniform(0.0, 1.0, 300), rng.uniform(0.0, 50.0, 300)
    y = 0.1 + 0.5 * a + 0.004 * b + rng.normal(0.0, 0.02, 300)
    b[:20] = np.nan
    requested = np.column_stack([a, b, rng.uniform(0.0, 1.0, 300)])
    names = ["a", "b", "y"]
    scaler = ParameterScaler.fit(names, requested)
    fitted = fit_calibration(requested, np.column_stack([a, b, y]), names, scaler=scaler,
                             predictors={"y": ["a", "b"]}, tile_px=64, meters_per_pixel=4.0, fitted_on="synthetic")
    b_filled = np.where(np.isfinite(b), b, np.nanmean(b))
    reference = LinearRegression().fit(np.column_stack([a, b_filled]), y)
    query = np.array([[0.7, 12.0, 0.3], [0.2, np.nan, 0.3]])
    expected = reference.predict(np.where(np.isfinite(query[:, :2]), query[:, :2], np.nanmean(b)))
    # rtol: the generator's requests are float32 (ParameterScaler.transform)
    np.testing.assert_allclose(fitted.target(["y"], scaler.transform(query), names)[:, 0], expected, rtol=1e-6)
    assert fitted.lines["y"].n == 300 and fitted.lines["y"].r2 > 0.9
    # Kept for seeded targets: each tile's residual about its line, and its request as the generator sees it.
    x_filled = np.column_stack([a, b_filled])
    np.testing.assert_allclose(fitted.residuals[:, list(fitted.lines).index("y")], y - reference.predict(x_filled),
                               atol=1e-9)
    np.testing.assert_allclose(fitted.requests[:, 1], np.where(np.isfinite(b), (b - np.nanmean(b)) / np.nanstd(b), 0),
                               rtol=1e-6, atol=1e-12)

    layouts = np.zeros((2, 64, 64, 1), np.uint8)
    layouts[0, :, :13] = 1  # 13 of 64 columns: 0.203, what real tiles asked for 0.3 measure here
    layouts[1].reshape(-1)[:1229] = 1  # 0.300, the request itself
    stage = _stage(("building_coverage",), ("buildings",), (0.2,), (0.1,))
    requested = np.full((2, 1), (0.3 - 0.2) / 0.1)
    with_line = parameter_errors(stage, layouts, requested, calibration=calibration)
    without = parameter_errors(stage, layouts, requested)
    assert with_line[0] < with_line[1] and without[1] < without[0]


def test_seeded_targets_add_the_residuals_of_real_tiles_with_the_nearest_requests():
    """Two groups of fitting tiles, asked for a = -2 and a = +2, lie 5 above and 5 below their line. A seeded
    target for a request near one group takes the residual of one of its tiles (both its parameters from one
    tile), the same for one seed; without seeds or at scatter 0 the target is the line, at scatter 0.5 half as
    far off it. A tile whose residual is unknown is never drawn. By default a parameter whose line explains
    little (y, R² 0.5) takes the whole residual, one it explains well (w, R² 0.9) none."""
    from urbangen.generate.selection import NEIGHBOURS, Calibration, Line

    rng = np.random.default_rng(1)
    n = 3 * NEIGHBOURS
    requests = np.concatenate([np.full(n, -2.0), np.full(n, 2.0)])[:, None] + rng.normal(0, 0.1, (2 * n, 1))
    y = np.concatenate([5 + rng.normal(0, 0.5, n), -5 + rng.normal(0, 0.5, n)])
    residuals = np.column_stack([y, 10 * y])  # parameters of one tile move together
    residuals[:NEIGHBOURS] = np.nan  # the near group's first tiles: unknown
    line = {"intercept": 1.0, "slopes": {"a": 2.0}, "spread": 1.0, "r2": 0.5, "n": 2 * n}
    calibration = Calibration(lines={"y": Line(**line), "w": Line(**line | {"r2": 0.9})}, tile_px=64,
                              meters_per_pixel=4.0,
                              fitted_on="synthetic", request_names=("a",), requests=requests, residuals=residuals)
    z = np.full((200, 1), -1.9)
    seeds = np.repeat(np.arange(100), 2)  # two candidates a tile
    on_line = calibration.target(["y", "w"], z, ["a"])
    np.testing.assert_allclose(on_line, 1.0 + 2.0 * -1.9)
    np.testing.assert_array_equal(calibration.target(["y", "w"], z, ["a"], seeds, scatter=0.0), on_line)
    drawn = calibration.target(["y", "w"], z, ["a"], seeds, scatter=1.0) - on_line
    np.testing.assert_allclose(calibration.target(["y", "w"], z, ["a"], seeds, scatter=0.5) - on_line, drawn / 2)
    np.testing.assert_array_equal(drawn[0::2], drawn[1::2])  # a tile's candidates share their target
    np.testing.assert_allclose(drawn[:, 1], 10 * drawn[:, 0])  # every parameter from the same real tile
    by_default = calibration.target(["y", "w"], z, ["a"], seeds) - on_line
    np.testing.assert_array_equal(by_default[:, 0], drawn[:, 0])
    assert not by_default[:, 1].any()
    known_near = residuals[NEIGHBOURS:n, 0]
    assert set(drawn[:, 0]) <= set(known_near) and len(set(drawn[:, 0])) > NEIGHBOURS // 2
    np.testing.assert_array_equal(calibration.target(["y"], z[:4], ["a"], seeds[:4], scatter=1.0),
                                  calibration.target(["y"], z[:4], ["a"], seeds[:4], scatter=1.0))  # reproducible
    far = calibration.target(["y"], np.full((1, 1), 2.1), ["a"], np.array([7]), scatter=1.0) - (1.0 + 2.0 * 2.1)
    assert -7 < far[0, 0] < -3


@pytest.mark.integration
def test_seeded_targets_scatter_like_real_tiles_measured(small_tiles):
    """The shipped calibration, for real Østerbro and Kennesaw tiles' own requests: the lines alone (the
    scatter 0) are more alike than what the tiles measure (a spread of 0.83x the real one for
    intersection density, 0.71x for dead-end share); targets drawn at scatter 1 spread as the tiles do,
    and dead-end share's are distributed like them
    (scipy's Wasserstein-1; intersection density's lines are 9 /km² under these two cities' tiles, drawn or not).
    By default dead-end share, which its request explains least, is drawn so; intersection density is at its line."""
    from scipy.stats import wasserstein_distance

    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.common import read_real
    from urbangen.generate.selection import shipped_calibration
    from urbangen.pretrained import load_shipped

    model = load_shipped("city-64")
    calibration = shipped_calibration(model)
    streets = model.stages[-2]  # the street stage, before the buildings
    names = ["intersection_density_per_km2", "dead_end_share"]
    data = open_dataset(small_tiles)
    real = read_real(data, np.arange(len(data.tiles)), tuple(model.spec.parameter_names))
    z = model.spec.scaler.transform(real.parameters)[:, model.columns(streets)]
    measured = real.measured[names].to_numpy(np.float64)
    lines = calibration.target(names, z, streets.spec.parameter_names)
    drawn = calibration.target(names, z, streets.spec.parameter_names, np.arange(len(z)), scatter=1.0)
    by_default = calibration.target(names, z, streets.spec.parameter_names, np.arange(len(z)))
    np.testing.assert_array_equal(by_default[:, 0], lines[:, 0])
    np.testing.assert_array_equal(by_default[:, 1], drawn[:, 1])
    for j, name in enumerate(names):
        ok = np.isfinite(measured[:, j])
        spread_lines, spread_drawn = (np.std(t[ok, j]) / np.std(measured[ok, j]) for t in (lines, drawn))
        assert abs(spread_drawn - 1) < 0.5 * abs(spread_lines - 1), (name, spread_drawn, spread_lines)
    ok = np.isfinite(measured[:, 1])
    assert wasserstein_distance(drawn[ok, 1], measured[ok, 1]) < 0.6 * wasserstein_distance(lines[ok, 1],
                                                                                            measured[ok, 1])


class _LatentBlocks:
    """A stand-in latent pix2pix: a building wherever its latent cell is positive (8 px cells)."""

    spec = SimpleNamespace(kind="pix2pix", sampling="threshold", tile_px=64, output_channels=("buildings",),
                           input_channels=(), latent_channels=1, latent_stride=8,
                           scaler=SimpleNamespace(transform=lambda fields: fields))

    def generate_tiles(self, maps, key, given=None, latent=None):
        return np.repeat(np.repeat((np.asarray(latent) > 0).astype(np.float32), 8, axis=1), 8, axis=2)


def _coverage_error(stage, layouts, requested, seeds):
    return np.abs(layouts.reshape(len(layouts), -1).mean(axis=1) - requested[:, 0])


def test_a_layouts_field_is_put_together_from_each_blocks_best_field():
    """Left half asks for 10 % buildings, right half 90 %: each 64 px block keeps the field nearest its request."""
    from urbangen.generate.sampler import _blend, tile_offsets

    model = _LatentBlocks()
    z = np.zeros((128, 256, 1), np.float32)
    z[:, :128], z[:, 128:] = 0.1, 0.9
    key = jax.random.key(0)
    plain = _blend(model, z, key, None, 16) > 0.5
    chosen = _blend(model, z, key, None, 16, (16, _coverage_error)) > 0.5
    blocks = [(r, c) for r in tile_offsets(128, 64, 64) for c in tile_offsets(256, 64, 64)]

    def block_errors(layout):
        return np.array([abs(layout[r:r + 64, c:c + 64].mean() - z[r, c, 0]) for r, c in blocks])

    assert (block_errors(chosen) <= block_errors(plain) + 1e-9).all()
    # A block's coverage over its 64 cells is 0.5 +- 0.0625 for any one field: 0.4 off its request on average.
    # The best of 16 is about 1.8 standard deviations nearer (0.29); one field alone is not.
    assert block_errors(chosen).mean() < 0.4 - 0.0625
    assert tile_offsets(136, 64, 64) == [0, 64, 72] and tile_offsets(64, 64, 64) == [0]


@pytest.fixture(scope="module")
def city64():
    from urbangen.pretrained import load_shipped

    return load_shipped("city-64")


@pytest.mark.integration
def test_selected_tiles_are_the_models_own_and_nearer_their_request(city64):
    """The shipped chain, asked for sparse and dense buildings: with 8 candidates the coverage (float64 pixel
    count) lands nearer the request, and each tile's streets are one of the street stage's own 8 samples."""
    from urbangen.inference import deterministic_layout

    names = city64.spec.parameter_names
    b = names.index("building_coverage")
    wanted = np.array([0.05, 0.05, 0.05, 0.05, 0.35, 0.35, 0.35, 0.35])
    request = np.full((len(wanted), len(names)), np.nan)
    request[:, b] = wanted
    z = city64.spec.scaler.transform(request)
    maps = np.broadcast_to(z[:, None, None, :], (len(z), 64, 64, len(names)))
    key = jax.random.key(5)
    buildings = city64.spec.output_channels.index("buildings")

    def coverage_error(model):
        tiles = model.generate_tiles(maps, key)
        return np.abs((tiles[..., buildings] > 0.5).mean(axis=(1, 2)) - wanted).mean(), tiles

    plain, _ = coverage_error(city64)
    chosen = by_parameters(city64, 8)
    assert chosen.scorer.keywords["calibration"].lines["building_coverage"].r2 > 0.99  # the shipped one
    selected, tiles = coverage_error(chosen)
    # 0.036 against 0.045 with the buildings stage retrained on 2026-12-06, which follows the request more
    # closely by itself (the stage before: under 0.75 x its one sample's error).
    assert selected < 0.85 * plain, (selected, plain)

    streets = city64.stages[-2]  # the street stage, before the buildings
    cols = city64.columns(streets)
    fields = streets.generate_tiles(np.repeat(maps[..., cols], 8, axis=0), jax.random.fold_in(key, 0))
    # each candidate as decoded with its paths at each level (urbangen.inference.best_path_levels)
    candidates = np.stack([deterministic_layout(fields, streets.spec, path_level=level) for level in PATH_LEVELS])
    for i, tile in enumerate(tiles[..., :3].astype(np.uint8)):
        assert any(np.array_equal(tile, c) for c in candidates[:, i * 8:(i + 1) * 8].reshape(-1, *tile.shape))
    assert by_parameters(city64, 1).scorer is None
    assert chosen.scorer.keywords["scatter"] is None  # per parameter by default
    assert by_parameters(city64, 8, scatter=1.0).scorer.keywords["scatter"] == 1.0
    with pytest.raises(InvalidValueError, match="between 0 and 1"):
        by_parameters(city64, 8, scatter=1.5)


def test_where_a_request_sits_among_the_training_tiles_matches_scipy():
    """The shipped calibration's share of training tiles below a request, against scipy's percentile of
    score (ties half) over the tiles counted for that parameter: the 557 whose buildings were mapped."""
    from scipy.stats import percentileofscore

    from urbangen.generate.selection import Calibration
    from urbangen.pretrained import CALIBRATIONS, shipped_file

    calibration = Calibration.read(shipped_file(CALIBRATIONS["city-64"]))
    name = "buildings_per_ha"
    counted = np.isfinite(calibration.residuals[:, list(calibration.lines).index(name)])
    assert counted.sum() == 557
    known = calibration.requests[counted, calibration.request_names.index(name)]
    z = np.array([known.min() - 1, np.median(known), known[0], 3.0, known.max() + 1])
    expected = [percentileofscore(known, v, kind="mean") / 100 for v in z]
    np.testing.assert_allclose(calibration.share_below(name, z), expected, rtol=1e-12)
    assert calibration.share_below("no_such_parameter", z) is None


def test_a_request_beyond_the_training_tiles_is_reported_as_extrapolation(tmp_path):
    """The shipped generator asked for 30 buildings a hectare (above 99 % of its training tiles') is told so in
    the report and on the command line; a request like the training tiles' median is not."""
    import json

    import yaml
    from typer.testing import CliRunner

    from urbangen.cli import app

    def run(name: str, per_ha: float):
        params = tmp_path / f"{name}.yaml"
        params.write_text(yaml.safe_dump({"size_m": 256, "samples": 1, "seed": 1, "candidates": 2,
                                          "outputs": ["report"],
                                          "parameters": {"building_coverage": 0.2, "buildings_per_ha": per_ha}}))
        result = CliRunner().invoke(app, ["generate", str(params), "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        return json.loads((tmp_path / name / "report.json").read_text()), result.output

    beyond, said = run("beyond", 30.0)
    row = beyond["average"]["buildings_per_ha"]
    assert row["windows_outside_training"] == row["windows"] == 1 and row["training_tiles_below_request"] > 0.99
    assert "extrapolates" in said and "Outside the training tiles" in (tmp_path / "beyond" / "report.md").read_text()
    usual, said = run("usual", 2.0)
    assert usual["average"]["buildings_per_ha"]["windows_outside_training"] == 0
    assert 0.3 < usual["average"]["buildings_per_ha"]["training_tiles_below_request"] < 0.7
    assert "extrapolates" not in said


#: What the Copenhagen-like example file asks; the shipped generator's other parameters are left free.
_ASKED = ("intersection_density_per_km2", "major_road_share", "cycle_foot_share", "building_coverage",
          "buildings_per_ha", "open_space_share")


def test_free_parameters_are_what_the_nearest_real_tiles_have(small_tiles):
    """Real Østerbro and Kennesaw tiles asked for the example file's six parameters: each free parameter,
    filled from the shipped calibration's nearest training tiles, lies nearer the tile's own value than the
    training mean does (mean absolute standardized error 0.42 against 0.66). Tiles whose request is a fitting
    tile's own (city-64 trained on parts of both cities; 44 % of them) are left out: each would find itself.
    The neighbours are those a brute-force NumPy search finds among the tiles that know the free parameter."""
    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.common import read_real
    from urbangen.generate.imputation import NEIGHBOURS, impute_free, known_requests
    from urbangen.generate.selection import shipped_calibration
    from urbangen.pretrained import load_shipped

    model = load_shipped("city-64")
    calibration = shipped_calibration(model)
    names = list(model.spec.parameter_names)
    data = open_dataset(small_tiles)
    real = read_real(data, np.arange(len(data.tiles)), tuple(names))
    asked = [names.index(p) for p in _ASKED]
    free = [j for j in range(len(names)) if j not in asked]
    known = known_requests(calibration)
    pool = np.flatnonzero(known[:, asked].all(axis=1))
    fitted = calibration.requests[pool][:, asked]
    z_all = model.spec.scaler.transform(np.nan_to_num(real.parameters), dtype=np.float64)[:, asked]
    own = np.array([np.sqrt(((fitted - z) ** 2).sum(axis=1)).min() < 1e-3 for z in z_all])
    rows = np.flatnonzero(np.isfinite(real.parameters).all(axis=1) & ~own)
    assert len(rows) > 100
    fields = np.full((len(rows), 1, len(names)), np.nan)
    fields[:, 0, asked] = real.parameters[np.ix_(rows, asked)]
    filled = impute_free(fields, names, model.spec.scaler, calibration)[:, 0]
    np.testing.assert_array_equal(filled[:, asked], real.parameters[np.ix_(rows, asked)])
    std = np.asarray(model.spec.scaler.std)[free]
    mean = np.asarray(model.spec.scaler.mean)[free]
    truth = real.parameters[np.ix_(rows, free)]
    imputed_error = np.mean(np.abs(filled[:, free] - truth) / std)
    mean_error = np.mean(np.abs(mean - truth) / std)
    assert imputed_error < 0.75 * mean_error, (imputed_error, mean_error)
    # One request against a brute-force search: the mean over the nearest tiles that know each parameter.
    z = np.round((fields[0, 0, asked] - np.asarray(model.spec.scaler.mean)[asked])
                 / np.asarray(model.spec.scaler.std)[asked], 3)
    for j in free:
        candidates = pool[known[pool, j]]
        distance = ((calibration.requests[candidates][:, asked] - z) ** 2).sum(axis=1)
        expected = calibration.requests[candidates[np.argsort(distance, kind="stable")[:NEIGHBOURS]], j].mean()
        np.testing.assert_allclose((filled[0, j] - model.spec.scaler.mean[j]) / model.spec.scaler.std[j], expected,
                                   atol=1e-9)


def test_a_request_without_a_calibration_leaves_free_parameters_free():
    """A model of one's own has no calibration: its free parameters stay NaN (asked as the training mean)."""
    from urbangen.generate.imputation import impute_free

    fields = np.array([[[0.2, np.nan]]])
    scaler = SimpleNamespace(mean=(0.1, 3.0), std=(0.1, 1.0))
    np.testing.assert_array_equal(impute_free(fields, ["building_coverage", "buildings_per_ha"], scaler, None),
                                  fields)
