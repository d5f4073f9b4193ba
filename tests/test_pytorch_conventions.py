"""PyTorch's training conventions that Keras does differently, against hand-derived values:
BatchNorm's running variance (unbiased, ``n / (n - 1)``) and SGD's momentum buffer
(``b = mu b + g; w -= lr b``, which differs from Keras' ``v = mu v - lr g`` once lr changes)."""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.layers import TorchBatchNormalization
from larq_adaptive.optimizers import TorchSGD
from larq_adaptive.training.stages import make_optimizer
from conftest import op_types

EPS = 1e-5


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _bn_reference(x, momentum, gamma, beta, mean0, var0):
    """PyTorch BatchNorm training step by hand: output and new running statistics."""
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    n = flat.shape[0]
    mean = flat.mean(0)
    biased = ((flat - mean) ** 2).sum(0) / n
    unbiased = ((flat - mean) ** 2).sum(0) / (n - 1)
    y = gamma * (x - mean) / np.sqrt(biased + EPS) + beta
    return y, momentum * mean0 + (1 - momentum) * mean, momentum * var0 + (1 - momentum) * unbiased


def _bn(cls, x, dtype):
    bn = cls(momentum=0.9, epsilon=EPS, dtype=dtype)
    bn.build(x.shape)
    bn.set_weights([np.full(x.shape[-1], 1.5), np.full(x.shape[-1], -0.25),
                    np.full(x.shape[-1], 0.5), np.full(x.shape[-1], 2.0)])
    y = bn(tf.constant(x, dtype), training=True)
    return bn, y.numpy()


@pytest.mark.parametrize("shape,dtype", [
    ((8, 5), "float32"), ((8, 5), "float64"), ((4, 3, 3, 5), "float32"), ((4, 3, 3, 5), "float64"),
    ((4, 3, 3, 16), "float32"),  # Keras' fused kernel; 5 channels take the padded one
    ((2, 3, 2, 3, 5), "float32"),  # 5-D: Keras' fused kernel (NDHWC), never padded
])
def test_torch_batch_normalization_tracks_the_unbiased_variance(rng, shape, dtype):
    x = rng.normal(1.0, 2.0, shape).astype(dtype)
    y_ref, mean_ref, var_ref = _bn_reference(x, 0.9, 1.5, -0.25, 0.5, 2.0)
    bn, y = _bn(TorchBatchNormalization, x, dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean_ref, rtol=tol)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var_ref, rtol=tol)
    # Inference uses the running statistics.
    y_eval = bn(tf.constant(x, dtype), training=False).numpy()
    expected = 1.5 * (x - mean_ref) / np.sqrt(var_ref + EPS) - 0.25
    np.testing.assert_allclose(y_eval, expected, rtol=tol, atol=tol)


def _bn_backward_reference(x, dy, gamma):
    """PyTorch BatchNorm's training backward by hand (float64): dx, dgamma, dbeta."""
    axes = tuple(range(x.ndim - 1))
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    mean, biased = x.mean(axes), x.var(axes)
    x_hat = (x - mean) / np.sqrt(biased + EPS)
    dx = gamma / np.sqrt(biased + EPS) * (dy - dy.mean(axes) - x_hat * (dy * x_hat).mean(axes))
    return dx, (dy * x_hat).sum(axes), dy.sum(axes)


@pytest.mark.parametrize("channels", [30, 32])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_torch_batch_normalization_training_gradients(rng, channels, policy):
    """Forward, running statistics and the three gradients against the hand-derived values,
    for a channel count the fused kernel handles at speed and one padded to its multiple."""
    x = rng.normal(1.0, 2.0, (8, 4, 4, channels)).astype("float32")
    dy = rng.normal(size=x.shape).astype("float32")
    if policy == "mixed_bfloat16":  # the layer sees (and the oracle gets) bfloat16 values
        x, dy = (tf.cast(tf.cast(t, tf.bfloat16), tf.float32).numpy() for t in (x, dy))
    bn = TorchBatchNormalization(momentum=0.9, epsilon=EPS, dtype=policy)
    bn.build(x.shape)
    bn.set_weights([np.full(channels, 1.5), np.full(channels, -0.25),
                    np.full(channels, 0.5), np.full(channels, 2.0)])
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        y = bn(inputs, training=True)
    grads = tape.gradient(y, [inputs, bn.gamma, bn.beta], output_gradients=tf.cast(dy, y.dtype))
    y_ref, mean_ref, var_ref = _bn_reference(x, 0.9, 1.5, -0.25, 0.5, 2.0)
    tol = 1e-4 if policy == "float32" else 2.0 ** -6  # bfloat16 outputs: 8 significant bits
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean_ref, rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), var_ref, rtol=1e-5)
    for got, expected in zip(grads, _bn_backward_reference(x, dy, 1.5)):
        scale = np.abs(expected).max()
        np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), expected,
                                   rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("channels,policy,padded", [
    (30, "float32", True), (24, "float32", False), (32, "float32", False),
    (24, "mixed_bfloat16", True), (32, "mixed_bfloat16", False),
])
def test_torch_batch_normalization_pads_channels_to_the_fast_kernels_multiple(
        channels, policy, padded):
    """Training pads to a multiple of 8 (float32) or 16 (bfloat16); inference never pads."""
    bn = TorchBatchNormalization(dtype=policy)
    bn.build((2, 3, 3, channels))
    spec = tf.TensorSpec((2, 3, 3, channels))
    assert ("Pad" in op_types(lambda x: bn(x, training=True), spec)) == padded
    assert "Pad" not in op_types(lambda x: bn(x, training=False), spec)


@pytest.mark.parametrize("shape", [(0, 3, 3, 30), (0, 5)])
def test_torch_batch_normalization_keeps_its_statistics_on_an_empty_batch(shape):
    """A replica's empty share of a short last batch: the batch statistics are NaN, the
    running ones must stay (as in Keras' fused path), in the padded and the 2-D path."""
    bn = TorchBatchNormalization()
    bn.build(shape)
    before = [w.copy() for w in bn.get_weights()]
    y = tf.function(lambda x: bn(x, training=True))(tf.zeros(shape))
    assert y.shape == shape
    for after, expected in zip(bn.get_weights(), before):
        np.testing.assert_array_equal(after, expected)


@pytest.mark.parametrize("shape,dtype,unbiased", [
    ((4, 3, 3, 5), "float32", True),  # fused kernel: already PyTorch's convention
    ((4, 3, 3, 5), "float64", False),  # no fused float64 kernel: biased
    ((8, 5), "float32", False),  # rank 2: never fused, biased
])
def test_keras_batch_normalization_variance_convention(rng, shape, dtype, unbiased):
    """Why TorchBatchNormalization exists: what plain Keras BN tracks, per path."""
    x = rng.normal(1.0, 2.0, shape).astype(dtype)
    _, _, var_ref = _bn_reference(x, 0.9, 1.5, -0.25, 0.5, 2.0)
    bn, _ = _bn(tf.keras.layers.BatchNormalization, x, dtype)
    matches = np.allclose(bn.moving_variance.numpy(), var_ref, rtol=1e-6, atol=0)
    assert matches == unbiased


def test_torch_batch_normalization_is_frozen_when_not_trainable(rng):
    x = rng.normal(size=(8, 5)).astype("float32")
    bn, _ = _bn(TorchBatchNormalization, x, "float32")
    bn.trainable = False
    before = bn.moving_variance.numpy().copy()
    bn(x, training=True)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), before)


def test_torch_batch_normalization_config_round_trip():
    bn = TorchBatchNormalization(momentum=0.8, epsilon=1e-3, name="head_bn")
    clone = TorchBatchNormalization.from_config(bn.get_config())
    assert (clone.momentum, clone.epsilon, clone.name) == (0.8, 1e-3, "head_bn")
    assert "TorchBatchNormalization" in lqa.custom_objects()
    with pytest.raises(ValueError, match="renorm"):
        TorchBatchNormalization(renorm=True)


def _constant_gradient_step(optimizer, variable, gradient):
    optimizer.apply_gradients([(tf.constant(gradient, tf.float64), variable)])


def test_torch_sgd_momentum_convention_across_a_learning_rate_change():
    """Gradient 2 at every step, w0 = 1, momentum 0.9, lr 0.125 then 0.0625 (exact in the
    float32 learning-rate variable). PyTorch: b1 = 2, w1 = 1 - 0.125 * 2 = 0.75;
    b2 = 0.9 * 2 + 2 = 3.8, w2 = 0.75 - 0.0625 * 3.8 = 0.5125. Keras SGD: v1 = -0.25,
    w1 = 0.75; v2 = 0.9 * -0.25 - 0.0625 * 2 = -0.35, w2 = 0.4."""
    w = tf.Variable(1.0, dtype=tf.float64)
    sgd = TorchSGD(0.125, momentum=0.9)
    _constant_gradient_step(sgd, w, 2.0)
    assert w.numpy() == pytest.approx(0.75, abs=1e-15)
    sgd.learning_rate.assign(0.0625)
    _constant_gradient_step(sgd, w, 2.0)
    assert w.numpy() == pytest.approx(0.5125, abs=1e-15)
    assert sgd.variables[-1].numpy() == pytest.approx(3.8, abs=1e-15)  # PyTorch's buffer

    keras_w = tf.Variable(1.0, dtype=tf.float64)
    keras_sgd = tf.keras.optimizers.SGD(0.125, momentum=0.9)
    _constant_gradient_step(keras_sgd, keras_w, 2.0)
    keras_sgd.learning_rate.assign(0.0625)
    _constant_gradient_step(keras_sgd, keras_w, 2.0)
    assert keras_w.numpy() == pytest.approx(0.4, abs=1e-7)  # Keras casts momentum via float32


def test_torch_sgd_nesterov():
    """PyTorch nesterov: b = mu b + g, w -= lr (g + mu b). g = 2, lr 0.125, mu 0.9:
    b1 = 2, w1 = 1 - 0.125 (2 + 1.8) = 0.525."""
    w = tf.Variable(1.0, dtype=tf.float64)
    _constant_gradient_step(TorchSGD(0.125, momentum=0.9, nesterov=True), w, 2.0)
    assert w.numpy() == pytest.approx(0.525, abs=1e-15)


def test_official_sgd_recipes_use_torch_sgd():
    from larq_adaptive.training import get_recipe

    for name in ("adabin_cifar", "adabin_imagenet", "dwr_cifar", "dwr_cifar_resnet18"):
        optimizer = make_optimizer(get_recipe(name).optimizer, 0.1)
        assert isinstance(optimizer, TorchSGD) and optimizer.momentum == 0.9


def test_torch_sgd_saved_in_model_keras_resumes_with_its_buffer(tmp_path):
    inputs = tf.keras.Input((3,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, kernel_initializer="ones")(inputs))
    model.compile(optimizer=TorchSGD(0.1, momentum=0.9), loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    model.fit(x, y, epochs=1, verbose=0)
    restored = lqa.load_model(tmp_path / "model.keras")
    assert isinstance(restored.optimizer, TorchSGD)
    assert restored.optimizer.momentum == 0.9
    restored.fit(x, y, epochs=1, verbose=0)
    np.testing.assert_allclose(restored.get_weights()[0], model.get_weights()[0], rtol=1e-6)
