"""pix2pix: U-Net generator and 70x70 PatchGAN discriminator (Isola et al. 2017).

The architecture follows the reference code (junyanz/pytorch-CycleGAN-and-pix2pix,
``unet_256`` and ``basic``), with one deliberate change: the decoder upsamples
with :class:`~urbangen.models.layers.Upsample2x` (sub-pixel convolution) by
default instead of a transposed convolution; see that class for why.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from data_pipeline.errors import InvalidValueError
from urbangen.models.layers import Upsample2x, pix2pix_init, small_input_conv


def unet_depth(tile_px: int) -> int:
    """Number of stride-2 downsamplings that take ``tile_px`` to 1 pixel (8 for 256)."""
    depth = int(math.log2(tile_px))
    if 2**depth != tile_px or depth < 5:
        raise InvalidValueError(f"the U-Net needs a power-of-two tile size of at least 32 px, got {tile_px}")
    return depth


class UNetGenerator(nn.Module):
    """U-Net from condition maps to layout channels in [-1, 1].

    Attributes
    ----------
    out_channels
        Layout channels generated.
    depth
        Downsamplings; ``unet_depth(tile_px)`` reaches a 1x1 bottleneck.
    ngf
        Filters of the outermost layer; deeper layers use up to ``8 * ngf``.
    upsample
        ``"subpixel"`` or ``"transpose"`` (:class:`Upsample2x`).
    dtype
        Computation dtype (``bfloat16`` for mixed precision); parameters stay float32.
    """

    out_channels: int
    depth: int = 8
    ngf: int = 64
    dropout_rate: float = 0.5
    upsample: str = "subpixel"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, *, train: bool, dropout: bool | None = None) -> jnp.ndarray:
        """Generate layouts.

        ``train`` selects batch statistics (and updates them); ``dropout``
        (default: ``train``) is pix2pix's only noise source and is kept on when
        generating, as in the reference implementation.
        """
        dropout = train if dropout is None else dropout
        n = self.depth
        feats = [self.ngf * min(2**i, 8) for i in range(n)]
        bn = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)  # noqa: E731
        conv = lambda f: nn.Conv(f, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False,  # noqa: E731
                                 kernel_init=pix2pix_init, dtype=self.dtype, conv_general_dilated=small_input_conv)

        x = x.astype(self.dtype)
        skips = []
        h = x
        for i in range(n):
            if i > 0:
                h = nn.leaky_relu(h, 0.2)
            h = conv(feats[i])(h)
            if 0 < i < n - 1:
                h = bn()(h)
            skips.append(h)

        y = skips[-1]
        for i in range(n - 1, 0, -1):
            y = Upsample2x(feats[i - 1], mode=self.upsample, dtype=self.dtype)(nn.relu(y))
            y = bn()(y)
            if n - 4 <= i <= n - 2:  # the three 8*ngf blocks around the innermost one
                y = nn.Dropout(self.dropout_rate, deterministic=not dropout)(y)
            y = jnp.concatenate([y, skips[i - 1]], axis=-1)
        y = Upsample2x(self.out_channels, mode=self.upsample, use_bias=True, dtype=self.dtype)(nn.relu(y))
        return jnp.tanh(y).astype(jnp.float32)


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: one real/fake logit per overlapping patch (30x30 at 256 px)."""

    ndf: int = 64
    n_layers: int = 3
    #: "batch" (the reference) or "none".
    norm: str = "batch"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, condition: jnp.ndarray, layout: jnp.ndarray, *, train: bool) -> jnp.ndarray:
        pad = ((1, 1), (1, 1))
        h = jnp.concatenate([condition, layout], axis=-1).astype(self.dtype)
        h = nn.Conv(self.ndf, (4, 4), strides=(2, 2), padding=pad, kernel_init=pix2pix_init, dtype=self.dtype)(h)
        h = nn.leaky_relu(h, 0.2)
        for i in range(1, self.n_layers + 1):
            stride = 2 if i < self.n_layers else 1
            h = nn.Conv(self.ndf * min(2**i, 8), (4, 4), strides=(stride, stride), padding=pad,
                        use_bias=self.norm == "none", kernel_init=pix2pix_init, dtype=self.dtype)(h)
            if self.norm == "batch":
                h = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(h)
            elif self.norm != "none":
                raise InvalidValueError(f"the discriminator's norm must be 'batch' or 'none', got {self.norm!r}")
            h = nn.leaky_relu(h, 0.2)
        h = nn.Conv(1, (4, 4), strides=(1, 1), padding=pad, kernel_init=pix2pix_init, dtype=self.dtype)(h)
        return h.astype(jnp.float32)


def generator_from_config(cfg: Any, tile_px: int, out_channels: int, dtype: Any = jnp.float32) -> UNetGenerator:
    """The generator an experiment config's ``pix2pix`` block describes (trainer and inference build it alike)."""
    return UNetGenerator(out_channels=out_channels, depth=unet_depth(tile_px), ngf=cfg.ngf, dropout_rate=cfg.dropout,
                         upsample=cfg.upsample, dtype=dtype)


class LatentEncoder(nn.Module):
    """BicycleGAN's encoder, made spatial: a layout to a Gaussian posterior over a coarse latent map.

    The latent is a ``(t / stride, t / stride, latent_channels)`` map rather
    than BicycleGAN's one vector, so a layout larger than a tile can share one
    latent field across overlapping tiles (no seams where they are blended),
    and the field's structure reaches the generator where it acts.

    Attributes
    ----------
    latent_channels
        Channels of the latent map.
    stride
        Downsampling from the tile to the latent map (a power of two).
    nef
        Filters of the first layer, doubled at each downsampling up to ``4 * nef``.
    """

    latent_channels: int
    stride: int = 8
    nef: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, layout: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """Posterior mean and log-variance, each (B, t / stride, t / stride, latent_channels)."""
        h = layout.astype(self.dtype)
        h = nn.leaky_relu(nn.Conv(self.nef, (3, 3), kernel_init=pix2pix_init, dtype=self.dtype)(h), 0.2)
        for i in range(int(math.log2(self.stride))):
            h = nn.Conv(self.nef * min(2 ** (i + 1), 4), (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                        kernel_init=pix2pix_init, dtype=self.dtype, conv_general_dilated=small_input_conv)(h)
            h = nn.leaky_relu(h, 0.2)
        out = nn.Conv(2 * self.latent_channels, (3, 3), kernel_init=pix2pix_init, dtype=self.dtype,
                      conv_general_dilated=small_input_conv)(h).astype(jnp.float32)
        mean, logvar = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(logvar, -10.0, 10.0)


LATENT_UPSAMPLING = ("nearest", "bilinear")


def upsample_latent(z: jnp.ndarray, stride: int, method: str = "nearest") -> jnp.ndarray:
    """Latent cells (B, t/stride, t/stride, k) to pixels (B, t, t, k).

    ``nearest`` repeats each cell over the ``stride x stride`` pixels it
    covers; ``bilinear`` interpolates between cell centres (edge cells
    extend to the tile's edge), so the generator sees no cell borders to
    draw along.
    """
    if method == "nearest":
        return jnp.repeat(jnp.repeat(z, stride, axis=1), stride, axis=2)
    if method == "bilinear":
        b, h, w, k = z.shape
        return jax.image.resize(z, (b, h * stride, w * stride, k), method="bilinear")
    raise InvalidValueError(f"latent upsampling must be one of {LATENT_UPSAMPLING}, got {method!r}")


def latent_encoder_from_config(cfg: Any, dtype: Any = jnp.float32) -> LatentEncoder | None:
    """The latent encoder of a ``pix2pix`` config block, or None when it has no latent (``latent_channels`` 0)."""
    if not cfg.get("latent_channels", 0):
        return None
    return LatentEncoder(latent_channels=cfg.latent_channels, stride=cfg.latent_stride, nef=cfg.nef, dtype=dtype)
