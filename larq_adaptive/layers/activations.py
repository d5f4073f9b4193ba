"""Activation layers of the methods: AdaBin's Maxout, ReActNet's RPReLU, DyBNN's DyPReLU and
the Hardtanh of IR-Net-style networks."""

import tensorflow as tf

from larq_adaptive.channelwise import channel_dot, scale_channels, shift_channels
from larq_adaptive.hyper import HyperFunction, with_global_average_pool
from larq_adaptive.serialization import build_sublayer, register

__all__ = ["DyPReLU", "HardTanh", "Maxout", "RPReLU"]


def _channel_weight(layer, name, channels, value):
    return layer.add_weight(
        name=name, shape=(channels,), initializer=tf.keras.initializers.Constant(value)
    )


def _is_training(training):
    """Whether a Keras ``training`` argument (None, a bool or a boolean tensor) is True."""
    return training is not None and bool(tf.get_static_value(training))


def _sign_masks(x):
    """``(1_{x > 0}, 1_{x <= 0})`` in ``x``'s dtype."""
    positive = tf.cast(x > 0, x.dtype)
    return positive, 1.0 - positive


@tf.custom_gradient
def two_slope(x, pos, neg):
    r"""``pos * x`` where ``x > 0``, else ``neg * x``, with per-channel slopes (broadcast on the
    last axis) and the gradients written out:

    \[ m = 1_{x > 0}, \quad s = p\,m + n\,(1 - m), \quad y = s\,x, \qquad
       \frac{\partial y}{\partial x} = s, \quad \frac{\partial y}{\partial p} = x\,m,
       \quad \frac{\partial y}{\partial n} = x\,(1 - m) \]

    (the slope gradients summed over all axes but the last). ``s`` is exactly ``p`` or ``n``
    in every dtype (one of its two terms is 0; ``n + (p - n) m`` would round ``p - n`` and
    bias a whole channel in bfloat16). Seven full-size passes forward and two backward (``dy
    s``, ``dy x``; the slope gradients are :func:`~larq_adaptive.channelwise.channel_dot`
    reductions that write nothing full-size), against about fifteen for automatic
    differentiation of ``p relu(x) - n relu(-x)``, whose ``Relu``/``ReluGrad`` are slower in
    bfloat16 than in float32 on CPU (docs/training.md, "Mixed precision"); the two
    per-channel products are 1x1 depthwise convolutions on NHWC inputs. At ``x = 0`` the
    input gradient is ``n``, as PyTorch's ``nn.PReLU`` backward gives; ``relu``'s backward
    (the official AdaBin Maxout, Keras's PReLU) gives 0. In float32 an exact 0 after BN and
    the residual add practically never occurs; in bfloat16 a residual add can round to it,
    and only the gradient of those elements moves. Maxout uses it in training only;
    inference keeps the exact ``p relu(x) - n relu(-x)``.
    """
    positive, negative = _sign_masks(x)
    slope = scale_channels(positive, pos) + scale_channels(negative, neg)

    def grad(dy):
        dy_x = dy * x
        return dy * slope, channel_dot(positive, dy_x), channel_dot(negative, dy_x)

    return slope * x, grad


@tf.custom_gradient
def prelu(x, alpha):
    r"""PReLU with per-channel slope ``alpha``: :func:`two_slope` with ``pos = 1``, one
    per-channel product and one slope gradient fewer:

    \[ s = m + \alpha\,(1 - m), \quad y = s\,x, \qquad \frac{\partial y}{\partial x} = s,
       \quad \frac{\partial y}{\partial \alpha} = x\,(1 - m) \]

    (``s`` is exactly 1 or ``alpha``; input gradient ``alpha`` at ``x = 0``, as PyTorch's
    ``nn.PReLU``). RPReLU and DyPReLU use it in training; inference keeps Keras's PReLU (one
    TFLite ``PRELU`` op).
    """
    positive, negative = _sign_masks(x)
    slope = positive + scale_channels(negative, alpha)

    def grad(dy):
        return dy * slope, channel_dot(negative, dy * x)

    return slope * x, grad


@register
class Maxout(tf.keras.layers.Layer):
    r"""AdaBin's per-channel two-slope activation (the official code calls it Maxout):

    \[ f(x)_c = p_c \operatorname{ReLU}(x_c) - n_c \operatorname{ReLU}(-x_c) \]

    ``pos_scale`` p (init 1.0) and ``neg_scale`` n (init 0.25) are learnable and
    unconstrained: the official checkpoint has negative values of both. In training
    (``training=True``, as in ``model.fit``) it runs through :func:`two_slope`, whose
    written-out backward has fewer full-size passes.
    """

    def __init__(self, pos_init=1.0, neg_init=0.25, **kwargs):
        super().__init__(**kwargs)
        self.pos_init = float(pos_init)
        self.neg_init = float(neg_init)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.pos_scale = _channel_weight(self, "pos_scale", channels, self.pos_init)
        self.neg_scale = _channel_weight(self, "neg_scale", channels, self.neg_init)
        super().build(input_shape)

    def call(self, inputs, training=None):
        pos = tf.cast(self.pos_scale, inputs.dtype)
        neg = tf.cast(self.neg_scale, inputs.dtype)
        if _is_training(training):
            return two_slope(inputs, pos, neg)
        return pos * tf.nn.relu(inputs) - neg * tf.nn.relu(-inputs)

    def get_config(self):
        return {**super().get_config(), "pos_init": self.pos_init, "neg_init": self.neg_init}


@register
class RPReLU(tf.keras.layers.Layer):
    r"""ReActNet's RPReLU: per-channel shift, PReLU, shift.

    \[ f(x)_c = \operatorname{PReLU}_c(x_c + b^{in}_c) + b^{out}_c \]

    The PReLU is a native ``keras.layers.PReLU`` (slope init 0.25, one per channel), which
    TFLite converts to its PRELU op. In training (``training=True``, as in ``model.fit``) the
    same slope runs through :func:`prelu` instead, whose written-out backward has fewer
    full-size passes. Shifts ``bias_in``/``bias_out`` start at 0; they are added by
    :func:`larq_adaptive.channelwise.shift_channels` (one fused op in bfloat16).
    """

    def __init__(self, slope_init=0.25, **kwargs):
        super().__init__(**kwargs)
        self.slope_init = float(slope_init)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.bias_in = _channel_weight(self, "bias_in", channels, 0.0)
        self.prelu = tf.keras.layers.PReLU(
            alpha_initializer=tf.keras.initializers.Constant(self.slope_init),
            shared_axes=list(range(1, len(input_shape) - 1)) or None,
            name="prelu",
            dtype=self.dtype_policy,  # follow this layer's policy, not the global one
        )
        build_sublayer(self.prelu, input_shape)
        self.bias_out = _channel_weight(self, "bias_out", channels, 0.0)
        super().build(input_shape)

    def with_shifts(self, inputs):
        """``(inputs, input shift, output shift)``, the shifts broadcastable against
        ``inputs``."""
        return inputs, self.bias_in, self.bias_out

    def call(self, inputs, training=None):
        inputs, shift_in, shift_out = self.with_shifts(inputs)
        shifted = shift_channels(inputs, tf.cast(shift_in, inputs.dtype))
        if _is_training(training):  # inference keeps PReLU: one TFLite PRELU op
            activated = prelu(shifted, tf.reshape(tf.cast(self.prelu.alpha, inputs.dtype), [-1]))
        else:
            activated = self.prelu(shifted)
        return shift_channels(activated, tf.cast(shift_out, inputs.dtype))

    def get_config(self):
        return {**super().get_config(), "slope_init": self.slope_init}


@register
class DyPReLU(RPReLU):
    r"""DyBNN's DyPReLU: an RPReLU whose two shifts get an input-dependent part.

    \[ [\gamma(x), \zeta(x)] = \mathrm{FC}_2(\mathrm{act}(\mathrm{FC}_1(\mathrm{GAP}(x)))),
       \quad f(x) = \operatorname{PReLU}(x - \gamma(x) + b^{in}) + \zeta(x) + b^{out} \]

    One hyper-function with a 2C-wide, zero-initialised FC2 (so it starts as RPReLU); the
    design is an assumption, see :mod:`larq_adaptive.hyper`.
    """

    def __init__(self, slope_init=0.25, reduction=16, hidden_activation="relu", **kwargs):
        super().__init__(slope_init=slope_init, **kwargs)
        self.reduction = reduction
        self.hidden_activation = hidden_activation

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.shift = HyperFunction(
            2 * channels, self.reduction, self.hidden_activation, name="shift",
            dtype=self.dtype_policy,
        )
        build_sublayer(self.shift, input_shape)
        super().build(input_shape)

    def with_shifts(self, inputs):
        inputs, pooled = with_global_average_pool(inputs)
        gamma, zeta = tf.split(tf.cast(self.shift(pooled), inputs.dtype), 2, axis=-1)
        return inputs, self.bias_in - gamma, self.bias_out + zeta

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "hidden_activation": self.hidden_activation,
        }


@tf.custom_gradient
def _hardtanh(x):
    """``clip(x, -1, 1)``; gradient ``dy * 1_{|x| < 1}``, as PyTorch's ``hardtanh_backward``."""

    def grad(dy):
        return dy * tf.cast(tf.math.abs(x) < 1.0, dy.dtype)

    return tf.clip_by_value(x, -1.0, 1.0), grad


@register
class HardTanh(tf.keras.layers.Layer):
    r"""PyTorch's ``nn.Hardtanh()`` (IR-Net-style BNNs):

    \[ f(x) = \min(1, \max(-1, x)), \qquad f'(x) = 1_{|x| < 1} \]

    The gradient is PyTorch's: zero at exactly +-1 (TensorFlow's ``clip_by_value`` passes it
    there; bfloat16 rounds about 0.3 % of unit-variance inputs onto +-1). It is written as a
    mask multiply: TensorFlow's ``clip_by_value`` gradient (two comparisons, ``LogicalOr``,
    ``SelectV2``) costs 2.9x as much in float32 and 6.0x in bfloat16 on CPU
    (docs/training.md, "Mixed precision").
    """

    def call(self, inputs):
        return _hardtanh(inputs)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)
