"""Building blocks shared by every model family (written once, reused everywhere)."""

import os

import tensorflow as tf

import larq_adaptive  # noqa: F401  (registers the custom layers)
from larq_adaptive.padding import TorchPadding2D

BN_EPSILON = 1e-5  # PyTorch default (the AdaBin head BN has running_var down to 2e-5)
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1


def batch_norm(x, name):
    return tf.keras.layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name
    )(x)


def image_input(input_shape, input_tensor, default_shape):
    """The model's input tensor, keras.applications style."""
    shape = tuple(input_shape) if input_shape is not None else tuple(default_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {shape}")
    if input_tensor is None:
        return tf.keras.Input(shape=shape, name="input")
    if not tf.keras.backend.is_keras_tensor(input_tensor):
        return tf.keras.Input(tensor=input_tensor, shape=shape, name="input")
    return input_tensor


def model_from(inputs, outputs, input_tensor, name):
    """``tf.keras.Model`` from the graph, with the keras.applications ``input_tensor`` rule."""
    if input_tensor is not None:
        inputs = tf.keras.utils.get_source_inputs(input_tensor)
    return tf.keras.Model(inputs=inputs, outputs=outputs, name=name)


def float_conv(x, filters, kernel_size, strides=1, pad=None, name=None, use_bias=False):
    """Full-precision conv with PyTorch-equivalent zero padding (LCE-safe, see padding.py)."""
    pad = kernel_size // 2 if pad is None else pad
    if pad:
        x = TorchPadding2D(kernel_size, strides, pad, name=f"{name}_pad" if name else None)(x)
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides, padding="valid", use_bias=use_bias,
        kernel_initializer="he_normal", name=name,
    )(x)


def torch_max_pool(x, pool_size=3, strides=2, pad=1, name=None):
    """PyTorch MaxPool2d(pool_size, strides, pad): pads with -inf."""
    x = TorchPadding2D(pool_size, strides, pad, value=float("-inf"), name=f"{name}_pad")(x)
    return tf.keras.layers.MaxPool2D(pool_size, strides, padding="valid", name=name)(x)


def classifier(x, num_classes, name="logits"):
    """Dense head returning logits (float32 under mixed precision)."""
    return tf.keras.layers.Dense(num_classes, dtype="float32", name=name)(x)


def load_weights(model, weights):
    """``weights``: None or the path of a Keras weights file saved by this library."""
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)) or not os.path.exists(weights):
        raise ValueError(
            f"weights must be None or the path of an existing weights file, got {weights!r}"
        )
    model.load_weights(os.fspath(weights))
    return model
