"""Layers against independent references: hand formulas, symmetric (PyTorch) padding, numpy."""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from conftest import op_types
from larq_adaptive.layers import TorchPadding2D
from larq_adaptive.padding import torch_pads


@pytest.fixture
def rng():
    return np.random.default_rng(1)


def grads_of(layer, x, c, **call_kwargs):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, **call_kwargs) * c)
    return tape.gradient(loss, [x] + layer.trainable_weights)


@pytest.mark.parametrize("training", [False, True])  # exact form / written-out backward
def test_maxout_forward_and_gradients(rng, training):
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    layer = lqa.layers.Maxout()
    layer.build(x.shape)
    np.testing.assert_array_equal(layer.pos_scale.numpy(), 1.0)
    np.testing.assert_array_equal(layer.neg_scale.numpy(), 0.25)
    p = np.array([1.5, -0.3, 0.7, 1.0], np.float32)  # negative slopes allowed (official ckpt has them)
    n = np.array([0.1, -0.9, 0.25, 1.2], np.float32)
    layer.pos_scale.assign(p)
    layer.neg_scale.assign(n)
    expected = np.where(x > 0, p * x, n * x)
    np.testing.assert_allclose(layer(x, training=training).numpy(), expected, rtol=1e-6)
    dx, dp, dn = [g.numpy() for g in grads_of(layer, x, c, training=training)]
    np.testing.assert_allclose(dx, c * np.where(x > 0, p, n), rtol=1e-6)
    np.testing.assert_allclose(dp, (c * np.maximum(x, 0)).sum((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dn, (c * np.minimum(x, 0)).sum((0, 1, 2)), rtol=1e-5)


@pytest.mark.parametrize("dtype, rtol", [(tf.float32, 1e-6), (tf.bfloat16, 2e-2)])
def test_two_slope_hand_derived_in_float32_and_bfloat16(rng, dtype, rtol):
    from larq_adaptive.layers.activations import two_slope

    x = rng.normal(size=(4, 5, 5, 3)).astype(np.float32)
    x[0, 0, 0] = 0.0  # the documented choice at 0: slope n
    c = rng.normal(size=x.shape).astype(np.float32)
    p, n = np.array([1.5, -0.3, 0.7], np.float32), np.array([0.1, -0.9, 1.2], np.float32)
    # inputs rounded to the dtype first, so the references see the same numbers
    x, c, p, n = [tf.cast(tf.cast(v, dtype), tf.float32).numpy() for v in (x, c, p, n)]
    args = [tf.constant(v, dtype) for v in (x, p, n)]
    with tf.GradientTape() as tape:
        tape.watch(args)
        y = two_slope(*args)
    grads = tape.gradient(y, args, output_gradients=tf.constant(c, dtype))
    assert y.dtype == dtype and all(g.dtype == dtype for g in grads)
    slope = np.where(x > 0, p, n)
    tolerance = dict(rtol=rtol, atol=rtol * 1e-3)
    np.testing.assert_allclose(tf.cast(y, tf.float32), slope * x, **tolerance)
    np.testing.assert_allclose(tf.cast(grads[0], tf.float32), c * slope, **tolerance)
    dp, dn = (c * x * (x > 0)).sum((0, 1, 2)), (c * x * (x <= 0)).sum((0, 1, 2))
    np.testing.assert_allclose(tf.cast(grads[1], tf.float32), dp, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(tf.cast(grads[2], tf.float32), dn, rtol=rtol, atol=rtol)


def test_two_slope_uses_exactly_p_and_n_in_bfloat16(rng):
    """The slope is p or n itself, not n + (p - n) (which rounds p - n in bfloat16:
    p = 1, n = -0.3 would scale the identity branch by 0.996)."""
    from larq_adaptive.layers.activations import two_slope

    x = tf.constant(rng.normal(size=(2, 3, 3, 2)), tf.bfloat16)
    pos, neg = tf.constant([1.0, 0.01], tf.bfloat16), tf.constant([-0.3, -2.0], tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = two_slope(x, pos, neg)
    dx = tape.gradient(y, x, output_gradients=tf.ones_like(x))
    expected = tf.where(x > 0, x * pos, x * neg)  # one bfloat16 rounding of p x or n x
    np.testing.assert_array_equal(tf.cast(y, tf.float32), tf.cast(expected, tf.float32))
    np.testing.assert_array_equal(tf.cast(dx, tf.float32),
                                  tf.cast(tf.where(x > 0, pos, neg) + 0 * x, tf.float32))


def test_fit_takes_the_two_slope_path_and_predict_the_exact_one(monkeypatch):
    """model.fit traces Maxout through two_slope and RPReLU/DyPReLU through prelu (the faster
    backwards); predict and export through the exact forms (PReLU: one TFLite op)."""
    from larq_adaptive.layers import activations

    calls = []

    def counting(function):
        def wrapped(*args):
            calls.append(function.__name__)
            return function(*args)
        return wrapped

    for name in ("two_slope", "prelu"):
        monkeypatch.setattr(activations, name, counting(getattr(activations, name)))
    data = np.ones((2, 4, 4, 3), np.float32), np.zeros((2, 2), np.float32)
    for layer, path in ((lqa.layers.Maxout(), "two_slope"), (lqa.layers.RPReLU(), "prelu"),
                        (lqa.layers.DyPReLU(), "prelu")):
        inputs = tf.keras.Input((4, 4, 3))
        x = layer(tf.keras.layers.Conv2D(4, 3, padding="same")(inputs))
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(tf.keras.layers.Flatten()(x)))
        model.compile("sgd", "mse")
        calls.clear()
        model.predict(data[0], verbose=0)
        model.evaluate(*data, verbose=0)
        assert calls == [], layer.name
        model.fit(*data, epochs=1, verbose=0)
        assert calls and set(calls) == {path}, (layer.name, calls)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_prelu_is_two_slope_with_unit_positive_slope_bit_for_bit(rng, dtype):
    from larq_adaptive.layers.activations import prelu, two_slope

    x = rng.normal(size=(3, 4, 4, 5)).astype(np.float32)
    x[0, 0, 0] = 0.0
    x, dy = tf.constant(x, dtype), tf.constant(rng.normal(size=x.shape), dtype)
    alpha = tf.constant([0.25, -0.5, 1.3, 0.0, 2.0], dtype)
    results = []
    for function, args in ((prelu, [x, alpha]), (two_slope, [x, tf.ones_like(alpha), alpha])):
        with tf.GradientTape() as tape:
            tape.watch(args)
            y = function(*args)
        grads = tape.gradient(y, args, output_gradients=dy)
        results.append([tf.cast(t, tf.float32).numpy() for t in (y, grads[0], grads[-1])])
    for mine, reference in zip(*results):
        np.testing.assert_array_equal(mine, reference)
    # and against the definition: y = x or alpha x, one rounding
    expected = tf.cast(tf.where(x > 0, x, x * alpha), tf.float32).numpy()
    np.testing.assert_array_equal(results[0][0], expected)


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("shape, scale", [
    ((2, 3, 3, 4), [0.1, -3.7, 0.0, 1e-3]),  # depthwise 1x1
    ((5, 4), [0.1, -3.7, 0.0, 1e-3]),  # other ranks: Mul
    ((2, 3, 3, 4), [-0.5]),  # one value for every channel: Mul, as before
])
def test_scale_channels_is_the_broadcast_product(rng, dtype, shape, scale):
    from larq_adaptive.channelwise import scale_channels

    x = tf.constant(rng.normal(size=shape) * 10.0 ** rng.integers(-3, 3, size=shape), dtype)
    # the oracle: numpy's float32 product of the dtype's values (exact for bfloat16), rounded
    # once to the dtype
    values = tf.cast(x, tf.float32).numpy() * tf.cast(tf.constant(scale, dtype), tf.float32).numpy()
    expected = tf.cast(tf.constant(values, tf.float32), dtype)
    result = scale_channels(x, tf.constant(scale, dtype))
    assert result.dtype == dtype and result.shape == x.shape
    np.testing.assert_array_equal(tf.cast(result, tf.float32), tf.cast(expected, tf.float32))


def test_two_slope_takes_python_numbers_as_slopes(rng):
    from larq_adaptive.layers.activations import two_slope

    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(two_slope(tf.constant(x), 1.0, 0.25).numpy(),
                                  np.where(x > 0, x, np.float32(0.25) * x))


@pytest.mark.parametrize("training", [False, True])  # native PReLU / written-out backward
def test_rprelu_forward_and_gradients(rng, training):
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    layer = lqa.layers.RPReLU()
    layer.build(x.shape)
    b1 = np.array([0.2, -0.4, 0.0, 1.0], np.float32)
    b2 = np.array([-0.1, 0.3, 0.5, 0.0], np.float32)
    layer.bias_in.assign(b1)
    layer.bias_out.assign(b2)
    slope = layer.prelu.alpha.numpy().reshape(-1)
    np.testing.assert_array_equal(slope, 0.25)  # PyTorch nn.PReLU init, one slope per channel
    slope = np.array([0.25, -0.5, 1.3, 0.0], np.float32)  # unconstrained, as PyTorch's
    layer.prelu.alpha.assign(slope.reshape(layer.prelu.alpha.shape))
    z = x + b1
    np.testing.assert_allclose(layer(x, training=training).numpy(), np.where(z > 0, z, slope * z) + b2, rtol=1e-6)
    grads = dict(zip(["x"] + [w.name.split("/")[-1] for w in layer.trainable_weights],
                     [g.numpy() for g in grads_of(layer, x, c, training=training)]))
    local = np.where(z > 0, 1.0, slope)
    np.testing.assert_allclose(grads["x"], c * local, rtol=1e-6)
    np.testing.assert_allclose(grads["bias_in:0"], (c * local).sum((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(grads["bias_out:0"], c.sum((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(grads["alpha:0"].reshape(-1), (c * np.minimum(z, 0)).sum((0, 1, 2)), rtol=1e-5)


def test_dyprelu_starts_as_rprelu_and_shifts_per_sample(rng):
    x = rng.normal(size=(3, 4, 4, 8)).astype(np.float32)
    dy = lqa.layers.DyPReLU(reduction=2, hidden_activation=None)
    static = lqa.layers.RPReLU()
    dy.build(x.shape)
    static.build(x.shape)
    np.testing.assert_allclose(dy(x).numpy(), static(x).numpy(), rtol=1e-6)
    w1 = rng.normal(size=(8, 4)).astype(np.float32)
    w2 = rng.normal(size=(4, 16)).astype(np.float32)
    dy.shift.fc1.set_weights([w1, np.zeros(4, np.float32)])
    dy.shift.fc2.set_weights([w2, np.zeros(16, np.float32)])
    shifts = x.mean(axis=(1, 2)) @ w1 @ w2
    gamma, zeta = shifts[:, None, None, :8], shifts[:, None, None, 8:]
    z = x - gamma
    np.testing.assert_allclose(dy(x).numpy(), np.where(z > 0, z, 0.25 * z) + zeta, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_dyprelu_gradients_through_the_hyper_function(rng, training):
    """Hand-derived: the direct PReLU path plus the path through GAP -> FC -> FC."""
    x = rng.normal(size=(3, 4, 4, 8)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    layer = lqa.layers.DyPReLU(reduction=2, hidden_activation=None)
    layer.build(x.shape)
    w1 = rng.normal(size=(8, 4)).astype(np.float32)
    w2 = rng.normal(size=(4, 16)).astype(np.float32)
    layer.shift.fc1.set_weights([w1, np.zeros(4, np.float32)])
    layer.shift.fc2.set_weights([w2, np.zeros(16, np.float32)])
    slope = np.array([0.25, -0.5, 1.3, 0.0, 0.25, 0.7, 2.0, -1.0], np.float32)
    layer.prelu.alpha.assign(slope.reshape(layer.prelu.alpha.shape))
    shifts = x.mean(axis=(1, 2)) @ w1 @ w2
    z = x - shifts[:, None, None, :8]
    local = np.where(z > 0, 1.0, slope)
    d_shifts = np.concatenate([-(c * local).sum((1, 2)), c.sum((1, 2))], axis=-1)
    d_pooled = d_shifts @ (w1 @ w2).T
    expected = c * local + d_pooled[:, None, None, :] / 16.0
    dx = grads_of(layer, x, c, training=training)[0].numpy()
    np.testing.assert_allclose(dx, expected, rtol=1e-4, atol=1e-5)


def test_option_a_shortcut_matches_numpy(rng):
    x = rng.normal(size=(2, 8, 8, 16)).astype(np.float32)
    y = lqa.layers.OptionAShortcut(32, 2)(x).numpy()
    expected = np.zeros((2, 4, 4, 32), np.float32)
    expected[..., 8:24] = x[:, ::2, ::2, :]  # even indices, C_out//4 zeros on each side
    np.testing.assert_array_equal(y, expected)
    odd = lqa.layers.OptionAShortcut(78, 2)(rng.normal(size=(1, 5, 5, 16)).astype(np.float32))
    assert odd.shape == (1, 3, 3, 78)


@pytest.mark.parametrize("size, strides", [(8, 2), (6, 3), (7, 2), (8, 1)])
def test_subsample_is_a_strided_slice_forward_and_backward(rng, size, strides):
    """``subsample`` (a reshape and ``tf.slice`` when the stride divides the size) against
    NumPy's ``x[:, ::s, ::s, :]`` and its gradient: dy scattered to the kept pixels, zeros
    elsewhere; in a graph with an unknown batch size too."""
    from larq_adaptive.layers.reshaping import subsample

    x = rng.normal(size=(3, size, size, 5)).astype(np.float32)
    kept = x[:, ::strides, ::strides, :]
    dy = rng.normal(size=kept.shape).astype(np.float32)
    expected_dx = np.zeros_like(x)
    expected_dx[:, ::strides, ::strides, :] = dy
    graph = tf.function(lambda t: subsample(t, strides)).get_concrete_function(
        tf.TensorSpec((None, size, size, 5)))
    np.testing.assert_array_equal(graph(tf.constant(x)).numpy(), kept)
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = subsample(inputs, strides)
    np.testing.assert_array_equal(y.numpy(), kept)
    np.testing.assert_array_equal(tape.gradient(y, inputs, tf.constant(dy)).numpy(), expected_dx)


def symmetric_reference(x, kernel, stride, pad):
    """PyTorch semantics: zero-pad `pad` on every side, VALID conv."""
    xp = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.nn.conv2d(xp, kernel, stride, "VALID").numpy()


@pytest.mark.parametrize("size, kernel_size, stride", [(8, 3, 1), (8, 3, 2), (7, 3, 2), (9, 7, 2), (8, 1, 2)])
def test_padded_conv_equals_symmetric_padding(rng, size, kernel_size, stride):
    x = rng.normal(size=(2, size, size, 3)).astype(np.float32)
    layer = lqa.layers.PaddedQuantConv2D(4, kernel_size, strides=stride, use_bias=False)
    y = layer(x).numpy()
    ref = symmetric_reference(x, layer.kernel.numpy(), stride, kernel_size // 2)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # LCE-safe form: never pad more after than before (spec larq_integration 8.1).
    before, after = torch_pads(size, kernel_size, stride, kernel_size // 2)
    assert before == kernel_size // 2 and after <= before


@pytest.mark.parametrize("size, stride, pad_values, padded", [
    (8, 1, 0.0, False), (7, 2, 0.0, False), (8, 2, 0.0, True), (8, 1, 1.0, True)])
def test_padded_conv_lets_the_convolution_pad_where_torch_padding_is_same(
        size, stride, pad_values, padded):
    """Zero padding that equals TF "same" (stride 1, stride 2 on odd sizes) is the conv's own
    (no Pad op, no Slice in the gradient; the values: the test above); elsewhere, and for
    +1 padding, an explicit pad."""
    layer = lqa.layers.PaddedQuantConv2D(4, 3, strides=stride, pad_values=pad_values,
                                         input_quantizer="ste_sign", use_bias=False)
    x = tf.zeros([2, size, size, 3])
    layer.build(x.shape)
    assert any(kind.startswith("Pad") for kind in op_types(layer, x)) == padded


def test_padded_conv_pads_after_the_input_quantizer(rng):
    x = rng.normal(size=(1, 5, 5, 2)).astype(np.float32) + 3.0  # all positive: sign = +1
    layer = lqa.layers.PaddedQuantConv2D(1, 3, input_quantizer="ste_sign", use_bias=False,
                                         kernel_initializer="ones")
    y = layer(x).numpy()[0, :, :, 0]
    assert y[2, 2] == 18.0  # interior: 9 taps x 2 channels of +1
    assert y[0, 0] == 8.0  # corner: 4 taps of +1, padded zeros stay 0 (not sign(0) = +1)


def test_torch_max_pool_padding_is_minus_infinity():
    x = -np.ones((1, 4, 4, 1), np.float32)
    padded = TorchPadding2D(3, 2, 1, value=float("-inf"))(x)
    pooled = tf.nn.max_pool2d(padded, 3, 2, "VALID").numpy()
    np.testing.assert_array_equal(pooled, -1.0)  # zero padding would give 0 at the border


@pytest.mark.parametrize("size, stride, kernel_size", [(8, 1, 3), (8, 2, 3), (7, 2, 3), (6, 1, 1), (9, 1, 3)])
def test_decomposed_adabin_conv_equals_direct_borders_included(rng, size, stride, kernel_size):
    x = rng.normal(0.2, 1.0, size=(3, size, size, 5)).astype(np.float32)
    direct = lqa.layers.AdaBinConv2D(6, kernel_size, strides=stride)
    y_direct = direct(x)
    kernel = rng.normal(0.03, 0.05, size=direct.kernel.shape).astype(np.float32)  # non-zero centers
    direct.set_weights([kernel, np.float32(0.7), np.float32(0.3), np.float32(10.0), np.float32(0.1)])
    y_direct = direct(x).numpy()

    decomposed = lqa.layers.AdaBinConv2D.from_config({**direct.get_config(), "decomposed": True})
    decomposed.build(x.shape)
    decomposed.set_weights(direct.get_weights())
    y_decomposed = decomposed(x).numpy()
    assert y_decomposed.shape == y_direct.shape
    np.testing.assert_allclose(y_decomposed, y_direct, rtol=1e-5, atol=1e-5)
    # The border really differs from a +-1 (pad-with-one) convolution, so the correction matters.
    if kernel_size > 1:
        assert np.abs(y_direct[:, 0] - y_direct[:, 1]).max() > 0


def test_adabin_conv_matches_numpy_reference(rng):
    """Direct form against an independent numpy AdaBin conv (official zero padding after binarization)."""
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    layer = lqa.layers.AdaBinConv2D(4, 3, strides=2)
    layer(x)
    alpha, beta = 0.8, -0.2
    kernel = layer.kernel.numpy()
    layer.set_weights([kernel, np.float32(alpha), np.float32(beta), np.float32(10.0), np.float32(0.1)])
    xb = alpha * (np.where((x - beta) / alpha >= 0, 1.0, -1.0) + beta)
    mu = kernel.mean(axis=(0, 1, 2))
    sd = kernel.std(axis=(0, 1, 2))
    wb = sd * np.where((kernel - mu) / sd >= 0, 1.0, -1.0) + mu
    xp = np.pad(xb, [(0, 0), (1, 1), (1, 1), (0, 0)])
    ref = np.zeros((2, 3, 3, 4))
    for i in range(3):
        for j in range(3):
            patch = xp[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
            ref[:, i, j, :] = np.tensordot(patch, wb, axes=([1, 2, 3], [0, 1, 2]))
    np.testing.assert_allclose(layer(x).numpy(), ref, rtol=1e-5, atol=1e-5)
