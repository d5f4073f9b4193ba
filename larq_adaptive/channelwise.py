r"""Per-channel affine maps on NHWC tensors, computed where the CPU computes them fastest.

TensorFlow's element-wise CPU kernels (Eigen) gain nothing from bfloat16: they convert each
element to float32 and back, so an add, a multiply or a ``Relu`` takes as long as in float32
or longer. oneDNN's depthwise convolution has native bfloat16 kernels, and TensorFlow's
graph optimizer (Grappler's remapper) fuses a following ``BiasAdd`` and ``Relu`` into it. So
a map ``y_c = max(0, s_c x_c + b_c)`` with per-channel (or shared) ``s`` and ``b`` is one
1x1 depthwise convolution: one pass instead of up to three. Each output is one product and
one sum of the input's values in float32, rounded once to the input's dtype, which is what
the element-wise ops give too (tests compare every bfloat16 value bit for bit; a -0 may come
out +0). Measured in ``benchmarks/bfloat16_ops.py`` (docs/training.md, "Mixed precision").

- :func:`scale_channels` (``x * s``) uses the depthwise convolution in every dtype (faster in
  float32 too).
- :func:`shift_channels` (``x + b``), :func:`affine_channels` (``s x + b``) and
  :func:`relu_affine` (``max(0, s x + b)``) use it for bfloat16 only: in float32 the Eigen
  ops are as fast or faster.
- :func:`channel_dot` (``sum(a * b)`` per channel, a parameter's gradient) is the depthwise
  convolution's filter gradient in every dtype: one pass that reads both tensors and writes
  nothing full-size, 1.1-4x faster than a ``Mul`` and a ``Sum`` at the shapes measured (the
  most at channel counts that are not a multiple of 8; about even at 128x8x8x64 in
  bfloat16), accumulated in float32 as ``Sum`` does.

Anything else (other ranks, an unknown channel count, per-sample shifts) takes the plain
element-wise ops. :func:`scale_channels` serves Maxout's and PReLU's training paths only,
the other two change nothing in float32, so exported float32 models keep the plain ops (one
TFLite ``ADD`` per shift).
"""

import tensorflow as tf

__all__ = [
    "affine_channels",
    "channel_dot",
    "relu_affine",
    "scale_channels",
    "shift_channels",
    "sum_but_channels",
]


def _channels(x):
    """The static channel count of a rank-4 ``x``, else None."""
    return x.shape[-1] if x.shape.rank == 4 else None


def _fuses(x):
    """Whether ``x`` is a bfloat16 NHWC tensor, the case where the fused forms are faster."""
    return x.dtype == tf.bfloat16 and _channels(x) is not None


def _per_channel(x, value):
    """``value`` (a number, a scalar or a [C] vector) as a [C] vector of ``x``'s dtype for the
    depthwise form, or None when it does not fit (other ranks, unknown or other lengths)."""
    channels = _channels(x)
    value = tf.convert_to_tensor(value, dtype=x.dtype)
    if channels is None:
        return None
    if value.shape.rank == 0:
        return tf.fill([channels], value)
    if value.shape.rank == 1 and value.shape[0] == channels:
        return value
    return None


def _depthwise(x, scale):
    return tf.nn.depthwise_conv2d(x, tf.reshape(scale, [1, 1, -1, 1]), [1, 1, 1, 1], "VALID")


def scale_channels(x, scale):
    """``x * scale`` for a per-channel vector ``scale`` (last axis): on an NHWC tensor a 1x1
    depthwise convolution, 1.3x (float32) and 2.3x (bfloat16) faster than TensorFlow's
    broadcasting ``Mul`` on CPU. A scalar (one value for every channel) multiplies."""
    scale = tf.convert_to_tensor(scale, dtype=x.dtype)
    vector = _per_channel(x, scale) if scale.shape.rank == 1 else None
    if vector is None:
        return x * scale
    return _depthwise(x, vector)


def sum_but_channels(t):
    """``t`` summed over every axis but the last (a per-channel parameter's gradient)."""
    rank = t.shape.rank
    axes = list(range(rank - 1)) if rank is not None else tf.range(tf.rank(t) - 1)
    return tf.reduce_sum(t, axes)


def channel_dot(a, b):
    """``a * b`` summed over every axis but the last (e.g. a per-channel slope's gradient
    ``sum(dy * x)``). On NHWC tensors with a static channel count the filter gradient of a
    1x1 depthwise convolution: one fused pass instead of a full-size ``Mul`` and a ``Sum``
    (accumulated in float32, rounded once per channel to the inputs' dtype)."""
    channels = _channels(a)
    if channels is None or b.shape.rank != 4:
        return sum_but_channels(a * b)
    return tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(
        a, [1, 1, channels, 1], b, [1, 1, 1, 1], "VALID")[0, 0, :, 0]


@tf.custom_gradient
def _fused_shift(x, shift):
    """``x + shift`` as ``BiasAdd(depthwise(x, 1), shift)``; the gradients of the add."""

    def grad(dy):
        return dy, sum_but_channels(dy)

    return tf.nn.bias_add(_depthwise(x, tf.ones_like(shift)), shift), grad


def shift_channels(x, shift):
    """``x + shift`` for a per-channel vector ``shift`` (last axis; in ``x``'s dtype, or a
    number). For a bfloat16 NHWC tensor one fused depthwise convolution with bias (2x faster
    than the broadcasting add on CPU), with the add's own gradients (``dy`` and its
    per-channel sum, no extra pass)."""
    shift = tf.convert_to_tensor(shift, dtype=x.dtype)
    if _fuses(x) and shift.shape.rank == 1 and _per_channel(x, shift) is not None:
        return _fused_shift(x, shift)
    return x + shift


def affine_channels(x, scale, shift):
    """``scale * x + shift`` for numbers ``scale`` and ``shift``. For a bfloat16 NHWC tensor
    one depthwise convolution with bias, fused in a ``tf.function``: there each output
    ``s x + b`` is computed in float32 and rounded once (``s`` and ``b`` rounded to bfloat16
    first), where the two element-wise ops (and eager execution) round the product first."""
    if _fuses(x):
        return tf.nn.bias_add(_depthwise(x, _per_channel(x, scale)), _per_channel(x, shift))
    return shift + scale * x


def relu_affine(x, scale, shift):
    """``max(0, shift + scale * x)`` for numbers ``scale`` and ``shift`` (e.g. ApproxSign's
    derivative ``max(0, 2 - 2|u|)`` on ``|u|``). For a bfloat16 NHWC tensor one fused
    depthwise convolution with bias and ReLU, 1.7x faster than the three element-wise ops on
    CPU (differentiable, but meant for backward passes). A NaN input gives 0 there, where
    TensorFlow's ``Relu`` passes the NaN (a NaN reaching a sign has made the forward pass NaN
    already)."""
    return tf.nn.relu(affine_channels(x, scale, shift))
