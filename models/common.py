"""Building blocks shared by every model family (written once, reused everywhere)."""

import os

import tensorflow as tf

import larq_adaptive  # noqa: F401  (registers the custom layers)
from larq_adaptive.layers import OptionAShortcut
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


def init_factory(scale, mode, distribution):
    """A factory of fresh ``VarianceScaling`` initializers: an unseeded Keras initializer
    instance called twice returns the same values, so every layer needs its own."""

    def factory():
        return tf.keras.initializers.VarianceScaling(scale, mode, distribution)

    return factory


# PyTorch's initializers: kaiming_normal_ (gain sqrt 2, not truncated; fan_in or fan_out) and
# the nn.Conv2d / nn.Linear default kaiming_uniform_(a=sqrt 5) = U(+-1/sqrt(fan_in)).
HE_FAN_IN = init_factory(2.0, "fan_in", "untruncated_normal")
HE_FAN_OUT = init_factory(2.0, "fan_out", "untruncated_normal")
TORCH_DEFAULT = init_factory(1.0 / 3.0, "fan_in", "uniform")


def float_conv(x, filters, kernel_size, strides=1, pad=None, name=None, use_bias=False,
               kernel_initializer="he_normal"):
    """Full-precision conv with PyTorch-equivalent zero padding (LCE-safe, see padding.py)."""
    pad = kernel_size // 2 if pad is None else pad
    if pad:
        x = TorchPadding2D(kernel_size, strides, pad, name=f"{name}_pad" if name else None)(x)
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides, padding="valid", use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=name,
    )(x)


def changes_shape(x, filters, strides):
    return strides != 1 or x.shape[-1] != filters


# Residual shortcuts ``shortcut(x, filters, strides, name)``: the identity when the shape stays.


def option_a_shortcut(x, filters, strides, name):
    """Parameter-free: subsample at even positions + zero channel padding (ResNet "option A";
    DWR's generalisation: ``(filters - C_in) // 2`` zeros before, the rest after)."""
    if not changes_shape(x, filters, strides):
        return x
    return OptionAShortcut(filters, strides, name=f"{name}_shortcut")(x)


def conv_shortcut(x, filters, strides, name, initializer=None):
    """Full-precision 1x1 conv (stride ``strides``) -> BN (CIFAR ResNet-18)."""
    if not changes_shape(x, filters, strides):
        return x
    init = initializer() if initializer else "he_normal"
    x = float_conv(x, filters, 1, strides, pad=0, name=f"{name}_shortcut_conv", kernel_initializer=init)
    return batch_norm(x, f"{name}_shortcut_bn")


def avg_pool_shortcut(x, filters, strides, name, initializer=None, ceil_mode=False):
    """``AvgPool2d(2, strides)`` -> full-precision 1x1 conv -> BN (ImageNet ResNets).

    ``ceil_mode=False``: PyTorch's default VALID pool (Bi-Real / ReActNet). ``ceil_mode=True``:
    AdaBin's ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)``, which is exactly
    Keras' ``padding="same"`` pool (identical on even sizes)."""
    if not changes_shape(x, filters, strides):
        return x
    if strides != 1:
        x = tf.keras.layers.AveragePooling2D(
            2, strides, padding="same" if ceil_mode else "valid", name=f"{name}_shortcut_pool"
        )(x)
    init = initializer() if initializer else "he_normal"
    x = float_conv(x, filters, 1, 1, pad=0, name=f"{name}_shortcut_conv", kernel_initializer=init)
    return batch_norm(x, f"{name}_shortcut_bn")


def torch_max_pool(x, pool_size=3, strides=2, pad=1, name=None):
    """PyTorch MaxPool2d(pool_size, strides, pad): pads with -inf."""
    x = TorchPadding2D(pool_size, strides, pad, value=float("-inf"), name=f"{name}_pad")(x)
    return tf.keras.layers.MaxPool2D(pool_size, strides, padding="valid", name=name)(x)


def classifier(x, num_classes, name="logits"):
    """Dense head returning logits (float32 under mixed precision)."""
    return tf.keras.layers.Dense(num_classes, dtype="float32", name=name)(x)


KERAS_WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras")


def load_weights(model, weights):
    """``weights``: None, or a Keras weights file saved by this library (``.h5``/``.keras``
    from ``save_weights``/``save``, or a TensorFlow checkpoint prefix). Anything else, or a file
    that does not fit the model, is a ValueError."""
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None or a path, got {weights!r}")
    path = os.fspath(weights)
    checkpoint = os.path.exists(path + ".index")
    if not (os.path.exists(path) or checkpoint):
        raise ValueError(f"weights file {path!r} does not exist")
    if not (path.endswith(KERAS_WEIGHT_SUFFIXES) or checkpoint):
        raise ValueError(
            f"{path!r} is not a Keras weights file (.h5, .keras or a TensorFlow checkpoint); "
            f"official PyTorch checkpoints are accepted by adabin_resnet20 only"
        )
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise ValueError(f"cannot load {path!r} into {model.name}: {error}") from error
    return model
