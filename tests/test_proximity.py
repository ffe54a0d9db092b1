"""Street proximity fields (the street stage's target) and their decoding into lines."""

from __future__ import annotations

from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from urbangen.proximity import (
    CORE_LEVEL,
    LINE_PX,
    PATH_LEVELS,
    PATH_SPUR_PX,
    PROXIMITY_PX,
    RADIUS_PX,
    SKELETON_LEVEL,
    SPUR_PX,
    THROUGH_ON_STREET,
    THROUGH_PX,
    decode_proximity,
    join_gaps,
    meet_streets,
    proximity_field,
    run_through,
    tidy_roads,
)

STREETS = ("major_roads", "minor_roads", "cycle_foot")


@pytest.fixture(scope="module")
def street_tiles(small_tiles) -> np.ndarray:
    """The street channels of real Østerbro and Kennesaw tiles, (N, 64, 64, 3) uint8."""
    from data_pipeline.dataset import open_dataset

    ds = open_dataset(small_tiles)
    tiles = ds.read_tiles(np.arange(len(ds)))[..., [ds.channels.index(c) for c in STREETS]]
    assert tiles.sum() > 10_000
    return tiles


def test_the_field_is_the_distance_to_the_nearest_street(street_tiles):
    """Against scipy's exact Euclidean distance transform, in float64, on real tiles."""
    field = np.asarray(proximity_field(jnp.asarray(street_tiles)))
    checked = 0
    for tile, got in zip(street_tiles, field):
        for c in range(tile.shape[-1]):
            if not tile[..., c].any():
                assert not got[..., c].any()
                continue
            d = ndimage.distance_transform_edt(tile[..., c] == 0)
            want = np.where(d <= RADIUS_PX, np.exp(-d / PROXIMITY_PX), 0.0)
            np.testing.assert_allclose(got[..., c], want, atol=1e-6)
            checked += 1
    assert checked > 50


def test_a_real_field_decodes_to_its_streets_and_at_most_a_pixel_or_two_beyond(street_tiles):
    field = np.asarray(proximity_field(jnp.asarray(street_tiles)))
    decoded = decode_proximity(field).astype(bool)
    streets = street_tiles.astype(bool)
    assert not (streets & ~decoded).any()  # every street pixel is kept (its core)
    extra = decoded & ~streets
    assert extra.sum() <= 0.15 * streets.sum()  # 12 % on these tiles: stubs, and gaps of dotted paths filled
    # Extra pixels are centre-line stubs past street ends: within two pixels of a street (scipy's EDT).
    for b, c in zip(*np.nonzero(extra.any(axis=(1, 2)))):
        distance = ndimage.distance_transform_edt(~streets[b, ..., c])
        assert distance[extra[b, ..., c]].max() <= 2.0


def test_a_blurry_ridge_is_drawn_as_a_street_wide_line_broken_where_it_fades():
    """A wide soft line (what a VAE draws) becomes a centre line LINE_PX wide, absent where the field is low."""
    rows = np.arange(32, dtype=np.float64)[:, None]
    peak = np.full(40, 0.6)
    peak[22:25] = SKELETON_LEVEL - 0.05
    field = (peak[None, :] * np.exp(-np.abs(rows - 16) / 3.0))[None, :, :, None]
    layout = decode_proximity(field)[0, ..., 0]
    width = layout.sum(axis=0)
    assert np.median(width[width > 0]) == LINE_PX and width.max() <= LINE_PX + 1  # a hook at each end
    assert layout[15:17, 3:19].any(axis=0).all()  # unbroken where the ridge is high
    assert not layout[:, 21:26].any()  # broken where the ridge falls below the level
    assert set(np.nonzero(layout)[0]) <= {14, 15, 16, 17}  # on the ridge
    assert CORE_LEVEL > SKELETON_LEVEL


def _faint_paths(street_tiles: np.ndarray, n: int) -> np.ndarray:
    """Fields of ``n`` real tiles with cycle and foot paths, the paths' ridge lowered to 0.16 at the tile's left
    edge rising to 0.46 at its right, across the path levels: each level draws them from a column of its own."""
    tiles = street_tiles[street_tiles[..., 2].sum(axis=(1, 2)) > 100][:n]
    assert len(tiles) == n
    field = np.array(proximity_field(jnp.asarray(tiles.astype(np.float32))))
    field[..., 2] *= np.linspace(0.16, 0.46, 64)[None, None, :]
    return field


_STREET_SPEC = SimpleNamespace(sampling="proximity", output_channels=STREETS, tile_px=64)


def test_a_tiles_paths_are_decoded_at_the_level_its_scorer_rates_best(street_tiles):
    """The lower the path level, the more of a faint path is drawn, the roads as they were; each tile keeps
    the path level its scorer rates best (one wanting more paths, another fewer), the default on a tie."""
    from urbangen.inference import best_path_levels, deterministic_layout

    field = _faint_paths(street_tiles, 4)
    high = np.array([SKELETON_LEVEL, SKELETON_LEVEL, 0.36])
    assert 0 < decode_proximity(field, high)[..., 2].sum() < decode_proximity(field)[..., 2].sum()
    np.testing.assert_array_equal(decode_proximity(field, high)[..., :2], decode_proximity(field)[..., :2])

    default = deterministic_layout(field, _STREET_SPEC)
    levels = np.stack([deterministic_layout(field, _STREET_SPEC, path_level=level) for level in PATH_LEVELS])
    counts = levels[..., 2].sum(axis=(2, 3)).astype(int)  # (level, tile)
    assert (counts[np.argmin(PATH_LEVELS)] > counts[np.argmax(PATH_LEVELS)]).all(), counts

    def paths(stage, layouts, requested, seeds):  # more paths where asked for +1, fewer where -1
        return -requested[:, 0] * layouts[..., 2].sum(axis=(1, 2))

    stage = SimpleNamespace(spec=_STREET_SPEC)
    chosen = best_path_levels(stage, field, default, np.array([[1.0], [1.0], [-1.0], [-1.0]]), np.zeros(4), paths)
    for tile, best in enumerate([*np.argmax(counts[:, :2], axis=0), *np.argmin(counts[:, 2:], axis=0)]):
        np.testing.assert_array_equal(chosen[tile], levels[best, tile])
    tie = best_path_levels(stage, field, default, np.zeros((4, 1)), np.zeros(4), lambda *a: np.zeros(4))
    np.testing.assert_array_equal(tie, default)


def test_a_stitched_layouts_tiles_take_their_own_path_levels_meeting_in_a_ramp(street_tiles, monkeypatch):
    """Two real tiles side by side with faint paths, the left asking for more paths, the right for fewer:
    each grid tile's window is decoded whole at every path level and scored as a complete window, and the
    layout is decoded with each tile's best level, the two meeting in a ramp across their border (the roads
    at their default level: their own levels are the next test's)."""
    from urbangen.generate import sampler

    monkeypatch.setattr(sampler, "STITCHED_ROAD_LEVELS", (SKELETON_LEVEL,))
    monkeypatch.setattr(sampler, "LEVEL_STEPS_IN_CONTEXT", 0)  # the moves in context: a test of their own

    field = np.concatenate(list(_faint_paths(street_tiles, 2)), axis=1)  # (64, 128, 3)
    z = np.concatenate([np.ones((64, 64, 1)), -np.ones((64, 64, 1))], axis=1)
    seen = []

    def paths(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        seen.append((len(layouts), seeds, weighted, weights))
        return -requested[:, 0] * layouts[..., 2].sum(axis=(1, 2))

    layout = sampler._street_levelled(SimpleNamespace(spec=_STREET_SPEC), z, field, (8, paths), {})
    assert seen == [(2, None, True, sampler.PATH_LEVEL_WEIGHTS)] * len(sampler.STITCHED_PATH_LEVELS)
    ramp = 64 // 8  # the ramp's half-width
    whole = [sampler.deterministic_layout(field, _STREET_SPEC, stitched=True, path_level=level)
             for level in sampler.STITCHED_PATH_LEVELS]
    counts = np.array([[one[:, :64, 2].sum(), one[:, 64:, 2].sum()] for one in whole], int)  # (level, tile)
    most, fewest = whole[int(np.argmax(counts[:, 0]))], whole[int(np.argmin(counts[:, 1]))]
    assert counts[:, 1].min() < counts[0, 1] and counts[:, 0].max() > counts[0, 0]  # neither the default
    np.testing.assert_array_equal(layout[:, :64 - ramp, 2], most[:, :64 - ramp, 2])
    np.testing.assert_array_equal(layout[:, 64 + ramp:, 2], fewest[:, 64 + ramp:, 2])
    assert sampler._street_levelled(SimpleNamespace(spec=_STREET_SPEC), z[:32], field[:32], (8, paths), {}) is None


def test_a_stitched_layouts_tiles_take_their_own_road_levels(street_tiles, monkeypatch):
    """Two real tiles side by side with faint minor roads, the left asking for more road, the right for less:
    every pair of road and path levels is scored in each grid tile's window, and each tile's roads are those of
    the whole layout decoded at one pair, more than at the default levels on the left; on the right no more (the
    pairs drawing fewer break its network apart, and the guard keeps it whole)."""
    from urbangen.generate import sampler

    monkeypatch.setattr(sampler, "LEVEL_STEPS_IN_CONTEXT", 0)  # the moves in context: a test of their own
    tiles = street_tiles[street_tiles[..., 1].sum(axis=(1, 2)) > 300][:2]
    assert len(tiles) == 2
    field = np.array(proximity_field(jnp.asarray(tiles.astype(np.float32))))
    field[..., 1] *= np.linspace(0.16, 0.46, 64)[None, None, :]  # minor roads faint across the road levels
    field = np.concatenate(list(field), axis=1)  # (64, 128, 3)
    z = np.concatenate([np.ones((64, 64, 1)), -np.ones((64, 64, 1))], axis=1)
    seen = []

    def roads(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        seen.append(weights)
        return -requested[:, 0] * layouts[..., :2].sum(axis=(1, 2, 3))

    layout = sampler._street_levelled(SimpleNamespace(spec=_STREET_SPEC), z, field, (8, roads), {})
    pairs = [(road, path) for road in sampler.STITCHED_ROAD_LEVELS for path in sampler.STITCHED_PATH_LEVELS]
    assert seen == [sampler.PATH_LEVEL_WEIGHTS] * len(pairs)
    whole = [sampler.deterministic_layout(field, _STREET_SPEC, stitched=True, road_level=road, path_level=path)
             for road, path in pairs]
    ramp = 64 // 8
    left, right = (slice(None, 64 - ramp), slice(64 + ramp, None))
    assert any(np.array_equal(layout[:, left, :2], one[:, left, :2]) for one in whole)
    assert any(np.array_equal(layout[:, right, :2], one[:, right, :2]) for one in whole)
    assert layout[:, left, :2].sum() > whole[0][:, left, :2].sum()
    assert layout[:, right, :2].sum() <= whole[0][:, right, :2].sum()
    assert min(one[:, right, :2].sum() for one in whole) < whole[0][:, right, :2].sum()  # fewer were on offer


def test_a_stitched_tiles_levels_move_a_step_where_its_window_beside_its_neighbour_measures_nearer(street_tiles,
                                                                                                  monkeypatch):
    """Two real tiles side by side with faint paths, each asking for a number of path pixels. Chosen alone, a
    tile's level is the one at which the layout decoded whole measures nearest in its window; beside its
    neighbour, the levels meeting in a ramp, the window measures otherwise. The levels then move by a step where
    a window measures nearer as the layout ends: the windows' error falls, and the layout is the ramped decode of
    levels a step from those chosen alone (built here from the decoder and scipy's filter)."""
    from urbangen.generate import sampler

    monkeypatch.setattr(sampler, "STITCHED_ROAD_LEVELS", (SKELETON_LEVEL,))
    field = np.concatenate(list(_faint_paths(street_tiles, 2)), axis=1)  # (64, 128, 3)
    asked = (130, 340)  # path pixels, left and right
    z = np.concatenate([np.full((64, 64, 1), asked[0]), np.full((64, 64, 1), asked[1])], axis=1)

    def path_pixels(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        return np.abs(layouts[..., 2].sum(axis=(1, 2)) - requested[:, 0])

    def error(layout: np.ndarray) -> int:
        return sum(abs(int(layout[:, 64 * k:64 * (k + 1), 2].sum()) - a) for k, a in enumerate(asked))

    levels = sorted(sampler.STITCHED_PATH_LEVELS)

    def ramped(left: int, right: int) -> np.ndarray:
        paths = np.repeat(np.float32([levels[left], levels[right]]), 64)[None, :].repeat(64, axis=0)
        return sampler.deterministic_layout(field, _STREET_SPEC, stitched=True,
                                            path_level=ndimage.uniform_filter(paths, 16, mode="nearest"),
                                            road_level=np.full((64, 128), SKELETON_LEVEL, np.float32))

    whole = np.array([[one[:, :64, 2].sum(), one[:, 64:, 2].sum()] for one in
                      (sampler.deterministic_layout(field, _STREET_SPEC, stitched=True, path_level=level)
                       for level in sampler.STITCHED_PATH_LEVELS)], int)  # (level, tile), the default first
    alone = [levels.index(sampler.STITCHED_PATH_LEVELS[i]) for i in np.argmin(np.abs(whole - asked), axis=0)]
    stage = SimpleNamespace(spec=_STREET_SPEC)
    monkeypatch.setattr(sampler, "LEVEL_STEPS_IN_CONTEXT", 0)
    before = sampler._street_levelled(stage, z, field, (8, path_pixels), {})
    np.testing.assert_array_equal(before, ramped(*alone))
    monkeypatch.setattr(sampler, "LEVEL_STEPS_IN_CONTEXT", 1)
    after = sampler._street_levelled(stage, z, field, (8, path_pixels), {})
    assert error(after) < error(before)
    steps = [(alone[0] + a, alone[1] + b) for a in (-1, 0, 1) for b in (-1, 0, 1)
             if (a, b) != (0, 0) and 0 <= alone[0] + a < len(levels) and 0 <= alone[1] + b < len(levels)]
    assert any(np.array_equal(after, ramped(*pair)) for pair in steps)


def test_a_stitched_tiles_path_level_that_breaks_its_network_apart_is_not_taken(monkeypatch):
    """Two tiles under one road, each with a faint path, both tiles' scorers wanting fewer paths: the left's path
    joins the road to a second road, the right's is a spur. A level above the paths' ridge decodes both away, and
    the left's window falls into two pieces: the right tile takes that level, the left keeps its path, unless
    the tolerance lets a window lose its largest piece."""
    from urbangen.generate import sampler

    lines = np.zeros((1, 64, 128, 3), np.float32)
    lines[0, 8, :, 1] = lines[0, 56, :64, 1] = 1  # minor roads: one across both tiles, one across the left
    lines[0, 9:56, 30, 2] = 1  # left: a path from one road to the other
    lines[0, 9:50, 96, 2] = 1  # right: a path off the road, ending
    field = np.array(proximity_field(jnp.asarray(lines)))[0]
    field[..., 2] *= 0.33  # the paths' ridge between the default level and the highest

    def paths(stage, layouts, requested, seeds, *, weighted=None, weights=None):  # fewer paths score better
        return layouts[..., 2].sum(axis=(1, 2)).astype(float)

    stage, z = SimpleNamespace(spec=_STREET_SPEC), np.zeros((64, 128, 1))
    layout = sampler._street_levelled(stage, z, field, (8, paths), {})
    assert layout[:, :64, 2].sum() > 40 and layout[:, 64:, 2].sum() == 0
    monkeypatch.setattr(sampler, "PATH_LEVEL_PIECE_TOLERANCE", 1.0)
    assert sampler._street_levelled(stage, z, field, (8, paths), {})[..., 2].sum() == 0


def test_bilinear_latents_have_no_cell_borders():
    """Bilinear upsampling keeps a constant latent constant and steps between cells by at most one cell's share."""
    import jax

    from urbangen.models.pix2pix import upsample_latent

    z = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    nearest, bilinear = upsample_latent(z, 8, "nearest"), upsample_latent(z, 8, "bilinear")
    assert nearest.shape == bilinear.shape == (2, 64, 64, 3)
    np.testing.assert_allclose(upsample_latent(jnp.ones((1, 4, 4, 2)), 8, "bilinear"), 1.0, atol=1e-6)
    cell_step = float(jnp.abs(jnp.diff(z, axis=1)).max())
    assert float(jnp.abs(jnp.diff(bilinear, axis=1)).max()) <= cell_step / 8 + 1e-5
    assert float(jnp.abs(jnp.diff(nearest, axis=1)).max()) == pytest.approx(cell_step, rel=1e-5)
    with pytest.raises(ValueError, match="latent upsampling"):
        upsample_latent(z, 8, "cubic")


def test_a_proximity_vae_models_the_street_fields_and_decodes_them_to_streets(small_tiles, tmp_path):
    """A VAE street stage: Bernoulli likelihood of the fields, and its samples decode to 0/1 street layers."""
    import jax
    from conftest import load_config

    from urbangen.inference import load_run
    from urbangen.training.tasks import train
    from urbangen.training.vae import VAETask

    overrides = {"dataset": str(small_tiles), "vae.output_channels": STREETS, "vae.target": "proximity",
                 "sample_every": 0}
    config = load_config("vae", num_steps=3, **overrides)
    tiles = np.zeros((1, 64, 64, 9), np.uint8)
    task = VAETask(config, {"channels": [f"c{i}" for i in range(6)] + list(STREETS), "tile_px": 64,
                            "parameters": ["p"]})
    tiles[0, 10, :, 7] = 1  # one minor road along row 10
    field = np.asarray(task.target(jnp.asarray(tiles)))
    assert field.shape == (1, 64, 64, 3) and not field[..., [0, 2]].any()
    np.testing.assert_allclose(field[0, 10 - 2:10 + 3, 5, 1], np.exp(-np.abs(np.arange(-2, 3)) / PROXIMITY_PX),
                               rtol=1e-6)

    train(config, tmp_path)
    model = load_run(tmp_path)
    assert model.spec.sampling == "proximity" and model.spec.output_channels == STREETS
    n = len(model.spec.parameter_names)
    probs = model.generate_tiles(np.zeros((2, 64, 64, n), np.float32), jax.random.key(0))
    assert probs.shape == (2, 64, 64, 3) and 0.0 <= probs.min() and probs.max() <= 1.0
    layout = decode_proximity(probs)
    assert set(np.unique(layout)) <= {0, 1}


class _RandomLines:
    """A stand-in street VAE: each sample is one horizontal street at a random row, as a proximity field.

    Its latent is the row; it cannot move a latent to continue what is drawn (no gradient)."""

    def __init__(self):
        from types import SimpleNamespace

        self.spec = SimpleNamespace(kind="vae", sampling="proximity", tile_px=64, output_channels=("minor_roads",),
                                    latent_channels=0, latent_stride=1,
                                    scaler=SimpleNamespace(transform=lambda fields: fields))

    def fn(self, name):
        return {"latents": self._latents, "decode": self._decode, "continue_drawn": lambda z, *rest: z}[name]

    @staticmethod
    def _latents(key, n):
        import jax

        return np.asarray(jax.random.randint(key, (n, 1), 8, 56))

    @staticmethod
    def _decode(rows, params):
        mask = np.zeros((len(rows), 64, 64, 1), np.float32)
        mask[np.arange(len(rows)), np.asarray(rows)[:, 0], :, 0] = 1.0
        return np.asarray(proximity_field(jnp.asarray(mask)))

    def generate_tiles(self, maps, key, given=None, latent=None):
        return self._decode(self._latents(key, len(maps)), maps.mean(axis=(1, 2)))


def test_a_street_vaes_stitched_tiles_continue_their_neighbours_streets(monkeypatch):
    """Tiles chosen to agree with what is drawn under them join one street across the layout; drawn blindly,
    the blend of unrelated tiles breaks it."""
    import jax
    from scipy import ndimage as ndi

    from urbangen.generate import sampler

    def longest_street(candidates: int) -> int:
        monkeypatch.setattr(sampler, "CANDIDATES", candidates)
        field = sampler.generate_layout(_RandomLines(), np.zeros((64, 256, 1), np.float32), jax.random.key(3))
        labels, n = ndi.label(decode_proximity(field[None])[0, ..., 0], structure=np.ones((3, 3)))
        return max(np.ptp(np.nonzero(labels == i)[1]) + 1 for i in range(1, n + 1)) if n else 0

    assert longest_street(32) == 256
    assert longest_street(1) < 256


def test_a_stitched_layouts_street_windows_are_scored_against_the_fit_alone():
    """A window of a stitched street layout is scored untidied (its streets broken where its neighbours
    carry them on): its scorer gets no tile seeds, so no target draws a real tile's scatter (most real
    tiles have no dead end, and such targets kept the windows with the fewest streets), and its parameters
    weigh the same, but in a grid tile's window as the layout ends (drawn again, every street of its window
    drawn). The scores still choose: a scorer preferring streets low in a window moves every window's street
    down."""
    import jax

    from urbangen.generate import sampler

    seen = []

    def lowest_street(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        seen.append((seeds, weighted))
        return -np.array([np.nonzero(layout.any(axis=(1, 2)))[0].max() for layout in layouts], float)

    z = np.zeros((64, 128, 1), np.float32)
    chosen = sampler._blend(_RandomLines(), z, jax.random.key(3), None, 16, (8, lowest_street))
    plain = sampler._blend(_RandomLines(), z, jax.random.key(3), None, 16)
    assert seen and all(seeds is None for seeds, _ in seen)
    # The three windows' first draws (the calls of the test of tiles across a grid border, below); then the two
    # grid tiles' candidates, moved candidates and the tiles they were, in their complete windows.
    assert [weighted for _, weighted in seen] == [False] * 7 + [True] * 6
    row = lambda field: np.argmax(field[..., 0].mean(axis=1))  # noqa: E731
    assert row(chosen) > row(plain)


def _pieces(layout: np.ndarray) -> int:
    return ndimage.label(layout.any(axis=-1), structure=np.ones((3, 3)))[1]


def test_joins_close_gaps_across_real_streets_and_leaves_wide_ones(street_tiles):
    """A real street network cut by a band across it is joined again when the band is at most the gap, in the
    channel of the street it cut; a wider band, or a network in one piece, is left as it is."""
    from shapely.geometry import MultiPoint

    whole = [t for t in street_tiles if _pieces(t) == 1 and t.sum() > 150]
    assert len(whole) >= 5
    assert all(np.array_equal(join_gaps(t, 12), t) for t in whole)  # nothing to join
    for tile in whole[:5]:
        col = int(np.argmax(tile.any(axis=(0, 2)).cumsum() >= tile.any(axis=(0, 2)).sum() / 2))  # mid network
        for band, joinable in ((4, True), (8, True), (20, False)):
            cut = tile.copy()
            cut[:, col:col + band] = 0
            if _pieces(cut) < 2:
                continue
            # shapely's distance between the cut's pieces, apart from what joining can reach: both sides of
            # the band are street, so the gap is the band or wider.
            labels, n = ndimage.label(cut.any(axis=-1), structure=np.ones((3, 3)))
            sides = [MultiPoint(np.argwhere(labels == i).astype(float)) for i in range(1, n + 1)]
            nearest = min(a.distance(b) for i, a in enumerate(sides) for b in sides[i + 1:])
            joined = join_gaps(cut, 12)
            assert np.all(joined >= cut)  # joining only adds
            if joinable and nearest <= 12:
                assert _pieces(joined) < n
                added = joined > cut
                assert added.any()
                # Each join is drawn in one channel: two joins of different channels may cross (a few pixels
                # set in both, seen since footways are drawn a pixel wide), but no join is set in two.
                for c in range(added.shape[-1]):
                    labels_c, n_c = ndimage.label(added[..., c], structure=np.ones((3, 3)))
                    for k in range(1, n_c + 1):
                        join = labels_c == k
                        assert (added[join].sum(axis=-1) > 1).mean() < 0.5
            if not joinable:
                assert nearest > 12 or _pieces(joined) < n
                if nearest > 12:
                    assert np.array_equal(joined, cut)


def test_a_decoded_layout_decodes_to_itself(street_tiles):
    """What a stitched proximity layout returns (0/1, decoded) is left as it is by decoding it once more."""
    assert np.array_equal(decode_proximity(street_tiles.astype(np.float32)), street_tiles)


def test_joins_take_the_shortest_gaps_first_and_close_each_once():
    """Three pieces of one street in a row, 5 and 9 pixels apart: two joins make one piece, none is doubled,
    each drawn LINE_PX wide; at a 6-pixel limit only the first gap closes."""
    layout = np.zeros((1, 32, 64, 2), np.uint8)
    layout[0, 15:17, 2:20, 1] = 1
    layout[0, 15:17, 25:40, 1] = 1   # 5 px after the first piece
    layout[0, 15:17, 49:60, 1] = 1   # 9 px after the second
    joined = join_gaps(layout, 12)
    assert _pieces(joined[0]) == 1
    assert joined[..., 0].sum() == 0  # the street's own channel
    added = np.argwhere((joined > layout)[0, ..., 1])
    # Only at the gaps (a join starts on the centre line, a pixel or two inside a piece's end)...
    assert set(range(20, 25)) | set(range(40, 49)) <= set(added[:, 1]) <= set(range(17, 28)) | set(range(37, 52))
    assert added[:, 0].min() >= 14 and added[:, 0].max() <= 17  # ...along the street...
    assert np.all(joined[0, :, 20:49, 1].sum(axis=0) >= LINE_PX)  # ...drawn LINE_PX wide
    assert _pieces(join_gaps(layout, 6)[0]) == 2


def _free_ends(layout: np.ndarray, roads: list[int]) -> list[tuple[int, int]]:
    """Free ends of the roads' skeleton at least 2 px inside the tile (what the measuring path counts)."""
    from urbangen.proximity import skeleton_paths

    degree: dict[tuple[int, int], int] = {}
    for path in skeleton_paths(layout[..., roads].any(axis=-1)):
        for end in (path[0], path[-1]):
            degree[end] = degree.get(end, 0) + 1
    h, w = layout.shape[:2]
    return sorted(e for e, n in degree.items() if n == 1 and min(e[0], e[1], h - 1 - e[0], w - 1 - e[1]) >= 2)


def test_tidying_drops_floating_roads_runs_ends_to_the_edge_and_cuts_spurs():
    """On a drawn network whose every defect is known: a road fleck and a cycle path fleck touching no edge
    go, a road stopping 3 px short of the edge runs on to it, a 5 px spur off a through road goes; a
    dead end longer than SPUR_PX, the through road and a cycle path off it stay as drawn."""
    layout = np.zeros((1, 64, 64, 3), np.uint8)  # major, minor, cycle_foot
    layout[0, 30:32, :, 1] = 1           # through road, edge to edge
    layout[0, 32:37, 40:42, 1] = 1       # spur: 5 px below it
    layout[0, 32:59, 15:17, 1] = 1       # a dead end 27 px long
    layout[0, 3:30, 55:57, 0] = 1        # a major road stopping 3 px short of the top edge
    layout[0, 10:12, 20:28, 1] = 1       # a fleck of road
    layout[0, 52:54, 40:46, 2] = 1       # a fleck of cycle path
    layout[0, 32:45, 30:32, 2] = 1       # a cycle path off the through road
    assert len(_free_ends(layout[0], [0, 1])) == 5  # fleck (2), spur, dead end, major road short of the edge
    tidy = tidy_roads(layout, [0, 1], [2])[0]
    assert not tidy[10:12, 20:28].any()
    assert not tidy[34:37, 40:42].any()
    assert tidy[0, 55:57, 0].any() and tidy[:3, 55:57, 0].any(axis=1).all()  # run on to row 0...
    assert not tidy[:3, 55:57, 1:].any()  # ...in its own channel
    assert not tidy[52:54, 40:46].any()
    assert tidy[32:45, 30:32, 2].all()
    kept = layout[0].copy()
    kept[10:12, 20:28] = 0
    kept[52:54, 40:46] = 0
    kept[33:37, 40:42] = 0  # the spur's pixels nearest to the junction stay (too short for a skeleton's end)
    kept[:3, 55:57] = 0
    tidy_but_run = tidy.copy()
    tidy_but_run[:3, 55:57] = 0
    assert np.array_equal(tidy_but_run[32:], kept[32:])  # through road, dead end and cycle path as drawn
    assert np.array_equal(tidy_but_run[:32, :50], kept[:32, :50])
    ends = _free_ends(tidy, [0, 1])
    assert len(ends) == 1 and 56 <= ends[0][0] <= 58 and ends[0][1] in (15, 16)  # the long dead end alone
    assert np.array_equal(tidy_roads(tidy[None], [0, 1], [2])[0], tidy)  # nothing left to tidy

    # A piece of road that reaches the edge through a cycle path is part of the network, not a fleck.
    linked = np.zeros((1, 64, 64, 3), np.uint8)
    linked[0, 20:22, :, 1] = 1
    linked[0, 40:42, 20:40, 1] = 1      # a road reaching no edge by itself...
    linked[0, 40:42, 40:, 2] = 1        # ...on a cycle path that runs on to the edge
    assert np.array_equal(tidy_roads(linked, [0, 1], [2]), linked)
    assert not tidy_roads(linked, [0, 1])[0, 40:42, 20:40].any()  # without its paths, a fleck


def test_a_road_spur_ending_on_a_path_under_path_spur_px_becomes_path():
    """Off a through road, spurs 27 px long (over SPUR_PX, under PATH_SPUR_PX): one ending on a cycle path
    that runs to the edge is drawn as path, one ending on nothing stays road; a 40 px spur ending on a path
    stays road."""
    assert SPUR_PX <= 27 < PATH_SPUR_PX < 40
    layout = np.zeros((1, 64, 64, 3), np.uint8)  # major, minor, cycle_foot
    layout[0, 0:2, :, 1] = 1            # through road along the top edge
    layout[0, 2:29, 10:12, 1] = 1       # spur 27 px...
    layout[0, 28:30, 0:12, 2] = 1       # ...ending on a path that runs to the left edge
    layout[0, 2:29, 30:32, 1] = 1       # spur 27 px, ending on nothing
    layout[0, 2:42, 50:52, 1] = 1       # spur 40 px...
    layout[0, 41:43, 50:64, 2] = 1      # ...ending on a path that runs to the right edge
    tidy = tidy_roads(layout, [0, 1], [2])[0]
    assert tidy[6:29, 10:12, 2].all() and not tidy[6:29, 10:12, :2].any()  # drawn as path past the junction
    assert np.array_equal(tidy[:, 20:], layout[0, :, 20:])  # the others as drawn
    assert np.array_equal(tidy[28:30, :10], layout[0, 28:30, :10])


def test_a_road_runs_through_a_path_to_the_road_it_points_at():
    """A road stopping inside a cycle path that carries it 14 px on to where the road starts again runs through
    it (in its own channel); across 14 px of empty ground, a path over half of them (under THROUGH_ON_STREET),
    or 20 px of path (over THROUGH_PX), it does not."""
    assert 15 <= THROUGH_PX < 20 and THROUGH_ON_STREET > 0.6
    layout = np.zeros((4, 64, 64, 3), np.uint8)  # major, minor, cycle_foot
    for tile, gap, path in zip(layout, (14, 14, 20, 14), (True, False, True, "half")):
        tile[30:32, 0:20, 1] = 1             # a road from the left edge, stopping at column 20
        tile[30:32, 20 + gap:, 1] = 1        # starting again ``gap`` px on, to the right edge
        tile[10:12, :, 1] = 1                # a parallel road (every pieces reaches the edge)
        if path is True:
            tile[29:33, 14:40, 2] = 1        # a path along the road, through the gap
        elif path == "half":
            tile[29:33, 14:27, 2] = 1        # a path along the road, over the gap's first half
    out = run_through(layout, [0, 1], [2])
    assert out[0, 29:33, 20:34, 1].any(axis=0).all()  # every column of the gap is road
    assert np.array_equal(out[0, ..., [0, 2]], layout[0, ..., [0, 2]])
    assert np.array_equal(out[1:], layout[1:])


def test_tidying_leaves_a_real_network_nearly_as_it_is(street_tiles):
    """Real Østerbro and Kennesaw roads are windows on connected networks, run to the tile's edge and have
    few short spurs: tidying changes under 2 % of their road pixels (it is for generated layouts), and
    changes under 2 % of their cycle and foot path pixels (removed, 1.3 %: footways that meet no street inside
    the tile; added, only where a road was)."""
    roads = street_tiles[..., :2].astype(bool)
    tidy = tidy_roads(street_tiles, [0, 1], [2])
    changed = (tidy[..., :2].astype(bool) != roads).sum()
    assert changed < 0.02 * roads.sum(), (changed, roads.sum())
    paths, tidy_paths = street_tiles[..., 2].astype(bool), tidy[..., 2].astype(bool)
    removed, added = (paths & ~tidy_paths).sum(), (tidy_paths & ~paths).sum()
    assert removed < 0.02 * paths.sum(), (removed, paths.sum())
    assert added < 0.02 * paths.sum() and not (tidy_paths & ~paths & ~roads.any(axis=-1)).any(), added


def test_a_road_runs_on_to_the_street_it_points_at_and_no_further():
    """Within 8 px: a road stopping 6 px short of a cross street runs on to it, in its own channel, LINE_PX
    wide; one stopping 12 px short, or whose nearest street lies beside it rather than ahead, stays. With
    the defaults (MEET_PX), a road as wide as a major road's 3 px stopping 3 px short runs on too."""
    layout = np.zeros((1, 64, 64, 3), np.uint8)
    layout[0, 40:42, :, 1] = 1          # a cross street, edge to edge
    layout[0, 0:34, 10:12, 0] = 1       # a major road from the top edge, stopping 6 px short of it
    layout[0, 0:28, 30:32, 1] = 1       # a minor road stopping 12 px short
    layout[0, 0:20, 50:52, 1] = 1       # a road stopping 20 px short, with a cycle path 4 px beside it
    layout[0, 5:20, 56:58, 2] = 1
    met = meet_streets(layout, [0, 1], max_px=8)[0]
    run = met[34:40, 8:13]
    assert np.all(run[..., 0].sum(axis=1) >= LINE_PX) and not run[..., 1:].any()  # run on: major, LINE_PX wide
    added = np.argwhere((met > layout[0]).any(axis=-1))
    assert added[:, 1].min() >= 8 and added[:, 1].max() <= 12  # nothing else was drawn
    assert _pieces(met) < _pieces(layout[0])
    assert len(_free_ends(met, [0, 1])) == len(_free_ends(layout[0], [0, 1])) - 1

    wide = np.zeros((1, 64, 64, 3), np.uint8)
    wide[0, 40:42, :, 1] = 1
    wide[0, 0:37, 10:13, 0] = 1          # 3 px wide, 3 px short (its centre line ends 2 px before its tip)
    assert len(_free_ends(wide[0], [0, 1])) == 1
    assert not _free_ends(meet_streets(wide, [0, 1], [2])[0], [0, 1])


def test_running_ends_on_closes_real_streets_broken_within_one_piece(street_tiles):
    """Real Østerbro and Kennesaw roads cut by a 6 px band that splits no piece of the network (it cuts
    loops, which joining pieces never closes): running the cut ends on to the streets they point at closes
    most of the free ends the band made, and only adds."""
    made = closed = cuts = 0
    for tile in street_tiles:
        if tile[..., :2].sum() < 200:
            continue
        whole, pieces = len(_free_ends(tile, [0, 1])), _pieces(tile)
        for start in range(16, 48, 8):
            for band in (np.s_[:, start:start + 6, :2], np.s_[start:start + 6, :, :2]):
                cut = tile.copy()
                cut[band] = 0
                if _pieces(cut) != pieces:
                    continue
                before = len(_free_ends(cut, [0, 1]))
                met = meet_streets(cut[None], [0, 1], max_px=8)[0]
                assert np.all(met >= cut)
                made += before - whole
                closed += before - len(_free_ends(met, [0, 1]))
                cuts += 1
    assert cuts >= 50 and made >= 50, (cuts, made)
    assert closed >= 0.5 * made, (closed, made)


def test_tidying_and_running_on_take_any_layout():
    """Speckle makes skeletons with every degenerate case (junctions of two-pixel paths whose other paths
    were dropped as spurs, loops of a few pixels): all three functions take it; meeting and running through only add."""
    rng = np.random.default_rng(0)
    speckle = (rng.random((400, 24, 24, 3)) < 0.35).astype(np.uint8)
    tidy = tidy_roads(speckle, [0, 1], [2])
    assert tidy.shape == speckle.shape and np.all(tidy[..., 2] <= speckle.max(axis=-1))  # roads may become paths
    met = meet_streets(speckle, [0, 1], [2])
    assert np.all(met >= speckle)
    assert np.all(run_through(speckle, [0, 1], [2]) >= speckle)


def test_the_pieces_left_without_some_pixels_are_those_a_whole_count_finds(street_tiles):
    """Tidying asks, for each spur it might cut, how many pieces the network would have without it: counted
    around the spur where it can be, it must be the count scipy's labelling of the whole network finds, for
    cuts that split a piece, remove a piece whole, or leave the network as it was."""
    from urbangen.proximity import EIGHT_NEIGHBOURS, _pieces_without

    rng = np.random.default_rng(0)
    nets = street_tiles.any(axis=-1)
    # 2 x 2 real tiles side by side, so that the pixels removed lie well inside a larger layout
    layouts = [np.block([[nets[i], nets[i + 1]], [nets[i + 2], nets[i + 3]]]) for i in range(0, len(nets) - 3, 4)]
    outcomes = {"split": 0, "piece gone": 0, "same": 0}
    for net in layouts[:12]:
        pieces, n = ndimage.label(net, structure=EIGHT_NEIGHBOURS)
        on = np.flatnonzero(net)
        small = [k for k in range(1, n + 1) if (pieces == k).sum() <= 40]
        cuts = [rng.choice(on, size=rng.integers(1, 30), replace=False) for _ in range(8)]
        cuts += [np.flatnonzero(pieces == k) for k in small[:2]]  # a whole piece
        for centre in rng.choice(on, size=8, replace=False):  # a square across a street: cuts it or not
            y, x = np.unravel_index(centre, net.shape)
            box = np.zeros_like(net)
            box[max(y - 2, 0):y + 3, max(x - 2, 0):x + 3] = True
            cuts.append(np.flatnonzero(box))  # some of these pixels are not streets
        for cut in cuts:
            left = net.copy()
            left.ravel()[cut] = False
            expected = ndimage.label(left, structure=EIGHT_NEIGHBOURS)[1]
            assert _pieces_without(net, n, cut) == expected
            outcomes["split" if expected > n else "piece gone" if expected < n else "same"] += 1
    assert min(outcomes.values()) >= 3, outcomes


def test_a_street_tiles_latent_moves_to_continue_the_streets_drawn_under_it(street_tiles):
    """The shipped street stage's latent, moved as a stitched layout moves each tile's (``continue_drawn``),
    decodes fields that match real streets where they are drawn (each tile's west half) much better than the
    draw it started from, while staying a street layout where nothing is drawn (east half). Misfits in float64
    NumPy."""
    import jax

    from urbangen.generate import sampler
    from urbangen.pretrained import load_model

    stage = load_model("city-64").stages[1]
    busy = street_tiles[np.argsort(-street_tiles[:, :, :32].sum(axis=(1, 2, 3)))[:4]]
    drawn = np.asarray(proximity_field(jnp.asarray(busy)), np.float32)
    known = np.zeros((4, 64, 64, 1), np.float32)
    known[:, :, :32] = 1.0
    params = np.zeros((4, len(stage.spec.parameter_names)), np.float32)
    start = np.asarray(stage.fn("latents")(jax.random.key(0), 4))
    moved = np.asarray(stage.fn("continue_drawn")(start, params, drawn, known, sampler.CONTINUE_STEPS,
                                                  sampler.CONTINUE_LEARNING_RATE, sampler.CONTINUE_ANCHOR))
    before, after = (np.asarray(stage.fn("decode")(z, params), np.float64) for z in (start, moved))
    misfit = lambda field: (known * (field - drawn) ** 2).sum(axis=(1, 2, 3))  # noqa: E731
    assert (misfit(after) < 0.7 * misfit(before)).all(), (misfit(after), misfit(before))
    assert (decode_proximity(after)[:, :, 32:].sum(axis=(1, 2, 3)) > 0).all()


def test_a_stitched_street_layouts_grid_tiles_own_their_ground_but_a_band_along_their_borders(monkeypatch):
    """A street layout is laid on its tile grid first: inside a grid tile, beyond the band along the borders it
    shares, the blend is that tile's own street alone (one full-strength line), not a mix with the tiles drawn
    across its borders; at the borders those tiles take over. The weights of a grid tile and of the tile across
    its border sum to one wherever both lie."""
    import jax

    from urbangen.generate import sampler

    t = 64
    band = int(sampler.SEAM_BAND * t)
    grid, across = sampler._seam_profile(t, False), sampler._seam_profile(t, True)
    np.testing.assert_allclose(grid[t // 2:] + across[:t // 2], 1.0, atol=2e-3)
    assert grid[band:t - band].min() == 1.0 and across[:t // 2 - band].max() <= 1e-3

    monkeypatch.setattr(sampler, "CANDIDATES", 1)  # each tile as drawn: neighbours disagree
    # 300 px: the layout is drawn over whole tiles (320 px) and cropped, no tile pushed flush over another.
    field = sampler._blend(_RandomLines(), np.zeros((t, 300, 1), np.float32), jax.random.key(5), None, 16)[..., 0]
    assert field.shape == (t, 300)
    rows = []
    for k in range(4):
        inside = field[:, k * t + (band if k else 0):(k + 1) * t - band]
        assert inside.max(axis=0).min() > 0.99  # one street at full strength in every column
        line = inside.argmax(axis=0)
        assert (line == line[0]).all()
        rows.append(int(line[0]))
    border = field[:, t - 1:t + 1].argmax(axis=0)
    assert len(set(rows)) > 1 and set(border.tolist()) - set(rows[:2])  # the tile across the border, its own row


def test_a_stitched_windows_candidates_are_scored_as_blended_with_what_is_drawn_under_them(monkeypatch):
    """A window's candidates are measured as blended with what is drawn so far: where the tile before it owns
    the ground, every candidate's scored window shows that tile's street, whatever row its own street takes;
    and the last window, chosen first of its shortlist, is scored as the layout ends, a coarser stage's line
    merged as the chain merges it (the line's own weighted field in the blend is hidden by that merge)."""
    import jax

    from urbangen.generate import sampler
    from urbangen.inference import deterministic_layout

    monkeypatch.setattr(sampler, "CANDIDATES", 8)
    scored = []

    def recorder(layouts, z):
        scored.append(layouts.copy())
        return np.zeros(len(layouts))

    t = 64
    band = int(sampler.SEAM_BAND * t)
    model = _RandomLines()
    field = sampler._matched(model, np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                             field_scorer=recorder)[..., 0]
    first_row = int(field[:, :band].argmax(axis=0)[0])
    across = scored[1][..., 0]  # the window across the grid border, at columns t/2 to 3t/2
    assert len(across) == sampler.CANDIDATES // 2
    # Its first quarter lies on the first tile's own ground (beyond the band), where that tile weighs ~1.
    assert across[:, first_row, :band].all()
    own_rows = {int(np.argmax(w[:, -1])) for w in across if w[:, -1].any()}  # its own street, at the far end
    assert own_rows - {first_row}

    scored.clear()
    line = np.zeros((t, 2 * t), np.uint8)
    line[:, 100] = 1  # a coarser stage's north-south line in the second tile
    blended = sampler._matched(model, np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                               coarse={"minor_roads": line}, field_scorer=recorder)
    # The last window's candidate (the first of its shortlist) as the layout ends: no tile is drawn after it.
    expected = sampler._with_lines(deterministic_layout(blended[None, :, t:], model.spec, window=True),
                                   model.spec, {"minor_roads": line[:, t:]})
    np.testing.assert_array_equal(scored[-1][0], expected[0])
    assert scored[-1][0][:, 100 - t, 0].all()


class _MovingLines(_RandomLines):
    """A stand-in street VAE whose latent, moved to continue what is drawn, takes its street 10 rows down."""

    def fn(self, name):
        if name == "continue_drawn":
            return lambda z, *rest: np.minimum(np.asarray(z) + 10, 60)
        return super().fn(name)


def test_a_stitched_windows_best_candidates_are_scored_again_as_moved(monkeypatch):
    """The best of a window's scored candidates are moved to continue what is drawn and scored again as moved,
    and the best of them as moved is what the layout keeps: chosen before moving, it could be scored on one
    street and drawn with another."""
    import jax

    from urbangen.generate import sampler
    from urbangen.proximity import decode_proximity

    monkeypatch.setattr(sampler, "CANDIDATES", 16)
    monkeypatch.setattr(sampler, "REDRAWN_GRID_TILES", False)  # the grid tiles drawn again: the next test
    calls = []

    def row_50(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        # the street's row at the far end, best at 50
        rows = np.array([int(np.argmax(w[:, -1, 0])) if w[:, -1, 0].any() else -100 for w in layouts])
        calls.append(rows)
        return np.abs(rows - 50.0)

    t = 64
    field = sampler._matched(_MovingLines(), np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                             selection=(8, row_50))
    # The last window (a grid tile: scored by its own window only), where nothing is drawn at its far end.
    first, moved = calls[-2], calls[-1]
    assert len(first) == 8 and len(moved) == sampler.CONTINUED_CANDIDATES
    top = np.argsort(np.abs(first - 50.0), kind="stable")[:sampler.CONTINUED_CANDIDATES]
    np.testing.assert_array_equal(moved, np.minimum(first[top] + 10, 60))
    kept = int(np.argmax(decode_proximity(field[None])[0, :, -1, 0]))
    assert kept == moved[np.argmin(np.abs(moved - 50.0))]


def test_a_tile_across_a_grid_border_is_scored_by_the_grid_windows_drawn_before_it(monkeypatch):
    """A tile across the tile grid's border is scored by its own window's request and by the grid window
    drawn before it, as blended with it (that window's own street on its ground), against that window's
    request; never by the grid window not drawn yet."""
    import jax

    from urbangen import progress
    from urbangen.generate import sampler

    monkeypatch.setattr(sampler, "CANDIDATES", 8)
    calls, reports = [], []

    def recorder(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        calls.append((float(requested[0, 0]), layouts.copy(), weighted))
        return np.zeros(len(layouts))

    t = 64
    z = np.zeros((t, 2 * t, 1), np.float32)
    z[:, t:] = 1.0  # the first grid window asks for 0, the second for 1, the window across them for 0.5
    with progress.listening(lambda *r: reports.append(r)):
        field = sampler._matched(_RandomLines(), z, jax.random.key(3), 16, selection=(4, recorder))
    # Progress: each of the three windows, then each of the two grid tiles drawn again, of five draws.
    assert {stage for stage, _, _ in reports} == {"minor roads: tiles drawn"}
    assert [(done, total) for _, done, total in reports] == [(k, 5) for k in range(1, 6)]
    # The first grid tile alone (nothing drawn: not moved); the tile across the border by its own window and
    # the first grid window, before and after moving; the second grid tile by its own window only; then each
    # grid tile drawn again (its candidates, the best moved, and the tile it was: see the next test).
    assert [a for a, _, _ in calls] == [0.0, 0.5, 0.0, 0.5, 0.0, 1.0, 1.0] + [0.0] * 3 + [1.0] * 3
    # The street network's form weighs more only in a complete window: a grid tile drawn again.
    assert [w for _, _, w in calls] == [False] * 7 + [True] * 6
    first_row = int(field[:, :8, 0].mean(axis=1).argmax())
    own, grid = calls[1][1], calls[2][1]
    assert grid[:, first_row, :8, 0].all()  # the first tile's street where that tile owns the ground
    # At column 63, where the tile across the border weighs nearly 1, the grid window shows each candidate's
    # own street, as the candidate's own window does at the same column.
    np.testing.assert_array_equal(grid[:, :, t - 1], own[:, :, t // 2 - 1])
    assert {int(np.argmax(w[:, t - 1, 0])) for w in grid} - {first_row}


def test_a_stitched_layouts_grid_tiles_are_drawn_again_in_their_windows_as_the_layout_ends(monkeypatch):
    """Once every tile across the grid's borders is drawn, each grid tile is drawn again: its candidates are
    scored in its window as the layout will end (the tile across its border on the band they share, which
    the first draw could not see), and the new best is kept only where it scores better than the tile
    drawn first, so that the window the layout ends with is the one scored best."""
    import jax

    from urbangen.generate import sampler
    from urbangen.inference import deterministic_layout

    monkeypatch.setattr(sampler, "CANDIDATES", 8)
    calls = []

    def row_20(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        # the street's row at column 0, best at 20
        rows = np.array([int(np.argmax(w[:, 0, 0])) if w[:, 0, 0].any() else -100 for w in layouts])
        calls.append((layouts.copy(), np.abs(rows - 20.0)))
        return np.abs(rows - 20.0)

    t = 64
    model = _RandomLines()
    field = sampler._matched(model, np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                             selection=(4, row_20))
    assert len(calls) == 7 + 6  # the first draws (see the test above), then two grid tiles' three scorings each
    first, (shortlist, _), (moved, moved_errors), (incumbent, incumbent_error) = calls[0], *calls[7:10]
    final = deterministic_layout(field[None, :, :t], model.spec, window=True)[0]
    # Drawn again, every candidate's window shows the tile across the border where it weighs nearly 1 (the
    # window's last column); drawn first, it showed the candidate's own street there.
    assert all(np.array_equal(w[:, t - 1], final[:, t - 1]) for w in (*shortlist, *moved, *incumbent))
    assert any(not np.array_equal(w[:, t - 1], final[:, t - 1]) for w in first[0])
    # The best moved candidate is kept where it scores better than the tile it was; the layout ends as scored.
    assert moved_errors.min() < incumbent_error[0]
    np.testing.assert_array_equal(final, moved[np.argmin(moved_errors)])

    # Where it scores best, the tile it was is kept (a window's first draw is scored alone; the tile it was,
    # scored again, is the one window of its call): the layout ends as first drawn.
    sizes = []

    def first_draw_best(stage, layouts, requested, seeds, *, weighted=None, weights=None):
        sizes.append(len(layouts))
        return row_20(stage, layouts, requested, seeds) if len(sizes) <= 7 else np.full(len(layouts),
                                                                                        float(len(layouts) > 1))

    again = sampler._matched(model, np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                             selection=(4, first_draw_best))
    assert sizes[7:] == [4, 4, 1] * 2
    monkeypatch.setattr(sampler, "REDRAWN_GRID_TILES", False)
    first_only = sampler._matched(model, np.zeros((t, 2 * t, 1), np.float32), jax.random.key(3), 16,
                                  selection=(4, row_20))
    np.testing.assert_allclose(again, first_only, atol=1e-6)
    assert not np.allclose(field, first_only, atol=1e-3)


def test_an_arterial_windows_major_road_error_counts_centre_line_length_per_tile():
    """A coarse window is scored by its major roads' centre-line length in each chain tile against the
    density the tiles ask for: a straight road across one 256 m tile is 0.256 km in 0.0655 km² (3.9 km/km²)."""
    from types import SimpleNamespace

    from urbangen.generate.sampler import _major_road_cells_error

    mean, std = 2.0, 4.0
    from urbangen.conditioning import ParameterScaler

    names = ("major_road_density_km_per_km2",)
    stage = SimpleNamespace(spec=SimpleNamespace(
        parameter_names=names, scaler_mean=(mean,), scaler_std=(std,), scaler=ParameterScaler(names, (mean,), (std,)),
        meters_per_pixel=16.0, output_channels=("major_roads",)))
    layout = np.zeros((1, 64, 64, 1), np.uint8)
    layout[0, 8, 16:32] = 1  # one straight road across the cell (0, 1), 16 px of 16 m
    density = 0.256 / 0.256 ** 2
    asked = np.zeros((64, 64))
    asked[:16, 16:32] = density
    z = ((asked - mean) / std)[..., None]
    np.testing.assert_allclose(_major_road_cells_error(stage, 16, layout, z), 0.0, atol=1e-9)
    elsewhere = np.roll(asked, 16, axis=1)  # asked one tile further east
    np.testing.assert_allclose(_major_road_cells_error(stage, 16, layout, ((elsewhere - mean) / std)[..., None]),
                               2 * density / 16 / std)
