"""Copying (urbangen.evaluators.copying): generated tiles against their nearest training tile, on real tiles."""

from __future__ import annotations

import numpy as np
import pytest

from urbangen.evaluators.copying import Copying, nearest_by_jaccard


@pytest.fixture(scope="module")
def real(small_tiles):
    from data_pipeline.dataset import open_dataset
    from urbangen.evaluators.common import read_real

    ds = open_dataset(small_tiles)
    rows = np.arange(len(ds))
    names = tuple(ds.parameter_names)
    # Training and "test" tiles from different halves of the city list's rows: different ground.
    return read_real(ds, rows[: len(rows) // 2], names), read_real(ds, rows[len(rows) // 2:], names)


def _jaccard(x: np.ndarray, y: np.ndarray) -> float:
    union = np.logical_or(x, y).sum(dtype=np.float64)
    return 0.0 if union == 0 else 1.0 - np.logical_and(x, y).sum(dtype=np.float64) / union


def test_nearest_by_jaccard_is_a_float64_jaccard_distance_over_pixels(real):
    """Against plain float64 set counts over every pair of real Østerbro and Kennesaw tiles, chunked finely;
    an empty tile is nearest another empty one, and a dense one is not nearest an empty one."""
    train, test = real
    a, b = test.tiles[:40], train.tiles[:70]
    a = np.concatenate([a, np.zeros_like(a[:1])])
    expected = np.array([[_jaccard(x, y) for y in b] for x in a])
    distance, row = nearest_by_jaccard(a, b, chunk_bytes=3 * 4 * a[0].size)  # chunks of 3 tiles, ragged ends
    np.testing.assert_allclose(distance, expected.min(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(row, expected.argmin(axis=1))  # the first of equals, as argmin takes it
    assert distance[-1] == 0 or not (b.reshape(len(b), -1) == 0).all(axis=1).any()
    dense = int(np.argmax(a.reshape(len(a), -1).sum(axis=1)))
    assert b[row[dense]].any()
    from data_pipeline.errors import InvalidValueError

    with pytest.raises(InvalidValueError, match="pixel values"):
        nearest_by_jaccard(a[..., :2], b)


def test_copies_of_training_tiles_are_told_from_held_out_ground(real):
    """A "generator" handing back training tiles sits at distance 0 from them; held-out real tiles do not."""
    train, test = real
    channels = list(range(len(train.channels)))
    n = min(len(test), len(train))
    copies = train.tiles[np.random.default_rng(0).permutation(len(train))[:n]]
    copied = Copying(train, channels).run(copies, test)
    assert copied["generated_median"] == 0 and copied["ratio"] == 0 and copied["identical"] == n
    assert copied["real_test_median"] > 0.01  # real ground differs from the nearest training tile
    assert np.isin(copied["nearest_training_rows"], train.indices).all()
    # Real held-out tiles as the "generated" ones: the floor against itself, a ratio of 1.
    held_out = Copying(train, channels).run(test.tiles, test)
    assert held_out["ratio"] == pytest.approx(1.0)
    assert held_out["below_every_real"] == 0.0
    # Noise with the real shares is no copy either: no nearer the training tiles than real held-out ground.
    shares = train.tiles.mean(axis=(0, 1, 2))
    noise = (np.random.default_rng(1).random(test.tiles.shape) < shares).astype(np.uint8)
    scored = Copying(train, channels).run(noise, test)
    assert scored["ratio"] > 0.95 and scored["below_every_real"] == 0.0 and scored["identical"] == 0


def test_nearest_by_euclidean_is_scipys_distance(real):
    """Against scipy's float64 cdist, on real tiles' per-block pixel shares, chunked finely."""
    from scipy.spatial.distance import cdist

    from data_pipeline.errors import InvalidValueError
    from urbangen.evaluators.copying import nearest_by_euclidean

    train, test = real
    a, b = _block_shares(test.tiles[:40]), _block_shares(train.tiles[:70])
    expected = cdist(a, b)
    distance, row = nearest_by_euclidean(a, b, chunk=7)
    np.testing.assert_allclose(distance, expected.min(axis=1), rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(row, expected.argmin(axis=1))
    with pytest.raises(InvalidValueError, match="shape"):
        nearest_by_euclidean(a[:, :3], b)


def _block_shares(tiles: np.ndarray, block: int = 16) -> np.ndarray:
    """Each tile's share of drawn pixels per channel in blocks of ``block`` px: a plain embedding of real tiles."""
    n, h, w, c = tiles.shape
    return tiles.reshape(n, h // block, block, w // block, block, c).mean(axis=(2, 4)).reshape(n, -1)


class _BlockShareEncoder:
    """An encoder's interface (``embed_tiles``) over :func:`_block_shares`."""

    def embed_tiles(self, tiles: np.ndarray) -> np.ndarray:
        return _block_shares(tiles).astype(np.float32)


def test_copies_are_told_in_an_encoders_space_too(real):
    """With an encoder, copies of training tiles sit at distance 0 in its space, held-out ground at a ratio of 1,
    and each generated tile's nearest training tile there is named."""
    train, test = real
    channels = list(range(len(train.channels)))
    n = min(len(test), len(train))
    picked = np.random.default_rng(0).permutation(len(train))[:n]
    copied = Copying(train, channels, encoder=_BlockShareEncoder()).run(train.tiles[picked], test)["encoder_space"]
    assert copied["generated_median"] == 0 and copied["ratio"] == 0
    # A copy's nearest is the tile it copies, or one embedded exactly as it is.
    nearest = np.searchsorted(train.indices, copied["nearest_training_rows"])
    embedded = _block_shares(train.tiles)
    np.testing.assert_array_equal(embedded[nearest], embedded[picked])
    held_out = Copying(train, channels, encoder=_BlockShareEncoder()).run(test.tiles, test)["encoder_space"]
    assert held_out["ratio"] == pytest.approx(1.0) and held_out["real_test_median"] > 0
    assert "encoder_space" not in Copying(train, channels).run(test.tiles, test)
