"""larq_adaptive.hyper: DyBNN's pooled context (DySign's threshold, DyPReLU's shifts).

Oracles: numpy means in float64 of the same bfloat16 inputs, rounded once to bfloat16, and
hand-derived gradients."""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from conftest import op_types
from larq_adaptive.hyper import global_average_pool, with_global_average_pool


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _bfloat16(values):
    return tf.cast(tf.constant(values, tf.float32), tf.bfloat16)


def _as_float64(t):
    return tf.cast(t, tf.float64).numpy()


@pytest.mark.parametrize("pool", [global_average_pool, lambda x: with_global_average_pool(x)[1]])
@pytest.mark.parametrize("size", [32, 8, 7, 17])
def test_pooled_context_is_the_mean_rounded_once_in_bfloat16(pool, size):
    """At 32 x 32 and 8 x 8 the correctly rounded mean of the bfloat16 inputs (a sum
    accumulated in float32, rounded once, divided by a power of two); at 7 x 7 and 17 x 17
    (289 pixels are not exact in bfloat16) within 1.5 bfloat16 units in the last place of
    the exact mean (the sum's rounding: at most one unit of the mean; the final rounding:
    half a unit)."""
    x = _bfloat16(np.random.default_rng(size).normal(0.5, 1.0, (16, size, size, 16)))
    exact = _as_float64(x).mean(axis=(1, 2))
    rounded = _as_float64(tf.cast(tf.constant(exact, tf.float32), tf.bfloat16))
    got = _as_float64(tf.function(pool)(x))
    ulp = 2.0 ** (np.floor(np.log2(np.abs(exact))) - 7)
    if size in (32, 8):
        np.testing.assert_array_equal(got, rounded)
    else:
        assert np.all(np.abs(got - exact) <= 1.5 * ulp)


def test_with_global_average_pool_gradient_is_one_broadcasting_add(rng):
    """(x, mean of x): the input gradient is dx + dpooled / (H W) at every pixel, formed by
    one broadcasting add, no full-size BroadcastTo or AddN (hand-derived)."""
    x = tf.constant(rng.normal(size=(3, 4, 5, 6)), tf.float32)
    dy = tf.constant(rng.normal(size=x.shape), tf.float32)
    dpooled = tf.constant(rng.normal(size=(3, 6)), tf.float32)

    def gradient(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y, pooled = with_global_average_pool(t)
        return y, pooled, tape.gradient([y, pooled], t, output_gradients=[dy, dpooled])

    y, pooled, dx = gradient(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(pooled.numpy(), x.numpy().mean(axis=(1, 2)), rtol=1e-6)
    expected = dy.numpy() + dpooled.numpy()[:, None, None, :] / 20.0
    np.testing.assert_allclose(dx.numpy(), expected, rtol=1e-6, atol=1e-7)
    types = op_types(gradient, x)
    assert "AddV2" in types and not types & {"BroadcastTo", "AddN", "Tile"}, types


@pytest.mark.parametrize("layer, call_kwargs", [
    (lambda: lqa.quantizers.DySign(reduction=4), {}),
    (lambda: lqa.layers.DyPReLU(reduction=4), {"training": True}),
])
def test_dybnn_layers_gradient_has_no_full_size_broadcast(rng, layer, call_kwargs):
    """DySign and DyPReLU take x and its pooled context from one op: their input gradient
    has no BroadcastTo or AddN (each a full-size pass, slower in bfloat16 than float32)."""
    x = tf.constant(rng.normal(size=(2, 8, 8, 16)), tf.float32)
    layer = layer()
    layer.build(x.shape)

    def gradient(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, **call_kwargs)
        return tape.gradient(y, t)

    types = op_types(gradient, x)
    assert "Mean" not in types and not types & {"BroadcastTo", "AddN"}, types
