"""Street proximity fields (the street stage's target) and their decoding into lines."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from urbangen.proximity import CORE_LEVEL, PROXIMITY_PX, RADIUS_PX, RIDGE_LEVEL, decode_proximity, proximity_field

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


def test_a_real_field_decodes_to_exactly_its_streets(street_tiles):
    field = np.asarray(proximity_field(jnp.asarray(street_tiles)))
    np.testing.assert_array_equal(decode_proximity(field), street_tiles)


def test_a_weak_ridge_is_drawn_as_a_one_pixel_line_and_a_weaker_one_is_not():
    """A soft line (what a generator draws where unsure) becomes a connected, one-pixel centreline."""
    rows = np.arange(32, dtype=np.float64)[:, None]
    # A horizontal line on row 16, its peak dipping to just above, then below, the ridge level.
    peak = np.full(32, 0.9)
    peak[10:13] = RIDGE_LEVEL + 0.02
    peak[22:25] = RIDGE_LEVEL - 0.02
    field = (peak[None, :] * np.exp(-np.abs(rows - 16) / PROXIMITY_PX))[None, :, :, None]
    layout = decode_proximity(field)[0, ..., 0]
    assert layout[16, :22].all() and not layout[16, 22:25].any() and layout[16, 25:].all()
    # Only the ridge row: the flanks of the soft line are not drawn.
    assert layout.sum() == layout[16].sum()
    assert CORE_LEVEL > RIDGE_LEVEL > np.exp(-1.0 / PROXIMITY_PX)


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
