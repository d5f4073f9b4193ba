"""larq_adaptive.channelwise: the depthwise-convolution forms give the element-wise ops'
numbers for every bfloat16 value, eagerly and inside a tf.function (where Grappler fuses
BiasAdd and Relu into the convolution), and carry the add's gradients.

The oracle is numpy: the float32 result of the bfloat16 inputs, rounded once to bfloat16 by a
cast, with subnormal inputs and results taken as 0 (TensorFlow's CPU threads flush them, in
the element-wise ops and oneDNN's alike), which is what TensorFlow's element-wise ops
compute."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import op_types
from larq_adaptive.channelwise import affine_channels, channel_dot, relu_affine, shift_channels

# every bfloat16 bit pattern once, as an NHWC tensor with 16 channels
ALL_BFLOAT16 = tf.bitcast(tf.constant(np.arange(2**16, dtype=np.uint16).reshape(16, 16, 16, 16)),
                          tf.bfloat16)
SHIFTS = [0.0, 1.0, -1.0, 0.25, 1e-3, -1e3, 3e-39, 7.5, -0.1, 1e30, -2.0, 0.5, 100.0, -1e-5,
          2.0**-8, 3.0]


def as_float32(t):
    return tf.cast(t, tf.float32).numpy()


def flush(values):
    """Subnormal float32 values (below 2^-126 in magnitude) as 0."""
    values = np.asarray(values, np.float32)
    return np.where(np.abs(values) < np.finfo(np.float32).tiny, np.float32(0), values)


def to_bfloat16(values):
    """numpy float32 values rounded once to bfloat16 (round to nearest even), subnormal
    results flushed, as float32."""
    return flush(as_float32(tf.cast(tf.constant(values, tf.float32), tf.bfloat16)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def assert_same_numbers(result, expected, where=None):
    """Equal values (+0 == -0) wherever ``where`` (default: everywhere)."""
    result, expected = as_float32(result), np.asarray(expected, np.float32)
    where = np.ones(result.shape, bool) if where is None else where
    same = (result == expected) | (np.isnan(result) & np.isnan(expected))
    assert same[where].all(), (f"{(~same & where).sum()} differ, e.g. "
                               f"{result[~same & where][:5]} vs {expected[~same & where][:5]}")


def run(function, *args, graph):
    return tf.function(function)(*args) if graph else function(*args)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_shift_channels_adds_every_bfloat16_value_exactly(graph):
    shift = tf.constant(SHIFTS, tf.bfloat16)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = to_bfloat16(flush(as_float32(ALL_BFLOAT16)) + flush(as_float32(shift)))
    assert_same_numbers(run(shift_channels, ALL_BFLOAT16, shift, graph=graph), expected)
    assert_same_numbers(run(lambda x, b: x + b, ALL_BFLOAT16, shift, graph=graph), expected)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_relu_affine_is_approx_signs_derivative_for_every_bfloat16_value(graph):
    magnitude = tf.math.abs(ALL_BFLOAT16)
    with np.errstate(over="ignore", invalid="ignore"):
        expected = to_bfloat16(np.maximum(np.float32(0), 2 - 2 * flush(as_float32(magnitude))))
    result = run(lambda x: relu_affine(x, -2.0, 2.0), magnitude, graph=graph)
    # NaN inputs: the fused ReLU gives 0 where TensorFlow's Relu passes NaN (docstring)
    assert_same_numbers(result, expected, where=~np.isnan(as_float32(magnitude)))
    # and the values the derivative takes: 0 at |x| >= 1, 2 at 0, linear between
    assert_same_numbers(relu_affine(tf.constant([[[[0.0, 0.5, 1.0, 3.0]]]], tf.bfloat16),
                                    -2.0, 2.0), [[[[2.0, 1.0, 0.0, 0.0]]]])


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.function"])
def test_affine_channels_rounds_as_documented_for_every_bfloat16_value(graph):
    """In a tf.function (the BiasAdd fused) ``s x + b`` is rounded once; eagerly the
    product is rounded first."""
    scale, shift = 2.5, -0.375  # both exact in bfloat16; 2.5 x is not
    with np.errstate(over="ignore", invalid="ignore"):
        product = np.float32(scale) * flush(as_float32(ALL_BFLOAT16))
        expected = to_bfloat16((product if graph else to_bfloat16(product)) + np.float32(shift))
    assert_same_numbers(run(lambda x: affine_channels(x, scale, shift), ALL_BFLOAT16,
                            graph=graph), expected)
    x = np.array([[[[0.5, -1.0, 3.0]]]], np.float32)  # float32: the element-wise ops
    np.testing.assert_array_equal(affine_channels(tf.constant(x), 2.5, -0.375), 2.5 * x - 0.375)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("shape", [(4, 6, 6, 16), (3, 5, 7, 30), (2, 4, 4, 86), (7, 16)],
                         ids=["16 channels", "30 channels", "86 channels", "rank 2"])
def test_channel_dot_is_the_per_channel_sum_of_products(rng, dtype, shape):
    a = tf.constant(rng.normal(size=shape), dtype)
    b = tf.constant(rng.normal(size=shape), dtype)
    exact = (as_float32(a).astype(np.float64) * as_float32(b)).sum(axis=tuple(range(len(shape) - 1)))
    result = channel_dot(a, b)
    assert result.dtype == dtype and result.shape == (shape[-1],)
    # NHWC: accumulated in float32 (an error of the order of float32's, not bfloat16's, in
    # the sums), then rounded once to the inputs' dtype; the fallback (Mul, Sum) rounds each
    # product to it first
    size = (np.abs(as_float32(a)) * np.abs(as_float32(b))).sum(axis=tuple(range(len(shape) - 1)))
    rounding = 2.0**-8 * np.abs(exact) if dtype == tf.bfloat16 else 0.0
    products = 2.0**-8 * size if dtype == tf.bfloat16 and len(shape) != 4 else 0.0
    assert (np.abs(as_float32(result) - exact) <= rounding + products + 1e-5 * size).all()
    graph = tf.function(channel_dot).get_concrete_function(
        tf.TensorSpec([None, *shape[1:]], dtype), tf.TensorSpec([None, *shape[1:]], dtype))
    kinds = {op.type for op in graph.graph.get_operations()}
    # NHWC: the depthwise filter gradient, no full-size product; other ranks: Mul and Sum
    assert ("DepthwiseConv2dNativeBackpropFilter" in kinds) == (len(shape) == 4)
    assert ("Mul" in kinds) == (len(shape) != 4)
    np.testing.assert_allclose(as_float32(graph(a, b)), as_float32(result))  # unknown batch


def test_shift_channels_gradients_are_the_adds(rng):
    x = tf.constant(rng.normal(size=(4, 5, 5, 16)), tf.bfloat16)
    dy = tf.constant(rng.normal(size=(4, 5, 5, 16)), tf.bfloat16)
    shift = tf.constant(SHIFTS[:8] * 2, tf.bfloat16)

    @tf.function
    def gradients(function):
        with tf.GradientTape() as tape:
            tape.watch([x, shift])
            y = function(x, shift)
        return tape.gradient(y, [x, shift], output_gradients=dy)

    dx, dshift = gradients(shift_channels)
    assert_same_numbers(dx, as_float32(dy))  # the identity: no pass through the convolution
    np.testing.assert_allclose(as_float32(dshift), as_float32(dy).sum(axis=(0, 1, 2)),
                               rtol=1e-2, atol=1e-2)
    # the same numbers as automatic differentiation of the broadcasting add
    _, dshift_add = gradients(lambda x, b: x + b)
    assert_same_numbers(dshift, dshift_add)


@pytest.mark.parametrize("dtype, fused", [(tf.bfloat16, True), (tf.float32, False)])
def test_the_depthwise_form_is_taken_for_bfloat16_nhwc_only(dtype, fused):
    x = tf.zeros([2, 3, 3, 4], dtype)
    vector = tf.zeros([4], dtype)
    assert ("DepthwiseConv2dNative" in op_types(shift_channels, x, vector)) == fused
    assert ("DepthwiseConv2dNative" in op_types(lambda x: relu_affine(x, -2.0, 2.0), x)) == fused
    # per-sample shifts (DyPReLU) and other ranks add
    for args in ((x, tf.zeros([2, 1, 1, 4], dtype)), (tf.zeros([2, 4], dtype), vector)):
        assert "DepthwiseConv2dNative" not in op_types(shift_channels, *args)


def test_fallbacks_compute_the_element_wise_values(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    per_sample = rng.normal(size=(2, 1, 1, 4)).astype(np.float32)
    np.testing.assert_array_equal(shift_channels(tf.constant(x), per_sample), x + per_sample)
    np.testing.assert_array_equal(shift_channels(tf.constant(x[:, 0, 0]), per_sample[:, 0, 0]),
                                  x[:, 0, 0] + per_sample[:, 0, 0])
    np.testing.assert_array_equal(relu_affine(tf.constant(x), -2.0, 2.0),
                                  np.maximum(0, 2 - 2 * x))
