"""Attention encoder: a ViT over layout tiles, trained without city labels.

Tiles are cut into patches, embedded, given learned position embeddings and
passed through pre-norm transformer blocks; the pooled embedding is the mean
of the final token states. It is trained self-supervised (masked-patch
reconstruction, as in MAE: He et al. 2022) and/or to predict each tile's
urban-form parameters, never on which city a tile comes from.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from data_pipeline.errors import InvalidValueError


def patchify(tiles: jnp.ndarray, patch: int) -> jnp.ndarray:
    """(B, H, W, C) to (B, H/p * W/p, p * p * C), patches in row-major order."""
    b, h, w, c = tiles.shape
    x = tiles.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    dim: int
    heads: int
    mlp_ratio: int = 4
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        h = nn.LayerNorm(dtype=self.dtype)(x)
        x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=self.dtype)(h, h)
        h = nn.LayerNorm(dtype=self.dtype)(x)
        h = nn.Dense(self.dim * self.mlp_ratio, dtype=self.dtype)(h)
        return x + nn.Dense(self.dim, dtype=self.dtype)(nn.gelu(h))


class Transformer(nn.Module):
    dim: int
    depth: int
    heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for _ in range(self.depth):
            x = Block(self.dim, self.heads, dtype=self.dtype)(x)
        return nn.LayerNorm(dtype=self.dtype)(x)


class LayoutEncoder(nn.Module):
    """ViT encoder with an MAE decoder and a parameter head (both used only in training)."""

    tile_px: int
    channels: int
    n_params: int
    patch: int = 16
    dim: int = 192
    depth: int = 6
    heads: int = 3
    decoder_dim: int = 128
    decoder_depth: int = 2
    dtype: Any = jnp.float32

    def setup(self) -> None:
        if self.tile_px % self.patch:
            raise InvalidValueError(f"tile size {self.tile_px} is not a multiple of the patch size {self.patch}")
        n = (self.tile_px // self.patch) ** 2
        self.patch_embed = nn.Dense(self.dim, dtype=self.dtype)
        self.pos_embed = self.param("pos_embed", nn.initializers.normal(0.02), (1, n, self.dim))
        self.body = Transformer(self.dim, self.depth, self.heads, dtype=self.dtype)
        self.param_head = nn.Dense(self.n_params)
        self.to_decoder = nn.Dense(self.decoder_dim, dtype=self.dtype)
        self.mask_token = self.param("mask_token", nn.initializers.normal(0.02), (1, 1, self.decoder_dim))
        self.decoder_pos = self.param("decoder_pos", nn.initializers.normal(0.02), (1, n, self.decoder_dim))
        self.decoder = Transformer(self.decoder_dim, self.decoder_depth, max(1, self.decoder_dim // 64),
                                   dtype=self.dtype)
        self.to_pixels = nn.Dense(self.patch * self.patch * self.channels)

    def tokens(self, tiles: jnp.ndarray, keep: jnp.ndarray | None = None) -> jnp.ndarray:
        """Final token states; ``keep`` (B, K) selects the visible patches (MAE)."""
        x = self.patch_embed(patchify(tiles.astype(self.dtype), self.patch)) + self.pos_embed.astype(self.dtype)
        if keep is not None:
            x = jnp.take_along_axis(x, keep[..., None], axis=1)
        return self.body(x)

    def embed(self, tiles: jnp.ndarray) -> jnp.ndarray:
        """Pooled embedding (B, dim), float32: the feature space of the analysis and the Frechet distance."""
        return self.tokens(tiles).mean(axis=1).astype(jnp.float32)

    def predict_parameters(self, tiles: jnp.ndarray) -> jnp.ndarray:
        """Standardized urban-form parameters predicted from the pooled embedding."""
        return self.param_head(self.embed(tiles))

    def reconstruct(self, tiles: jnp.ndarray, rng: jax.Array, mask_ratio: float) -> tuple[jnp.ndarray, jnp.ndarray]:
        """MAE: encode a random subset of patches, predict every patch's pixel logits.

        Returns the logits (B, N, p*p*C) and the mask (B, N), 1 where a patch was hidden.
        """
        b = tiles.shape[0]
        n = (self.tile_px // self.patch) ** 2
        n_keep = max(1, int(round(n * (1.0 - mask_ratio))))
        order = jnp.argsort(jax.random.uniform(rng, (b, n)), axis=1)
        keep = order[:, :n_keep]
        visible = self.to_decoder(self.tokens(tiles, keep))
        full = jnp.broadcast_to(self.mask_token.astype(self.dtype), (b, n, self.decoder_dim))
        full = full.at[jnp.arange(b)[:, None], keep].set(visible)
        logits = self.to_pixels(self.decoder(full + self.decoder_pos.astype(self.dtype))).astype(jnp.float32)
        mask = jnp.ones((b, n)).at[jnp.arange(b)[:, None], keep].set(0.0)
        return logits, mask

    def __call__(self, tiles: jnp.ndarray, rng: jax.Array, mask_ratio: float = 0.75):
        """Both training outputs (initialises every parameter)."""
        return self.reconstruct(tiles, rng, mask_ratio), self.predict_parameters(tiles)


def encoder_from_config(cfg: Any, tile_px: int, channels: int, n_params: int,
                        dtype: Any = jnp.float32) -> LayoutEncoder:
    """The encoder an experiment config's ``encoder`` block describes (trainer and inference build it alike)."""
    return LayoutEncoder(tile_px=tile_px, channels=channels, n_params=n_params, patch=cfg.patch, dim=cfg.dim,
                         depth=cfg.depth, heads=cfg.heads, decoder_dim=cfg.decoder_dim,
                         decoder_depth=cfg.decoder_depth, dtype=dtype)
