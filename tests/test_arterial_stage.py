"""The arterial stage: coarse windows cut from real tiles, lines redrawn finer, chained before the street stage."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
import shapely
from scipy import ndimage
from skimage.measure import block_reduce

from data_pipeline.coarsen import coarsen_dataset, tile_windows
from data_pipeline.dataset import open_dataset
from data_pipeline.errors import InvalidValueError
from urbangen.upscale import upscale_lines


@pytest.fixture(scope="module")
def coarse(small_tiles, tmp_path_factory):
    """Windows of 4 x 4 real Kennesaw and Østerbro tiles, all but one tile allowed."""
    source = open_dataset(small_tiles)
    left_out = int(np.flatnonzero(source.tiles["city"] == "kennesaw")[40])
    allowed = np.setdiff1d(np.arange(len(source)), [left_out])
    out = coarsen_dataset(source, tmp_path_factory.mktemp("coarse") / "arterials", tile_indices=allowed, factor=4,
                          window_tiles=4, channels=("major_roads", "minor_roads"), provenance={"test": True})
    return source, open_dataset(out), left_out


def _full_windows(tiles) -> int:
    """How many 4 x 4 blocks of tiles there are: an occupancy grid per city, summed by a 4 x 4 box filter."""
    n = 0
    for _, city in tiles.groupby("city"):
        size = city["x1"].iloc[0] - city["x0"].iloc[0]
        col = ((city["x0"] - city["x0"].min()) / size).round().astype(int).to_numpy()
        row = ((city["y0"] - city["y0"].min()) / size).round().astype(int).to_numpy()
        grid = np.zeros((row.max() + 4, col.max() + 4))
        grid[row, col] = 1
        n += int((ndimage.correlate(grid, np.ones((4, 4)), mode="constant", origin=(-2, -2)) == 16).sum())
    return n


def test_windows_cover_only_allowed_tiles_and_pool_their_pixels(coarse):
    source, ds, left_out = coarse
    allowed = source.tiles.drop(index=left_out)
    assert len(ds) == _full_windows(allowed) > 20
    assert ds.meters_per_pixel == 16.0 and ds.tile_px == 64 and ds.channels == ["major_roads", "minor_roads"]
    gone = shapely.box(*source.tiles.loc[left_out, ["x0", "y0", "x1", "y1"]]).centroid
    boxes = shapely.box(*ds.tiles[["x0", "y0", "x1", "y1"]].to_numpy().T)
    assert not shapely.contains(boxes, gone).any()
    src = [source.channels.index(c) for c in ("major_roads", "minor_roads")]
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ds), 6, replace=False):
        row = ds.tiles.iloc[i]
        assert row["x1"] - row["x0"] == row["y1"] - row["y0"] == 1024
        # The window put together from its tiles' bounds, pooled by skimage.
        inside = source.tiles[(source.tiles["city"] == row["city"]) & (source.tiles["x0"] >= row["x0"])
                              & (source.tiles["x1"] <= row["x1"]) & (source.tiles["y0"] >= row["y0"])
                              & (source.tiles["y1"] <= row["y1"])]
        assert len(inside) == 16
        mosaic = np.zeros((256, 256, 2), np.uint8)
        for j, tile in inside.iterrows():
            r, c = int((row["y1"] - tile["y1"]) / 4), int((tile["x0"] - row["x0"]) / 4)
            mosaic[r:r + 64, c:c + 64] = source.read_tile(j)[..., src]
        np.testing.assert_array_equal(ds.read_tile(i), block_reduce(mosaic, (4, 4, 1), np.max))
        for p in ("major_road_density_km_per_km2", "building_coverage", "intersection_density_per_km2"):
            assert row[p] == pytest.approx(inside[p].mean(), rel=1e-9)


def test_coarsen_says_what_is_wrong(small_tiles, tmp_path):
    source = open_dataset(small_tiles)
    with pytest.raises(InvalidValueError, match="not in"):
        coarsen_dataset(source, tmp_path / "a", tile_indices=range(len(source)), factor=4, window_tiles=4,
                        channels=("highways",), provenance={})
    with pytest.raises(InvalidValueError, match="no 4 x 4 window"):
        coarsen_dataset(source, tmp_path / "b", tile_indices=range(3), factor=4, window_tiles=4,
                        channels=("major_roads",), provenance={})
    overlapping = dataclasses.replace(source, manifest={**source.manifest,
                                                        "tiling": {**source.manifest["tiling"], "stride_px": 32}})
    with pytest.raises(InvalidValueError, match="overlap"):
        coarsen_dataset(overlapping, tmp_path / "c", tile_indices=range(len(source)), factor=4, window_tiles=4,
                        channels=("major_roads",), provenance={})
    assert not any((tmp_path / d).exists() for d in "abc")
    assert tile_windows(source.tiles.iloc[:0], 4) == []


def _distances(points: np.ndarray, line: shapely.LineString) -> np.ndarray:
    return shapely.distance(shapely.points(points), line)


@pytest.mark.parametrize("coords", [[(2, 60), (61, 5)], [(0, 20), (30, 40), (63, 38)]])
def test_upscaled_lines_follow_the_coarse_line_at_the_road_width(coords):
    """A line burnt into a coarse grid, redrawn 4x finer: it stays on the line, covers all of it, is one piece
    about as wide as asked, and reaches the grid's edge where the line left it."""
    f, width = 4, 3.0
    line = shapely.LineString(np.asarray(coords, float) + 0.5)  # coarse pixel coordinates, x = column
    rr, cc = np.mgrid[0:64, 0:64]
    centres = np.stack([cc.ravel() + 0.5, rr.ravel() + 0.5], axis=1)
    coarse = (_distances(centres, line) <= 0.75).reshape(64, 64).astype(np.uint8)
    fine = upscale_lines(coarse[..., None], f, width)[..., 0]
    assert fine.shape == (256, 256)
    fine_line = shapely.affinity.scale(line, f, f, origin=(0, 0))
    r, c = np.nonzero(fine)
    drawn = np.stack([c + 0.5, r + 0.5], axis=1)
    # Within a coarse pixel of it: the skeleton wanders inside the burnt line, and bends are rounded off.
    assert _distances(drawn, fine_line).max() <= width / 2 + f
    along = [fine_line.interpolate(d) for d in np.linspace(f, fine_line.length - f, 200)]
    near = shapely.distance(shapely.points([(p.x, p.y) for p in along]),
                            shapely.MultiPoint(drawn))
    assert near.max() <= 0.75 * f
    assert ndimage.label(fine, structure=np.ones((3, 3)))[1] == 1
    assert 0.7 < fine.sum() / (fine_line.length * width) < 1.4
    if coords[0][0] == 0:
        assert fine[:, 0].any()  # the line left the coarse grid at its west edge: so does the redrawn one


def test_a_later_stage_keeps_off_the_channels_an_earlier_stage_drew():
    """The street stage's own major-road pixels become minor roads where the arterial stage drew none."""
    from urbangen.inference import merge_stage

    arterial = np.zeros((1, 4, 4), np.uint8)
    arterial[0, 1] = 1  # a major road along row 1
    drawn, out = {}, {}
    merge_stage(drawn, out, {"major_roads": arterial}, {"major_roads": arterial.astype(np.float32)})
    streets_major = np.zeros((1, 4, 4), np.uint8)
    streets_major[0, :, 2] = 1  # its own major road down column 2
    streets_minor = np.zeros((1, 4, 4), np.uint8)
    streets_minor[0, 3, 0] = 1
    merge_stage(drawn, out, {"major_roads": streets_major, "minor_roads": streets_minor},
                {"major_roads": streets_major.astype(np.float32), "minor_roads": streets_minor.astype(np.float32)})
    np.testing.assert_array_equal(drawn["major_roads"], arterial)
    expected_minor = streets_minor.copy()
    expected_minor[0, [0, 2, 3], 2] = 1  # column 2, but not where it crosses the arterial
    np.testing.assert_array_equal(drawn["minor_roads"], expected_minor)
    np.testing.assert_array_equal(out["minor_roads"], expected_minor.astype(np.float32))


def test_a_chain_takes_a_coarser_stage_only_when_it_can_redraw_it():
    from data_pipeline.errors import RunSpecError
    from urbangen.footprints import rectangular_stage
    from urbangen.inference import GeneratorChain
    from urbangen.pretrained import read_model, shipped_file
    from urbangen.specks import speckless_stage

    arterials, streets, buildings = (read_model(shipped_file(f"city_{name}_64.msgpack"))
                                     for name in ("arterials", "streets", "buildings"))
    chain = GeneratorChain.of("three", (arterials, streets, buildings))
    assert [chain.factor(s) for s in chain.stages] == [4, 1, 1]
    assert chain.spec.output_channels == ("major_roads", "minor_roads", "cycle_foot", "buildings", "open_space",
                                          "water")
    assert (chain.spec.tile_px, chain.spec.meters_per_pixel) == (64, 4.0)
    # Around a given street network the buildings stage draws alone, as a chain given the streets; with one
    # candidate exactly what the stage draws itself, its footprints redrawn as rectangles.
    around = chain.around_given()
    assert around.stages == (buildings,) and around.spec.input_channels == ("major_roads", "minor_roads",
                                                                             "cycle_foot")
    assert around.spec.output_channels == buildings.spec.output_channels == ("buildings", "open_space", "water")
    streets_given = (np.random.default_rng(0).random((2, 64, 64, 3)) < 0.05).astype(np.uint8)
    z = np.zeros((2, 64, 64, len(around.spec.parameter_names)), np.float32)
    key = jax.random.key(0)
    drawn = buildings.generate_tiles(z[..., around.columns(buildings)], jax.random.fold_in(key, 0), streets_given)
    given = {c: streets_given[..., i] for i, c in enumerate(("major_roads", "minor_roads", "cycle_foot"))}
    np.testing.assert_array_equal(around.generate_tiles(z, key, streets_given),
                                  rectangular_stage(*speckless_stage(drawn, None, buildings.spec), buildings.spec,
                                                    given)[0])
    with pytest.raises(RunSpecError, match="given channels must be passed"):
        around.generate_tiles(z, key)
    from urbangen.generate.sampler import generate_layout

    with pytest.raises(RunSpecError, match="given channels must be passed"):
        generate_layout(around, np.zeros((64, 64, len(around.spec.parameter_names))), key)
    with pytest.raises(RunSpecError, match="which the chain is given"):
        GeneratorChain.of("streets given twice", (streets, buildings), ("minor_roads",))

    def changed(model, **spec):
        return dataclasses.replace(model, spec=model.spec.model_copy(update=spec))

    # Each stage is asked in its own standardization: the arterial stage's scaler was fitted on 1 km windows.
    values = np.array([[4.0, 0.2, 60.0]])
    asked = np.full((1, len(chain.spec.parameter_names)), np.nan)
    asked[:, chain.columns(arterials)] = values
    np.testing.assert_allclose(chain.stage_maps(arterials, chain.spec.scaler.transform(asked)),
                               arterials.spec.scaler.transform(values), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chain.stage_maps(streets, chain.spec.scaler.transform(asked)),
                               streets.spec.scaler.transform(asked[:, chain.columns(streets)]), atol=1e-6)

    # Single tiles are drawn by the stages at the chain's scale, with the keys they had without the arterial stage.
    z = np.zeros((2, 64, 64, len(chain.spec.parameter_names)), np.float32)
    two = GeneratorChain.of("two", (streets, buildings))
    names = list(two.spec.parameter_names)
    np.testing.assert_array_equal(chain.generate_tiles(z, jax.random.key(5)),
                                  two.generate_tiles(z[..., [chain.spec.parameter_names.index(p) for p in names]],
                                                     jax.random.key(5)))

    with pytest.raises(RunSpecError, match="come first"):
        GeneratorChain.of("late", (streets, arterials, buildings))
    for bad in (changed(arterials, meters_per_pixel=10.0), changed(arterials, tile_px=8),
                changed(arterials, sampling="threshold"), changed(arterials, input_channels=("water",))):
        with pytest.raises(RunSpecError, match="another scale|draws around"):
            GeneratorChain.of("bad", (bad, streets, buildings))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # remove_small_holes' threshold keyword is being renamed
def test_small_rings_are_filled_before_the_centre_lines_are_traced():
    """Against skimage: holes under the size filled, pieces of background cut by the mask's edge kept."""
    from skimage.morphology import remove_small_holes

    from urbangen.upscale import SMALL_HOLE_PX, _fill_small_holes

    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = ndimage.binary_opening(rng.random((64, 64)) < 0.7)
        expected = remove_small_holes(np.pad(mask, 1), SMALL_HOLE_PX - 1)[1:-1, 1:-1]  # the pad joins edge pieces
        np.testing.assert_array_equal(_fill_small_holes(mask, SMALL_HOLE_PX), expected)
    ring = np.zeros((40, 40), bool)
    ring[10:16, 10:16] = True
    ring[12:14, 12:14] = False  # a 32 m ring at 16 m/px: traced as one line, not a loop
    lines = upscale_lines(ring[..., None].astype(np.uint8), 4, 3.0)[..., 0]
    assert ndimage.label(~lines.astype(bool))[1] == 1
