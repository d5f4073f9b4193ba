"""DyBNN's hyper-function: per-sample, per-channel parameters from global context.

ASSUMPTION (UNVERIFIED, README "Conventions"): the DyBNN paper's exact hyper-function could not be
checked. We implement the recommended design

    z = GAP(x)                 (N, C)
    h = act(FC1(z))            FC1: C -> max(1, C // reduction)
    p = FC2(h)                 FC2: hidden -> units, weights and bias initialised to 0

with ``reduction=16`` and ``hidden_activation="relu"`` by default. Without a nonlinearity
between the two FCs (``hidden_activation=None``) the hyper-function would be a rank-``C/r``
*linear* map of the pooled input, so we default to ReLU (as SE blocks and
DY-ReLU do) and keep ``None`` available. FC2 starts at zero, so a DySign/DyPReLU starts
exactly as the static RSign/RPReLU of ReActNet. The output is not squashed (thresholds and
shifts may be negative).
"""

import tensorflow as tf

from larq_adaptive.serialization import build_sublayer, register


def _spatial_mean(x):
    """Mean over the spatial axes of an NHWC tensor: a sum (accumulated in float32 and
    rounded once, in every dtype) divided by H W in at least float32, then rounded to
    ``x``'s dtype. Correctly rounded at power-of-two H W, within 1.5 units in the last place
    otherwise (tests). In bfloat16 on TensorFlow 2.15's CPU kernels, ``tf.reduce_mean`` is
    2.4x slower and off by up to 6 units at 32 x 32 (measured; TensorFlow 2.19's is as fast
    and correctly rounded)."""
    return _per_pixel(tf.reduce_sum(x, axis=[1, 2]), x)


def _per_pixel(total, x):
    """``total / (H W)`` of ``x``, divided in at least float32 (H W need not be exact in 16
    bits: 17 x 17 = 289 is 288 in bfloat16) and returned in ``total``'s dtype."""
    wide = tf.float32 if total.dtype.size < 4 else total.dtype
    pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], wide)
    return tf.cast(tf.cast(total, wide) / pixels, total.dtype)


def _spread(x, pooled_gradient):
    """The (N, 1, 1, C) share of a pooled gradient that reaches each pixel of ``x``."""
    return _per_pixel(pooled_gradient, x)[:, tf.newaxis, tf.newaxis, :]


@tf.custom_gradient
def global_average_pool(x):
    """Mean over the spatial axes of an NHWC tensor, (N, H, W, C) -> (N, C). Its backward
    divides the small (N, C) gradient by H W before broadcasting it, one full-size pass where
    ``tf.reduce_mean``'s gradient tiles first and divides at full size (two)."""

    def grad(dy):
        return tf.broadcast_to(_spread(x, dy), tf.shape(x))

    return _spatial_mean(x), grad


@tf.custom_gradient
def with_global_average_pool(x):
    """``(x, global_average_pool(x))`` for a layer that uses both ``x`` and its pooled
    context (DySign, DyPReLU). The backward adds the pooled gradient's per-pixel share to
    ``x``'s gradient in one broadcasting add: used separately, ``x`` would get a full-size
    ``BroadcastTo`` and an ``AddN`` of the two, both slower in bfloat16 than in float32 on
    CPU (docs/training.md, "Mixed precision")."""

    def grad(dx, dpooled):
        return dx + _spread(x, dpooled)

    return (tf.identity(x), _spatial_mean(x)), grad


@register
class HyperFunction(tf.keras.layers.Layer):
    """GAP -> FC -> act -> FC, returning shape (N, 1, 1, units) for NHWC inputs. A rank-2
    (N, C) input is taken as pooled already (from :func:`with_global_average_pool`)."""

    def __init__(self, units, reduction=16, hidden_activation="relu", **kwargs):
        super().__init__(**kwargs)
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        self.units = int(units)
        self.reduction = int(reduction)
        self.hidden_activation = hidden_activation

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.hidden_units = max(1, channels // self.reduction)
        self.fc1 = tf.keras.layers.Dense(
            self.hidden_units, activation=self.hidden_activation, name="fc1",
            dtype=self.dtype_policy,
        )
        self.fc2 = tf.keras.layers.Dense(
            self.units, kernel_initializer="zeros", bias_initializer="zeros", name="fc2",
            dtype=self.dtype_policy,
        )
        build_sublayer(self.fc1, (None, channels))
        build_sublayer(self.fc2, (None, self.hidden_units))
        self.in_channels = channels
        super().build(input_shape)

    def call(self, inputs):
        pooled = inputs if inputs.shape.rank == 2 else global_average_pool(inputs)
        params = self.fc2(self.fc1(pooled))
        return params[:, tf.newaxis, tf.newaxis, :]

    @property
    def macs(self):
        """Multiply-accumulates per image of the two FC layers (GAP's additions not counted)."""
        return self.in_channels * self.hidden_units + self.hidden_units * self.units

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "reduction": self.reduction,
            "hidden_activation": tf.keras.activations.serialize(
                tf.keras.activations.get(self.hidden_activation)
            )
            if self.hidden_activation is not None
            else None,
        }
