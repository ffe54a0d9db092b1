"""Specks of water and open space taken out of what a buildings stage draws (urbangen.specks), on real tiles."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import numpy as np
from scipy import ndimage

from urbangen.specks import MAX_SPECK_M2, speckless_stage, without_specks

EIGHT = np.ones((3, 3), bool)


def _scikit_image(mask: np.ndarray, max_px: int) -> np.ndarray:
    """The independent reference: scikit-image's removal of pieces of at most ``max_px`` pixels, 8-connected."""
    from skimage.morphology import remove_small_objects

    try:
        return remove_small_objects(mask.astype(bool), max_size=max_px, connectivity=2)
    except TypeError:  # scikit-image before 0.26 names the bound by the smallest size kept
        return remove_small_objects(mask.astype(bool), min_size=max_px + 1, connectivity=2)


def test_pieces_up_to_the_size_go_and_larger_ones_stay_as_scikit_image_finds_them(small_tiles):
    """Real Østerbro and Kennesaw water and open space at 4 m/px: the same pixels kept as scikit-image keeps."""
    from data_pipeline.dataset import open_dataset

    ds = open_dataset(small_tiles)
    removed = kept = 0
    for channel in ("water", "open_space"):
        c = ds.channels.index(channel)
        masks = [t[..., c] for t in ds.read_tiles(range(len(ds))) if t[..., c].any()]
        assert len(masks) >= 3, f"too few real tiles with {channel}"
        for mask in masks:
            for max_px in (4, 10, 40):
                ours = without_specks(mask, 4.0, max_px * 16.0)
                np.testing.assert_array_equal(ours.astype(bool), _scikit_image(mask, max_px))
                removed += int(mask.sum() - ours.sum() > 0)
                kept += int(ours.any())
    assert removed > 0 and kept > 0  # both kinds of piece were there to be told apart
    # At 2 m/px the same ground is four times the pixels: a 10-pixel piece at 4 m/px is 40 at 2 m/px.
    piece = np.zeros((32, 32), np.uint8)
    piece[4:8, 4:14] = 1  # 40 px
    assert without_specks(piece, 2.0, MAX_SPECK_M2["water"]).sum() == 0
    assert without_specks(piece, 2.0, MAX_SPECK_M2["open_space"]).sum() == 40


def test_a_thresholded_stage_loses_its_specks_and_nothing_else(small_tiles):
    """A real tile as a stage's probabilities, with specks added: they go (probability 0), everything else stays,
    buildings of one pixel included; a stage that is not thresholded is handed back as it came."""
    from data_pipeline.dataset import open_dataset

    ds = open_dataset(small_tiles)
    channels = ("buildings", "open_space", "water")
    tiles = ds.read_tiles(range(len(ds)))[..., [ds.channels.index(c) for c in channels]]
    tile = tiles[int(np.argmax(tiles[..., 2].sum(axis=(1, 2))))].astype(np.float32)  # the tile with most water
    free = ~tile.any(axis=-1)
    rows, cols = np.nonzero(free[2:-2, 2:-2])
    r, c = rows[len(rows) // 2] + 2, cols[len(cols) // 2] + 2
    probs = np.where(tile > 0, 0.9, 0.1).astype(np.float32)
    probs[r, c, 2] = 0.8  # a one-pixel pond
    probs[r - 1, c - 1, 1] = 0.7  # a one-pixel park touching it at a corner: another channel, a piece of its own
    probs[r + 1, c + 1, 0] = 0.95  # a one-pixel building beside them
    spec = SimpleNamespace(sampling="threshold", output_channels=channels, meters_per_pixel=4.0)
    out, layout = speckless_stage(probs[None], None, spec)
    before = probs > 0.5
    expected = np.stack([before[..., 0],
                         _scikit_image(before[..., 1], 4),
                         _scikit_image(before[..., 2], 10)], axis=-1)
    np.testing.assert_array_equal(layout[0].astype(bool), expected)
    assert layout[0, r, c, 2] == 0 and layout[0, r - 1, c - 1, 1] == 0 and layout[0, r + 1, c + 1, 0] == 1
    assert before[..., 2].sum() - layout[0, ..., 2].sum() >= 1 and layout[0, ..., 2].sum() > 0  # the lake stays
    gone = before & ~expected
    np.testing.assert_array_equal(out[0][gone], 0.0)
    np.testing.assert_array_equal(out[0][~gone], probs[~gone])
    streets = SimpleNamespace(sampling="proximity", output_channels=("minor_roads",), meters_per_pixel=4.0)
    fields = np.zeros((1, 8, 8, 1), np.float32)
    assert speckless_stage(fields, None, streets) == (fields, None)


def test_the_shipped_generator_hands_on_no_specks(small_tiles, monkeypatch):
    """`city-64` asked for the parameters of the real Østerbro tiles with the most water: without the step its
    buildings stage draws specks of water and open space; with it (as shipped) none is left."""
    import urbangen.inference as inference
    from data_pipeline.dataset import open_dataset
    from urbangen.pretrained import load_model

    ds = open_dataset(small_tiles)
    rows = np.argsort(-ds.tiles["water_share"].to_numpy(), kind="stable")[:8]
    chain = load_model("city-64")
    names = chain.spec.parameter_names
    z = chain.spec.scaler.transform(ds.parameters(rows)[:, [ds.parameter_names.index(p) for p in names]])
    maps = np.broadcast_to(z[:, None, None, :], (len(rows), 64, 64, len(names))).astype(np.float32)

    def small_pieces(out: np.ndarray) -> int:
        count = 0
        for name, max_m2 in MAX_SPECK_M2.items():
            c = list(chain.spec.output_channels).index(name)
            for tile in out[..., c] > 0.5:
                sizes = np.bincount(ndimage.label(tile, structure=EIGHT)[0].ravel())[1:]
                count += int((sizes * 16.0 <= max_m2).sum())
        return count

    shipped = chain.generate_tiles(maps, jax.random.key(0))
    with monkeypatch.context() as m:
        m.setattr(inference, "speckless_stage", lambda probs, layout, spec: (probs, layout))
        as_drawn = chain.generate_tiles(maps, jax.random.key(0))
    assert small_pieces(as_drawn) >= 3
    assert small_pieces(shipped) == 0
    # Only water and open space changed where the model drew them.
    others = [j for j, c in enumerate(chain.spec.output_channels) if c not in MAX_SPECK_M2 and c != "buildings"]
    np.testing.assert_array_equal(shipped[..., others], as_drawn[..., others])
