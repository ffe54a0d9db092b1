"""The model layers' convolution shortcut against an independent float64 NumPy convolution."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from urbangen.models.layers import SMALL_IMAGE_PIXELS, small_input_conv

DIMENSIONS = lax.conv_dimension_numbers((1, 1, 1, 1), (1, 1, 1, 1), ("NHWC", "HWIO", "NHWC"))


def _numpy_conv(x: np.ndarray, w: np.ndarray, strides: tuple[int, int], padding) -> np.ndarray:
    """Cross-correlation as every model layer means it, in float64, one output pixel at a time."""
    x = np.pad(x.astype(np.float64), ((0, 0), padding[0], padding[1], (0, 0)))
    kh, kw = w.shape[:2]
    out_h, out_w = (x.shape[1] - kh) // strides[0] + 1, (x.shape[2] - kw) // strides[1] + 1
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for r in range(out_h):
        for c in range(out_w):
            window = x[:, r * strides[0]:r * strides[0] + kh, c * strides[1]:c * strides[1] + kw]
            out[:, r, c] = np.einsum("bijc,ijco->bo", window, w.astype(np.float64))
    return out


@pytest.mark.parametrize("shape, kernel, strides, padding", [
    ((2, 2, 2, 64), (3, 3, 64, 32), (1, 1), ((1, 1), (1, 1))),  # smaller than the kernel: the pathological case
    ((2, 8, 8, 16), (4, 4, 16, 8), (2, 2), ((1, 1), (1, 1))),  # a U-Net's inner downsampling
    ((1, 16, 16, 4), (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1))),  # exactly SMALL_IMAGE_PIXELS
    ((1, 20, 20, 3), (4, 4, 3, 2), (2, 2), ((1, 1), (1, 1))),  # larger: XLA's own convolution
])
def test_the_convolution_shortcut_is_the_convolution(shape, kernel, strides, padding):
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=shape).astype(np.float32), rng.normal(size=kernel).astype(np.float32)
    got = np.asarray(small_input_conv(jnp.asarray(x), jnp.asarray(w), strides, padding,
                                      dimension_numbers=DIMENSIONS))
    want = _numpy_conv(x, w, strides, padding)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert (shape[1] * shape[2] <= SMALL_IMAGE_PIXELS) == (shape[1] < 20)  # both paths are exercised


def test_the_shortcut_s_gradients_are_the_convolution_s():
    """Trained through: gradients of both inputs within float32 rounding of lax.conv_general_dilated's."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 32)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 32, 16)).astype(np.float32))
    pad = ((1, 1), (1, 1))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(x, w, (1, 1), pad, dimension_numbers=DIMENSIONS)))

    ours = jax.grad(loss(small_input_conv), argnums=(0, 1))(x, w)
    plain = jax.grad(loss(lax.conv_general_dilated), argnums=(0, 1))(x, w)
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))
