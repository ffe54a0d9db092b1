"""Building blocks shared by the models."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from data_pipeline.errors import InvalidValueError

#: pix2pix initialises every conv from N(0, 0.02) (Isola et al. 2017, reference code).
pix2pix_init = nn.initializers.normal(stddev=0.02)

#: Upsampling paths of the decoders; see :class:`Upsample2x`.
UPSAMPLE_MODES = ("subpixel", "transpose")


#: Images of at most this many pixels are convolved by :func:`small_input_conv` as one matrix product.
SMALL_IMAGE_PIXELS = 256


def small_input_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                     dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """``lax.conv_general_dilated`` that convolves small images as one matrix product (im2col).

    XLA:CPU's convolution is slow on the few-pixel, many-channel images of a
    U-Net's inner levels, pathologically so when the image is smaller than
    the kernel window (a 3x3 convolution of a 2x2 image from 1024 to 2048
    channels: 555 ms against 36 ms in PyTorch; on 8x8 images im2col halves
    the forward-and-backward time). Up to :data:`SMALL_IMAGE_PIXELS` pixels we
    gather the shifted, strided copies and multiply once: the same function
    and parameters. Everything else goes to ``lax.conv_general_dilated``.
    """
    simple = (dimension_numbers is not None and tuple(dimension_numbers.lhs_spec) == (0, 3, 1, 2)
              and tuple(dimension_numbers.rhs_spec) == (3, 2, 0, 1) and feature_group_count == 1
              and not isinstance(padding, str)
              and all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ())))
    if not simple or lhs.shape[1] * lhs.shape[2] > SMALL_IMAGE_PIXELS:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, precision=precision, **kwargs)
    kh, kw, cin, cout = rhs.shape
    sh, sw = window_strides
    x = jnp.pad(lhs, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    out_h, out_w = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    cols = jnp.concatenate([x[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw]
                            for i in range(kh) for j in range(kw)], axis=-1)
    return jnp.dot(cols, rhs.reshape(kh * kw * cin, cout), precision=precision)


def depth_to_space(x: jnp.ndarray, block: int = 2) -> jnp.ndarray:
    """Rearrange ``(N, H, W, C * b * b)`` into ``(N, H * b, W * b, C)`` (pixel shuffle)."""
    n, h, w, c = x.shape
    out_c = c // (block * block)
    x = x.reshape(n, h, w, block, block, out_c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * block, w * block, out_c)


class Upsample2x(nn.Module):
    """Double the resolution with learned weights.

    ``subpixel`` (default) is a 3x3 convolution to ``4 * features`` channels,
    then depth-to-space (Shi et al. 2016). pix2pix's ``ConvTranspose(4,
    stride 2, padding 1)`` is the special case in which each of the four
    output phases uses only a 2x2 part of the 3x3 kernel, so this path spans
    every function the transposed convolution does (and more), has no
    checkerboard artefacts from uneven overlap, and has a fast gradient on
    XLA:CPU, where the transposed convolution's gradient is pathologically
    slow (REFERENCES.md: 19 s against 0.49 s in PyTorch for one layer). The
    exact 2x2-phase equivalent of the transposed convolution was measured
    too: its kernel gradient is no faster than the 3x3 path's on XLA:CPU
    (and 35x slower with the padding inside the convolution).
    ``transpose`` is the transposed convolution itself, for comparison.
    """

    features: int
    mode: str = "subpixel"
    use_bias: bool = False
    dtype: Any = jnp.float32
    kernel_init: Any = pix2pix_init

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.mode == "subpixel":
            y = nn.Conv(self.features * 4, (3, 3), padding=((1, 1), (1, 1)), use_bias=self.use_bias,
                        kernel_init=self.kernel_init, dtype=self.dtype, conv_general_dilated=small_input_conv)(x)
            return depth_to_space(y, 2)
        if self.mode == "transpose":
            return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                                    use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype)(x)
        raise InvalidValueError(f"unknown upsample mode {self.mode!r}; expected one of {UPSAMPLE_MODES}")
