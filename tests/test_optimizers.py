"""TorchAdam: torch.optim.Adam's update, checked against values derived by hand."""

import math

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.optimizers import TorchAdam
from larq_adaptive.training.stages import make_optimizer


def torch_adam_by_hand(theta, grads, lr, beta_1=0.9, beta_2=0.999, eps=1e-8):
    """torch.optim.Adam (no weight decay, no amsgrad) written out for scalars."""
    m = v = 0.0
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        theta -= lr / (1 - beta_1 ** t) * m / (math.sqrt(v) / math.sqrt(1 - beta_2 ** t) + eps)
    return theta, m, v


def test_first_step_with_a_small_gradient_is_pytorchs_not_keras():
    # g = 1e-7: PyTorch steps lr * g / (|g| + eps) = 0.909 lr; Keras' Adam, whose epsilon
    # sits before the bias correction, steps lr * g / (|g| + eps / sqrt(1 - beta_2)) = 0.24 lr.
    g, lr = 1e-7, 1e-3
    var = tf.Variable([1.0], dtype=tf.float64)
    TorchAdam(lr).apply_gradients([(tf.constant([g], tf.float64), var)])
    lr32 = float(np.float32(lr))  # Keras keeps the learning rate in a float32 variable
    assert 1.0 - var.numpy()[0] == pytest.approx(lr32 * g / (g + 1e-8), rel=1e-10)
    keras = tf.Variable([1.0], dtype=tf.float64)
    tf.keras.optimizers.Adam(lr, epsilon=1e-8).apply_gradients(
        [(tf.constant([g], tf.float64), keras)])
    assert 1.0 - keras.numpy()[0] == pytest.approx(lr * g / (g + 1e-8 / math.sqrt(1e-3)),
                                                   rel=1e-4)  # its betas go through float32


def test_three_steps_with_learning_rate_changes_match_the_hand_derivation():
    grads = [(0.3, -2e-6), (-0.1, 5e-6), (0.2, 1e-9)]
    lrs = [1e-2, 5e-3, 1e-3]
    var = tf.Variable([0.5, -0.25], dtype=tf.float64)
    opt = TorchAdam(lrs[0])
    for i, lr in enumerate(lrs):
        opt.learning_rate.assign(lr)
        opt.apply_gradients([(tf.constant(grads[i], tf.float64), var)])
    expected = []
    for j, start in enumerate([0.5, -0.25]):
        theta, m, v = start, 0.0, 0.0
        beta_1, beta_2 = 0.9, 0.999
        for t, (lr, g) in enumerate(zip(lrs, [gr[j] for gr in grads]), start=1):
            lr32 = float(np.float32(lr))  # Keras keeps the learning rate in a float32 variable
            m = beta_1 * m + (1 - beta_1) * g
            v = beta_2 * v + (1 - beta_2) * g * g
            theta -= lr32 / (1 - beta_1 ** t) * m / (
                math.sqrt(v) / math.sqrt(1 - beta_2 ** t) + 1e-8)
        expected.append((theta, m, v))
    np.testing.assert_allclose(var.numpy(), [e[0] for e in expected], rtol=1e-13)
    np.testing.assert_allclose(opt._momentums[0].numpy(), [e[1] for e in expected], rtol=1e-13)
    np.testing.assert_allclose(opt._velocities[0].numpy(), [e[2] for e in expected], rtol=1e-13)


def test_the_adam_recipes_use_it_and_it_serializes():
    opt = make_optimizer("adam", 1.25e-3)
    assert isinstance(opt, TorchAdam)
    assert (opt.beta_1, opt.beta_2, opt.epsilon) == (0.9, 0.999, 1e-8)
    config = tf.keras.optimizers.serialize(opt)
    again = tf.keras.optimizers.deserialize(config)
    assert isinstance(again, TorchAdam) and again.epsilon == 1e-8
    assert lqa.custom_objects()["TorchAdam"] is TorchAdam


def test_amsgrad_keeps_the_largest_second_moment():
    var = tf.Variable([0.0], dtype=tf.float64)
    opt = TorchAdam(0.1, amsgrad=True)
    opt.apply_gradients([(tf.constant([1.0], tf.float64), var)])
    opt.apply_gradients([(tf.constant([1e-3], tf.float64), var)])
    v_max = max(1e-3, 0.999 * 1e-3 + 1e-3 * 1e-6)
    m = 0.9 * 0.1 + 0.1 * 1e-3
    step_2 = 0.1 / (1 - 0.9 ** 2) * m / (math.sqrt(v_max) / math.sqrt(1 - 0.999 ** 2) + 1e-8)
    lr32 = float(np.float32(0.1))
    assert var.numpy()[0] == pytest.approx(-lr32 * 1.0 / (1.0 + 1e-8) - step_2 * lr32 / 0.1,
                                           rel=1e-10)
