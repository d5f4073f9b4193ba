"""DyBNN's hyper-function: per-sample, per-channel parameters from global context.

ASSUMPTION (UNVERIFIED, README "Conventions"): the DyBNN paper's exact hyper-function could not be
checked. We implement the recommended design

    z = GAP(x)                 (N, C)
    h = act(FC1(z))            FC1: C -> max(1, C // reduction)
    p = FC2(h)                 FC2: hidden -> units, weights and bias initialised to 0

with ``reduction=16`` and ``hidden_activation="relu"`` by default. The product's design notes
write the two FCs with no nonlinearity (``hidden_activation=None``); that variant is a
rank-``C/r`` *linear* map of the pooled input, so we default to ReLU (as SE blocks and
DY-ReLU do) and keep ``None`` available. FC2 starts at zero, so a DySign/DyPReLU starts
exactly as the static RSign/RPReLU of ReActNet. The output is not squashed (thresholds and
shifts may be negative).
"""

import tensorflow as tf

from larq_adaptive.serialization import build_sublayer, register


@tf.custom_gradient
def global_average_pool(x):
    """Mean over the spatial axes of an NHWC tensor, (N, H, W, C) -> (N, C). Its backward
    divides the small (N, C) gradient by H W before broadcasting it, one full-size pass where
    ``tf.reduce_mean``'s gradient tiles first and divides at full size (two)."""

    def grad(dy):
        pixels = tf.cast(tf.shape(x)[1] * tf.shape(x)[2], dy.dtype)
        return tf.broadcast_to((dy / pixels)[:, tf.newaxis, tf.newaxis, :], tf.shape(x))

    return tf.reduce_mean(x, axis=[1, 2]), grad


@register
class HyperFunction(tf.keras.layers.Layer):
    """GAP -> FC -> act -> FC, returning shape (N, 1, 1, units) for NHWC inputs."""

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
        pooled = global_average_pool(inputs)
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
