"""Forward and backward of every quantizer against closed forms derived by hand (numpy)."""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.callbacks import ede_constants


def sign(x):  # larq convention: sign(0) = +1
    return np.where(x >= 0, 1.0, -1.0)


def approx_sign_grad(u):  # Bi-Real ApproxSign derivative
    return np.maximum(0.0, 2.0 - 2.0 * np.abs(u))


def run(quantizer, x, cotangent):
    """(output, d<c,q(x)>/dx, {variable name: gradient}) for a built quantizer."""
    x = tf.Variable(x)
    with tf.GradientTape(persistent=True) as tape:
        y = quantizer(x)
        loss = tf.reduce_sum(y * cotangent)
    grads = tape.gradient(loss, [x] + quantizer.trainable_weights)
    # "<quantizer>/threshold/fc1/kernel:0" -> "threshold/fc1/kernel"
    prefix = quantizer.name + "/"
    names = [w.name.split(":")[0] for w in quantizer.trainable_weights]
    names = [name[len(prefix):] if name.startswith(prefix) else name for name in names]
    return y.numpy(), grads[0].numpy(), dict(zip(names, [g.numpy() for g in grads[1:]]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_adabin_weight_forward_and_ede_gradient(rng):
    w = rng.normal(0.02, 0.05, size=(3, 3, 4, 5)).astype(np.float32)
    c = rng.normal(size=w.shape).astype(np.float32)
    k, t = 2.5, 0.7
    q = lqa.quantizers.AdaBinWeightQuantizer(k=k, t=t)
    y, dw, _ = run(q, w, c)

    flat_w = w.reshape(-1, 5).astype(np.float64)
    flat_c = c.reshape(-1, 5).astype(np.float64)
    n = flat_w.shape[0]
    mu = flat_w.mean(0)
    sigma = np.sqrt(((flat_w - mu) ** 2).mean(0))
    u = (flat_w - mu) / sigma
    expected = sigma * sign(u) + mu
    np.testing.assert_allclose(y.reshape(-1, 5), expected, rtol=1e-5, atol=1e-6)
    # Each filter takes exactly two values: center +- distance.
    for o in range(5):
        np.testing.assert_allclose(np.unique(y[..., o]), [mu[o] - sigma[o], mu[o] + sigma[o]], rtol=1e-5)

    # Hand-derived gradient through u, the mean and the (population) std:
    # dL/dW_j = u_j/n sum c Q + c_j g_j - 1/n sum c g - u_j/n sum c g u + 1/n sum c
    g = k * t * (1 - np.tanh(t * u) ** 2)
    big_q = sign(u)
    expected_grad = (
        u / n * (flat_c * big_q).sum(0)
        + flat_c * g
        - (flat_c * g).sum(0) / n
        - u / n * (flat_c * g * u).sum(0)
        + flat_c.sum(0) / n
    )
    np.testing.assert_allclose(dw.reshape(-1, 5), expected_grad, rtol=1e-4, atol=1e-5)


def test_adabin_weight_ede_state_is_non_trainable_and_used():
    q = lqa.quantizers.AdaBinWeightQuantizer()
    q.build((3, 3, 2, 2))
    assert q.trainable_weights == []
    assert sorted(w.name.split("/")[-1] for w in q.non_trainable_weights) == ["ede_k:0", "ede_t:0"]
    np.testing.assert_allclose([q.k.numpy(), q.t.numpy()], [10.0, 0.1])  # official layer defaults


def test_adabin_activation_forward_and_gradients(rng):
    x = rng.normal(0.3, 1.0, size=(2, 4, 4, 3)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    q = lqa.quantizers.AdaBinActivationQuantizer()
    q.build(x.shape)
    alpha, beta = 0.6, 0.25
    q.alpha.assign(alpha)
    q.beta.assign(beta)
    y, dx, grads = run(q, x, c)

    u = (x - beta) / alpha
    s = sign(u)
    np.testing.assert_allclose(y, alpha * (s + beta), rtol=1e-6)
    np.testing.assert_allclose(np.unique(y), [alpha * (beta - 1), alpha * (beta + 1)], rtol=1e-6)
    p = approx_sign_grad(u)
    np.testing.assert_allclose(dx, c * p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["beta"], (c * (alpha - p)).sum(), rtol=1e-4)
    np.testing.assert_allclose(grads["alpha"], (c * (s + beta - u * p)).sum(), rtol=1e-4)


def test_adabin_activation_weights_are_named_scalars():
    q = lqa.quantizers.AdaBinActivationQuantizer()
    q.build((None, 8, 8, 4))
    shapes = {w.name.split("/")[-1]: tuple(w.shape) for w in q.trainable_weights}
    assert shapes == {"alpha:0": (), "beta:0": ()}
    assert q.alpha.numpy() == 1.0 and q.beta.numpy() == 0.0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_approx_sign_matches_larq_bit_for_bit(rng, dtype):
    """``ste.approx_sign`` (relu form, no tf.where) and ``ApproxSignQuantizer`` built on
    it against larq's own ``approx_sign`` and the closed form, edges included: 0, +-1
    (slope 0), just inside +-1, beyond."""
    from larq_adaptive.ste import approx_sign

    edges = np.array([0.0, 1.0, -1.0, 0.99, -0.99, 1.01, -3.0, 0.5], np.float32)
    x = tf.cast(np.concatenate([edges, rng.normal(size=248).astype(np.float32)]), dtype)
    dy = tf.cast(rng.normal(size=256).astype(np.float32), dtype)
    results = []
    for function in (approx_sign, lq.quantizers.approx_sign,
                     lqa.quantizers.ApproxSignQuantizer(dtype=dtype)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        results.append((y.numpy(), tape.gradient(y, x, output_gradients=dy).numpy()))
    (y, dx), (larq_y, larq_dx), (layer_y, layer_dx) = results
    assert y.dtype == dx.dtype == x.dtype.as_numpy_dtype
    np.testing.assert_array_equal(y, larq_y)
    np.testing.assert_array_equal(dx, larq_dx)
    np.testing.assert_array_equal(layer_y, larq_y)  # the quantizer class (DWR's IR-Net units)
    np.testing.assert_array_equal(layer_dx, larq_dx)
    x32, dy32 = (np.asarray(t, np.float32) for t in (tf.cast(x, "float32"), tf.cast(dy, "float32")))
    np.testing.assert_array_equal(np.asarray(y, np.float32), sign(x32))
    np.testing.assert_allclose(np.asarray(dx, np.float32), dy32 * approx_sign_grad(x32),
                               rtol=1e-2 if dtype == "bfloat16" else 1e-6, atol=1e-6)
    assert np.all(np.asarray(dx, np.float32)[1:3] == 0)  # |x| = 1: slope 0


def test_rsign_forward_and_gradients(rng):
    x = rng.normal(size=(2, 3, 3, 4)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    q = lqa.quantizers.RSign()
    q.build(x.shape)
    b = np.array([0.3, -0.2, 0.0, 0.9], np.float32)
    q.bias.assign(b)
    y, dx, grads = run(q, x, c)
    np.testing.assert_array_equal(y, sign(x + b))
    p = approx_sign_grad(x + b)
    np.testing.assert_allclose(dx, c * p, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["bias"], (c * p).sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_reactnet_weight_forward_and_unscaled_masked_gradient(rng):
    w = rng.normal(0, 0.8, size=(3, 3, 4, 6)).astype(np.float32)
    c = rng.normal(size=w.shape).astype(np.float32)
    q = lqa.quantizers.ReActNetWeightQuantizer()
    y, dw, grads = run(q, w, c)
    scale = np.abs(w).mean(axis=(0, 1, 2))
    np.testing.assert_allclose(y, scale * sign(w), rtol=1e-6)
    np.testing.assert_allclose(dw, c * (np.abs(w) <= 1.0), rtol=1e-6)  # no scale factor
    assert grads == {}


def test_dysign_dynamic_threshold_forward_and_gradient(rng):
    n, h, w, ch = 2, 3, 3, 8
    x = rng.normal(size=(n, h, w, ch)).astype(np.float32)
    c = rng.normal(size=x.shape).astype(np.float32)
    q = lqa.quantizers.DySign(reduction=4, hidden_activation=None)
    q.build(x.shape)
    fc1, fc2 = q.threshold.fc1, q.threshold.fc2
    np.testing.assert_array_equal(fc2.kernel.numpy(), 0)  # starts as RSign
    w1 = rng.normal(size=(ch, 2)).astype(np.float32)
    b1 = rng.normal(size=2).astype(np.float32)
    w2 = rng.normal(size=(2, ch)).astype(np.float32)
    b2 = rng.normal(size=ch).astype(np.float32)
    bias = rng.normal(size=ch).astype(np.float32) * 0.1
    fc1.set_weights([w1, b1])
    fc2.set_weights([w2, b2])
    q.bias.assign(bias)
    y, dx, grads = run(q, x, c)

    gap = x.mean(axis=(1, 2))
    tau = (gap @ w1 + b1) @ w2 + b2
    arg = x - tau[:, None, None, :] + bias
    np.testing.assert_array_equal(y, sign(arg))
    p = approx_sign_grad(arg)
    direct = c * p
    # Through GAP: dtau/dgap = W1 W2 (linear hyper-function), d gap / dx = 1/(HW).
    through_tau = -(direct.sum(axis=(1, 2)) @ (w1 @ w2).T) / (h * w)
    np.testing.assert_allclose(dx, direct + through_tau[:, None, None, :], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(grads["bias"], direct.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
    # FC2's bias shifts tau, so its gradient is minus the static bias's.
    np.testing.assert_allclose(grads["threshold/fc2/bias"], -direct.sum(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)


def test_dysign_relu_hyper_function_forward(rng):
    x = rng.normal(size=(3, 4, 4, 16)).astype(np.float32)
    q = lqa.quantizers.DySign()  # reduction 16 -> one hidden unit, ReLU
    q.build(x.shape)
    w1 = rng.normal(size=(16, 1)).astype(np.float32)
    b1 = np.array([0.5], np.float32)
    w2 = rng.normal(size=(1, 16)).astype(np.float32)
    q.threshold.fc1.set_weights([w1, b1])
    q.threshold.fc2.set_weights([w2, np.zeros(16, np.float32)])
    tau = np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0) @ w2
    np.testing.assert_array_equal(q(x).numpy(), sign(x - tau[:, None, None, :]))
    assert q.threshold.macs == 16 * 1 + 1 * 16


def test_switchable_quantizer_is_identity_until_active(rng):
    w = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    q = lqa.quantizers.SwitchableQuantizer(lqa.quantizers.ReActNetWeightQuantizer())
    np.testing.assert_array_equal(q(w).numpy(), w)
    assert q.precision == 32 and q.final_precision == 1  # real-valued while inactive
    q.active.assign(1.0)
    assert q.precision == 1
    np.testing.assert_allclose(q(w).numpy(), np.abs(w).mean(axis=(0, 1, 2)) * sign(w), rtol=1e-6)


@pytest.mark.parametrize(
    "epoch, total, k, t",
    [(0, 400, 1000.0, 1e-3), (300, 400, 1.0, 1.0), (399, 400, 1.0, 10 ** (-3 + 4 * 399 / 400)),
     (1, 4, 100.0, 0.01), (2, 4, 10.0, 0.1), (3, 4, 1.0, 1.0)],
)
def test_ede_schedule_values(epoch, total, k, t):
    got_k, got_t = ede_constants(epoch, total)
    np.testing.assert_allclose([got_k, got_t], [k, t], rtol=1e-9)


def test_ede_schedule_callback_updates_every_adabin_layer_each_epoch():
    inp = tf.keras.Input((6, 6, 4))
    x = lqa.layers.AdaBinConv2D(4)(inp)
    x = lqa.layers.AdaBinConv2D(4)(x)
    model = tf.keras.Model(inp, tf.keras.layers.GlobalAveragePooling2D()(x))
    seen = []

    class Record(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append([(q.k.numpy(), q.t.numpy()) for q in
                         lqa.introspect.iter_quantizers(self.model, lqa.quantizers.AdaBinWeightQuantizer)])

    model.compile("sgd", "mse")
    data = np.ones((4, 6, 6, 4), np.float32), np.zeros((4, 4), np.float32)
    model.fit(*data, epochs=4, verbose=0, callbacks=[lqa.callbacks.EDESchedule(4), Record()])
    assert len(seen) == 4 and all(len(layers) == 2 for layers in seen)
    for epoch, layers in enumerate(seen):
        t = 10 ** (-3 + 4 * epoch / 4)
        for k_value, t_value in layers:
            np.testing.assert_allclose([k_value, t_value], [max(1 / t, 1.0), t], rtol=1e-6)
