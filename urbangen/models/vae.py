"""Conditional VAE over layout tiles.

The encoder maps a tile (and, when conditional, its parameter vector) to
the mean and log-variance of a diagonal Gaussian; the decoder maps a latent
(and the parameters) to per-pixel Bernoulli logits of the layout channels.
With ``conditional=False`` the parameters are ignored, so the latent must
hold everything; with it, the latent holds what the parameters don't explain.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from urbangen.models.layers import Upsample2x


def _norm_act(x: jnp.ndarray, dtype: Any) -> jnp.ndarray:
    groups = min(8, x.shape[-1])
    return nn.silu(nn.GroupNorm(num_groups=groups, dtype=dtype)(x))


class VAEEncoder(nn.Module):
    features: tuple[int, ...]
    latent_dim: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, tiles: jnp.ndarray, cond: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        h = tiles.astype(self.dtype)
        for f in self.features:
            h = nn.Conv(f, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype)(h)
            h = _norm_act(h, self.dtype)
        h = jnp.concatenate([h.reshape(h.shape[0], -1), cond.astype(self.dtype)], axis=-1)
        h = nn.silu(nn.Dense(512, dtype=self.dtype)(h)).astype(jnp.float32)
        return nn.Dense(self.latent_dim, name="mu")(h), nn.Dense(self.latent_dim, name="log_var")(h)


class VAEDecoder(nn.Module):
    features: tuple[int, ...]
    channels: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z: jnp.ndarray, cond: jnp.ndarray, tile_px: int) -> jnp.ndarray:
        start = tile_px // 2 ** len(self.features)
        h = jnp.concatenate([z, cond], axis=-1).astype(self.dtype)
        h = nn.silu(nn.Dense(512, dtype=self.dtype)(h))
        h = nn.Dense(start * start * self.features[-1], dtype=self.dtype)(h)
        h = h.reshape(h.shape[0], start, start, self.features[-1])
        for f in reversed(self.features):
            h = _norm_act(h, self.dtype)
            h = Upsample2x(f, use_bias=True, kernel_init=nn.initializers.lecun_normal(), dtype=self.dtype)(h)
        h = _norm_act(h, self.dtype)
        return nn.Conv(self.channels, (3, 3), padding="SAME", dtype=self.dtype)(h).astype(jnp.float32)


class ConditionalVAE(nn.Module):
    """Attributes: ``channels`` out, ``features`` per downsampling level, ``latent_dim``, ``conditional``."""

    channels: int
    features: tuple[int, ...] = (32, 64, 128, 256, 256)
    latent_dim: int = 32
    conditional: bool = True
    dtype: Any = jnp.float32

    def setup(self) -> None:
        self.encoder = VAEEncoder(self.features, self.latent_dim, dtype=self.dtype)
        self.decoder = VAEDecoder(self.features, self.channels, dtype=self.dtype)

    def _cond(self, params: jnp.ndarray | None, n: int) -> jnp.ndarray:
        if not self.conditional or params is None:
            return jnp.zeros((n, 0), jnp.float32)
        return params.astype(jnp.float32)

    def encode(self, tiles: jnp.ndarray, params: jnp.ndarray | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Posterior mean and log-variance (each (B, latent_dim), float32) of signed tiles in [-1, 1]."""
        return self.encoder(tiles, self._cond(params, tiles.shape[0]))

    def decode(self, z: jnp.ndarray, params: jnp.ndarray | None, tile_px: int) -> jnp.ndarray:
        """Per-pixel logits (B, tile_px, tile_px, channels), float32."""
        return self.decoder(z, self._cond(params, z.shape[0]), tile_px)

    def __call__(self, tiles: jnp.ndarray, params: jnp.ndarray | None, rng: jax.Array):
        """Reconstruction logits, posterior mean and log-variance, with the reparametrization trick."""
        mu, log_var = self.encode(tiles, params)
        z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mu.shape)
        return self.decode(z, params, tiles.shape[1]), mu, log_var


def kl_divergence(mu: jnp.ndarray, log_var: jnp.ndarray) -> jnp.ndarray:
    """KL(q(z|x) || N(0, I)) per example, summed over latent dimensions."""
    return 0.5 * jnp.sum(jnp.exp(log_var) + mu**2 - 1.0 - log_var, axis=-1)


def vae_from_config(cfg: Any, channels: int, dtype: Any = jnp.float32) -> ConditionalVAE:
    """The VAE an experiment config's ``vae`` block describes (trainer and inference build it alike)."""
    return ConditionalVAE(channels=channels, features=tuple(cfg.features), latent_dim=cfg.latent_dim,
                          conditional=cfg.conditional, dtype=dtype)
