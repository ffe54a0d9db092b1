"""What the benchmarks divide by: the FLOP count of a jit function, against the count by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks._common import lowered_flops


def test_lowered_flops_count_a_convolution_and_a_matrix_product_as_by_hand():
    def step(x, kernel, w):
        y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y.reshape(y.shape[0], -1) @ w

    x = jax.ShapeDtypeStruct((2, 16, 16, 3), jnp.bfloat16)
    kernel = jax.ShapeDtypeStruct((3, 3, 3, 8), jnp.bfloat16)
    w = jax.ShapeDtypeStruct((14 * 14 * 8, 10), jnp.bfloat16)
    # A multiply and an add per kernel tap and input channel, for each output value: 2 x 9 x 3 per value of
    # 2 x 14 x 14 x 8, and 2 x 1568 per value of the 2 x 10 product. (With "SAME" padding XLA leaves out the
    # taps that fall on the padding.)
    by_hand = 2 * 9 * 3 * (2 * 14 * 14 * 8) + 2 * (14 * 14 * 8) * (2 * 10)
    assert abs(lowered_flops(jax.jit(step).lower(x, kernel, w)) - by_hand) <= 0.01 * by_hand
