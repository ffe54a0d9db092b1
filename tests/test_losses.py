"""The GAN and VAE losses against values computed by hand, in float64 NumPy, on synthetic arrays."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from urbangen.models.vae import kl_divergence
from urbangen.training.pix2pix import gan_loss


def _bce_with_logits(logits: np.ndarray, target: np.ndarray) -> np.ndarray:
    """-[t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], written out."""
    p = 1.0 / (1.0 + np.exp(-logits))
    return -(target * np.log(p) + (1.0 - target) * np.log(1.0 - p))


def test_vanilla_gan_loss_is_the_mean_binary_cross_entropy():
    logits = np.array([[-2.0, 0.0], [0.5, 3.0]])
    # By hand: log(1 + e^-x) for a real target, log(1 + e^x) for a fake one.
    assert float(gan_loss(jnp.asarray(logits), True, "vanilla")) == pytest.approx(
        np.mean(np.log1p(np.exp(-logits))), rel=1e-6)
    assert float(gan_loss(jnp.asarray(logits), False, "vanilla")) == pytest.approx(
        np.mean(_bce_with_logits(logits, np.zeros_like(logits))), rel=1e-6)
    assert float(gan_loss(jnp.zeros(4), True, "vanilla")) == pytest.approx(np.log(2.0), rel=1e-6)


def test_lsgan_loss_is_the_mean_squared_distance_to_the_target():
    logits = np.array([0.0, 0.5, 1.0, 2.0])
    assert float(gan_loss(jnp.asarray(logits), True, "lsgan")) == pytest.approx((1 + 0.25 + 0 + 1) / 4)
    assert float(gan_loss(jnp.asarray(logits), False, "lsgan")) == pytest.approx((0 + 0.25 + 1 + 4) / 4)
    with pytest.raises(ValueError, match="gan_loss must be one of"):
        gan_loss(jnp.asarray(logits), True, "wasserstein")


def test_kl_divergence_matches_the_closed_form_and_vanishes_at_the_prior():
    rng = np.random.default_rng(0)
    mu, log_var = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    var = np.exp(log_var)
    # KL(N(mu, var) || N(0, 1)) per dimension: (var + mu^2 - 1 - log var) / 2, summed over dimensions.
    want = 0.5 * (var + mu**2 - 1.0 - log_var).sum(axis=1)
    np.testing.assert_allclose(np.asarray(kl_divergence(jnp.asarray(mu), jnp.asarray(log_var))), want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(kl_divergence(jnp.zeros((2, 4)), jnp.zeros((2, 4)))), 0.0, atol=1e-7)


@pytest.mark.parametrize("target", ["mask", "proximity"])
def test_vae_reconstruction_is_the_per_tile_summed_cross_entropy_averaged_over_tiles(target):
    """VAETask.losses against logits from the same model and a hand-written Bernoulli likelihood."""
    import jax
    from conftest import load_config

    from urbangen.conditioning import layout_to_signed
    from urbangen.proximity import proximity_field
    from urbangen.training.vae import VAETask

    config = load_config("vae", **{"vae.target": target})
    channels = ["buildings", "major_roads", "minor_roads"]
    task = VAETask(config, {"channels": channels, "tile_px": 16, "parameters": ["p0", "p1"]})
    state = task.initial_state(jax.random.key(0))
    rng = np.random.default_rng(1)
    tiles = (rng.random((3, 16, 16, 3)) < 0.2).astype(np.uint8)
    params = rng.normal(size=(3, 2)).astype(np.float32)
    key = jax.random.key(7)

    got = task.losses(state["params"], {"tile": jnp.asarray(tiles), "params": jnp.asarray(params)}, key)
    logits, mu, log_var = task.model.apply({"params": state["params"]}, layout_to_signed(jnp.asarray(tiles)),
                                           jnp.asarray(params), key)
    labels = np.asarray(proximity_field(jnp.asarray(tiles))) if target == "proximity" else tiles.astype(np.float64)
    want = _bce_with_logits(np.asarray(logits, np.float64), labels).sum(axis=(1, 2, 3)).mean()
    assert float(got["recon"]) == pytest.approx(want, rel=1e-4)
    assert float(got["kl"]) == pytest.approx(float(np.mean(kl_divergence(mu, log_var))), rel=1e-5)
