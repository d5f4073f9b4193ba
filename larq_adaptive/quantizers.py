"""Trainable larq quantizers for AdaBin, ReActNet and DyBNN.

Each class subclasses ``larq.quantizers.Quantizer`` (a Keras layer), so its variables are
tracked by the host ``QuantConv2D``, trained by ``model.fit`` and saved with the model.
All binarizers use larq's sign convention, sign(0) = +1 (``larq.math.sign``); the official
PyTorch code uses ``torch.sign`` (sign(0) = 0). On the official AdaBin ResNet-20 this
changes CIFAR-10 accuracy by 0.02 points (README, "Conventions"), and it is what lets the LCE converter
produce binary convolutions.
"""

import larq as lq
import tensorflow as tf

from larq_adaptive.channelwise import shift_channels
from larq_adaptive.hyper import HyperFunction, with_global_average_pool
from larq_adaptive.serialization import build_sublayer, register
from larq_adaptive.ste import (
    adabin_activation_sign, approx_sign, channel_scaled_sign, ede_sign,
)

__all__ = [
    "AdaBinActivationQuantizer",
    "AdaBinWeightQuantizer",
    "ApproxSignQuantizer",
    "DySign",
    "RSign",
    "ReActNetWeightQuantizer",
    "SwitchableQuantizer",
]


def _kernel_axes(w):
    """All axes but the last (output channels) of a kernel."""
    return list(range(w.shape.rank - 1))


def _at_least_float32(x):
    """``x`` as float32 if it is float16/bfloat16 (a mixed-precision read of a kernel), else
    unchanged (float32, float64): per-channel statistics and the EDE's ``tanh(t W)`` are
    computed at least in float32. Kernels are small, so the cast costs nothing measurable."""
    return tf.cast(x, tf.float32) if x.dtype in (tf.float16, tf.bfloat16) else x


@register
class AdaBinWeightQuantizer(lq.quantizers.Quantizer):
    r"""AdaBin weight binarizer (kernel_quantizer), per output channel ``o``:

    \[ \beta_o = \operatorname{mean}(W_o), \quad
       \alpha_o = \sqrt{\operatorname{mean}((W_o - \beta_o)^2)}, \quad
       q(W_o) = \alpha_o \operatorname{sign}\!\left(\frac{W_o - \beta_o}{\alpha_o}\right)
                + \beta_o \]

    The binary set of filter ``o`` is {beta_o - alpha_o, beta_o + alpha_o}. The statistics are
    recomputed at every read and *not* detached: the gradient reaches W through the sign's
    argument, the center and the distance. The sign's backward is IR-Net's EDE
    ``k t (1 - tanh^2(t u))`` with ``k`` and ``t`` held in non-trainable variables
    (``ede_k``, ``ede_t``) that :class:`larq_adaptive.callbacks.EDESchedule` updates.
    Under a float16/bfloat16 policy the statistics and the EDE are computed in float32 (a
    bfloat16 standard deviation of a near-constant filter can be off by far more than its
    value) and only ``q(W)``, two levels per filter, is cast to the compute dtype.

    # Arguments
        k, t: initial EDE constants (official layer defaults: k=10, t=0.1, so k t = 1).
    """

    precision = 1

    def __init__(self, k=10.0, t=0.1, **kwargs):
        super().__init__(**kwargs)
        self.k_init = float(k)
        self.t_init = float(t)

    def build(self, input_shape):
        self.k = self.add_weight(
            name="ede_k", shape=(), initializer=tf.keras.initializers.Constant(self.k_init),
            trainable=False,
        )
        self.t = self.add_weight(
            name="ede_t", shape=(), initializer=tf.keras.initializers.Constant(self.t_init),
            trainable=False,
        )
        super().build(input_shape)

    def statistics(self, w):
        """(center, distance) per output channel, shaped to broadcast against ``w``."""
        axes = _kernel_axes(w)
        return (
            tf.reduce_mean(w, axis=axes, keepdims=True),
            tf.math.reduce_std(w, axis=axes, keepdims=True),
        )

    def call(self, inputs):
        w = _at_least_float32(inputs)
        center, distance = self.statistics(w)
        signs = ede_sign((w - center) / distance, tf.cast(self.k, w.dtype), tf.cast(self.t, w.dtype))
        return tf.cast(distance * signs + center, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "k": self.k_init, "t": self.t_init}


@register
class AdaBinActivationQuantizer(lq.quantizers.Quantizer):
    r"""AdaBin activation binarizer (input_quantizer), one learnable scalar pair per layer:

    \[ u = \frac{x - \beta}{\alpha}, \qquad q(x) = \alpha\,(\operatorname{sign}(u) + \beta) \]

    This is the official code's form; its binary set is {alpha (beta - 1), alpha (beta + 1)}
    (the paper writes alpha sign(u) + beta, which the released checkpoint does not follow).
    The sign's backward is Bi-Real's ApproxSign ``max(0, 2 - 2|u|)``, so by the chain rule

    \[ \partial_x q = P'(u), \quad \partial_\beta q = \alpha - P'(u), \quad
       \partial_\alpha q = \operatorname{sign}(u) + \beta - u P'(u). \]

    Under a float16/bfloat16 policy the element-wise math runs in the compute dtype and the
    gradients of ``alpha`` and ``beta`` (sums over the whole activation) are accumulated and
    returned in float32.

    # Arguments
        alpha_init, beta_init: initial values of the scalar weights ``alpha`` and ``beta``.
    """

    precision = 1

    def __init__(self, alpha_init=1.0, beta_init=0.0, **kwargs):
        super().__init__(**kwargs)
        self.alpha_init = float(alpha_init)
        self.beta_init = float(beta_init)

    def build(self, input_shape):
        # Read in their own dtype under a mixed policy (no autocast): the float32 scalars
        # enter the fused backward, which returns their gradients in float32.
        self.alpha = self.add_weight(
            name="alpha", shape=(), initializer=tf.keras.initializers.Constant(self.alpha_init),
            experimental_autocast=False,
        )
        self.beta = self.add_weight(
            name="beta", shape=(), initializer=tf.keras.initializers.Constant(self.beta_init),
            experimental_autocast=False,
        )
        super().build(input_shape)

    def call(self, inputs):
        return adabin_activation_sign(inputs, _at_least_float32(tf.convert_to_tensor(self.alpha)),
                                      _at_least_float32(tf.convert_to_tensor(self.beta)))

    def get_config(self):
        return {**super().get_config(), "alpha_init": self.alpha_init, "beta_init": self.beta_init}


@register
class ApproxSignQuantizer(lq.quantizers.ApproxSign):
    r"""larq's ``ApproxSign`` (Bi-Real's estimator), the same values bit for bit (tests):

    \[ q(x) = \operatorname{sign}(x), \qquad \partial_x q = \max(0, 2 - 2|x|) \]

    with the backward of :func:`larq_adaptive.ste.approx_sign` (``dy * relu(2 - 2|x|)``, no
    ``tf.where``; its docstring has the speed-up). The input quantizer of the IR-Net units
    (``method="irnet"``: the DWR CIFAR-10 models).
    """

    def call(self, inputs):
        # larq's base call after the sign (its flip-ratio metric), skipping larq's sign
        return super(lq.quantizers.ApproxSign, self).call(approx_sign(inputs))


@register
class RSign(lq.quantizers.Quantizer):
    r"""ReActNet's RSign (input_quantizer): a learnable per-channel shift, then sign.

    \[ q(x)_c = \operatorname{sign}(x_c + b_c), \qquad
       \partial_x q = \partial_{b} q = \max(0, 2 - 2|x + b|) \]

    ``b`` (weight ``bias``, init 0) is minus the paper's threshold.
    """

    precision = 1

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(input_shape[-1],), initializer="zeros")
        super().build(input_shape)

    def call(self, inputs):
        return approx_sign(shift_channels(inputs, tf.cast(self.bias, inputs.dtype)))


@register
class DySign(lq.quantizers.Quantizer):
    r"""DyBNN's DySign (input_quantizer): RSign with an input-dependent threshold.

    \[ q(x)_{n,c} = \operatorname{sign}(x_{n,c} - \tau_{n,c}(x) + b_c), \quad
       \tau(x) = \mathrm{FC}_2(\mathrm{act}(\mathrm{FC}_1(\mathrm{GAP}(x)))) \]

    FC1: C -> C/reduction, FC2: C/reduction -> C, zero-initialised, so DySign starts as
    RSign. The backward is ApproxSign, and the gradient also flows into the hyper-function
    (and through GAP into ``x``). The hyper-function design is an assumption, see
    :mod:`larq_adaptive.hyper`.
    """

    precision = 1

    def __init__(self, reduction=16, hidden_activation="relu", **kwargs):
        super().__init__(**kwargs)
        self.reduction = reduction
        self.hidden_activation = hidden_activation

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.bias = self.add_weight(name="bias", shape=(channels,), initializer="zeros")
        self.threshold = HyperFunction(
            channels, self.reduction, self.hidden_activation, name="threshold",
            dtype=self.dtype_policy,
        )
        build_sublayer(self.threshold, input_shape)
        super().build(input_shape)

    def call(self, inputs):
        # x and its pooled context from one op: the backward adds GAP's gradient to x's in
        # one broadcasting add (larq_adaptive.hyper.with_global_average_pool).
        x, pooled = with_global_average_pool(inputs)
        tau = tf.cast(self.threshold(pooled), x.dtype)
        # x + (b - tau), not x - tau + b: the (N, 1, 1, C) shift is formed first, so the
        # backward reduces the incoming gradient once instead of negating it at full size.
        return approx_sign(x + (tf.cast(self.bias, x.dtype) - tau))

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "hidden_activation": self.hidden_activation,
        }


@register
class ReActNetWeightQuantizer(lq.quantizers.Quantizer):
    r"""ReActNet's weight binarizer (kernel_quantizer), per output channel ``o``:

    \[ q(W_o) = \operatorname{mean}|W_o| \cdot \operatorname{sign}(W_o)
       \text{ (scale detached)}, \qquad \partial_W q = 1_{|W| \le 1} \]

    The gradient is not scaled (larq's ``magnitude_aware_sign`` scales it). The scale is
    computed in float32 under a float16/bfloat16 policy.
    """

    precision = 1

    def call(self, inputs):
        return tf.cast(channel_scaled_sign(_at_least_float32(inputs)), inputs.dtype)


@register
class SwitchableQuantizer(lq.quantizers.Quantizer):
    """Applies ``quantizer`` once the non-trainable variable ``active`` is 1, else identity.

    Two-step training (ReActNet, DyBNN, DWR) trains real-valued weights first and then
    binary ones in the same model: a callback flips ``active`` inside ``model.fit`` (a
    Python attribute would be ignored by the traced train function). For export, freeze it
    to the final stage. ``precision`` is what is trained now: the wrapped quantizer's while
    active, 32 while inactive (so :func:`larq_adaptive.summary` reports stage 1 of two-step
    training as real-valued kernels); ``final_precision`` is the wrapped quantizer's.
    """

    def __init__(self, quantizer, active=False, **kwargs):
        super().__init__(**kwargs)
        self.quantizer = lq.quantizers.get(quantizer)
        self.active_init = bool(active)
        self.final_precision = getattr(self.quantizer, "precision", None)

    @property
    def precision(self):
        active = self.active_init
        if getattr(self, "active", None) is not None and tf.executing_eagerly():
            active = bool(self.active.numpy() > 0.5)
        return self.final_precision if active else 32

    def build(self, input_shape):
        self.active = self.add_weight(
            name="active", shape=(), trainable=False,
            initializer=tf.keras.initializers.Constant(float(self.active_init)),
        )
        super().build(input_shape)

    def call(self, inputs):
        return tf.where(self.active > 0.5, self.quantizer(inputs), inputs)

    def get_config(self):
        return {
            **super().get_config(),
            "quantizer": lq.quantizers.serialize(self.quantizer),
            "active": self.active_init,
        }
