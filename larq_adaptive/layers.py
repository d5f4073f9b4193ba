"""Keras layers of the adaptive BNN methods.

- :class:`Maxout` (AdaBin), :class:`RPReLU` (ReActNet), :class:`DyPReLU` (DyBNN)
- :class:`PaddedQuantConv2D`: ``larq.layers.QuantConv2D`` with PyTorch-equivalent zero
  padding applied *after* the input quantizer (binarize, then pad, as the official code).
- :class:`AdaBinConv2D`: the AdaBin conv, in a direct form (training) and an algebraically
  equal decomposed form (a +-1 binary conv plus float corrections) that LCE can deploy.
- :class:`OptionAShortcut`: the parameter-free ResNet shortcut (subsample + channel pad).
"""

import contextlib
import logging

import larq as lq
import tensorflow as tf

from larq_adaptive.hyper import HyperFunction
from larq_adaptive.padding import _pair, pad_nhwc, padded_shape
from larq_adaptive.quantizers import AdaBinActivationQuantizer, AdaBinWeightQuantizer
from larq_adaptive.registry import build_sublayer, register

__all__ = [
    "AdaBinConv2D",
    "DyPReLU",
    "Maxout",
    "OptionAShortcut",
    "PaddedQuantConv2D",
    "RPReLU",
]


def _channel_weight(layer, name, channels, value):
    return layer.add_weight(
        name=name, shape=(channels,), initializer=tf.keras.initializers.Constant(value)
    )


@register
class Maxout(tf.keras.layers.Layer):
    r"""AdaBin's per-channel two-slope activation (the official code calls it Maxout):

    \[ f(x)_c = p_c \operatorname{ReLU}(x_c) - n_c \operatorname{ReLU}(-x_c) \]

    ``pos_scale`` p (init 1.0) and ``neg_scale`` n (init 0.25) are learnable and
    unconstrained: the official checkpoint has negative values of both.
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

    def call(self, inputs):
        pos = tf.cast(self.pos_scale, inputs.dtype)
        neg = tf.cast(self.neg_scale, inputs.dtype)
        return pos * tf.nn.relu(inputs) - neg * tf.nn.relu(-inputs)

    def get_config(self):
        return {**super().get_config(), "pos_init": self.pos_init, "neg_init": self.neg_init}


@register
class RPReLU(tf.keras.layers.Layer):
    r"""ReActNet's RPReLU: per-channel shift, PReLU, shift.

    \[ f(x)_c = \operatorname{PReLU}_c(x_c + b^{in}_c) + b^{out}_c \]

    The PReLU is a native ``keras.layers.PReLU`` (slope init 0.25, one per channel), which
    TFLite converts to its PRELU op. Shifts ``bias_in``/``bias_out`` start at 0.
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

    def shifts(self, inputs):
        """(input shift, output shift), broadcastable against ``inputs``."""
        return self.bias_in, self.bias_out

    def call(self, inputs):
        shift_in, shift_out = self.shifts(inputs)
        return self.prelu(inputs + tf.cast(shift_in, inputs.dtype)) + tf.cast(
            shift_out, inputs.dtype
        )

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

    def shifts(self, inputs):
        gamma, zeta = tf.split(tf.cast(self.shift(inputs), inputs.dtype), 2, axis=-1)
        return self.bias_in - gamma, self.bias_out + zeta

    def get_config(self):
        return {
            **super().get_config(),
            "reduction": self.reduction,
            "hidden_activation": self.hidden_activation,
        }


@register
class OptionAShortcut(tf.keras.layers.Layer):
    """Parameter-free ResNet shortcut ("option A"): keep rows/columns 0, s, 2s, ... and
    zero-pad the channel axis to ``filters``, ``(filters - C_in) // 2`` zeros before and the
    rest after (AdaBin: C_out // 4 on each side; DWR: the same rule for any widths)."""

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra < 0:
            raise ValueError(f"OptionAShortcut cannot reduce {inputs.shape[-1]} to {self.filters}")
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        n, h, w, _ = tf.TensorShape(input_shape).as_list()
        s = self.strides
        return tf.TensorShape(
            [n, None if h is None else -(-h // s), None if w is None else -(-w // s), self.filters]
        )

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@contextlib.contextmanager
def _quiet_larq_constraint_warning():
    """larq warns about binary kernels without a clipping constraint; the methods here use
    their own backward passes (EDE, |W|<=1 masks) exactly as the official code does."""
    logger = logging.getLogger("larq.layers_base")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@register
class PaddedQuantConv2D(lq.layers.QuantConv2D):
    """``QuantConv2D`` with PyTorch-style zero padding ``pad`` applied after the input quantizer.

    Binarize, then pad with 0, then a VALID convolution: the official code's order. The pad
    is written LCE-safe (``((p, p-1), ...)`` for stride 2 on even sizes, see
    :mod:`larq_adaptive.padding`). ``pad`` defaults to ``kernel_size // 2``.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), pad=None, padding="valid", **kwargs):
        if padding != "valid":
            raise ValueError("PaddedQuantConv2D pads by itself: give `pad`, not `padding`")
        kernel_size = _pair(kernel_size)
        self.pad = _pair(pad) if pad is not None else tuple(k // 2 for k in kernel_size)
        with _quiet_larq_constraint_warning():
            super().__init__(filters, kernel_size, strides=strides, padding="valid", **kwargs)

    def _padded(self, inputs, value=0.0):
        return pad_nhwc(inputs, self.kernel_size, self.strides, self.pad, value, self.dilation_rate)

    def _border_mask(self, inputs):
        """The padded input's mask for one image: 1 on the padded border, 0 inside. A constant
        when the input's spatial shape is static (the LCE converter then folds it)."""
        if inputs.shape[1:].is_fully_defined():
            zeros = tf.zeros([1, *inputs.shape[1:]], inputs.dtype)
        else:
            zeros = tf.zeros_like(inputs[:1])
        return self._padded(zeros, value=1.0)

    def _padded_shape(self, input_shape):
        return padded_shape(input_shape, self.kernel_size, self.strides, self.pad, self.dilation_rate)

    def build(self, input_shape):
        super().build(self._padded_shape(input_shape))
        quantizer = self.kernel_quantizer
        if isinstance(quantizer, tf.keras.layers.Layer) and not quantizer.built:
            build_sublayer(quantizer, self.kernel.shape)  # stable names: conv/<quantizer>/ede_k

    def convolution_op(self, inputs, kernel):
        # A quantizer created under another dtype policy (larq#631) must not leak its dtype.
        inputs = tf.cast(inputs, self.compute_dtype)
        return super().convolution_op(self._padded(inputs), kernel)

    def compute_output_shape(self, input_shape):
        return super().compute_output_shape(self._padded_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


@register
class AdaBinConv2D(PaddedQuantConv2D):
    r"""The AdaBin convolution: AdaBin activation and weight binarizers, zero padding after
    binarization, no bias.

    ``decomposed=False`` (training, import of official weights) computes
    ``conv(zero_pad(q_a(x)), q_w(W))`` directly. ``decomposed=True`` computes the same
    function as one binary convolution of +-1 values plus float terms that LCE folds:

    \[ y = \alpha\alpha_w\,\mathrm{bconv}(\hat s, b) + \alpha\beta_w\,\mathrm{box}(\hat s)
         + \alpha\beta\textstyle\sum W_b - \alpha(1+\beta)\,\mathrm{conv}(m, W_b) \]

    with ``s^ = sign((x - beta)/alpha)`` padded with +1, ``b`` the +-1 weight signs,
    ``box`` the window sum of ``s^`` over space and channels, and ``m`` the padding mask: the
    last term is a constant per-position border correction, so borders are exact.
    """

    def __init__(self, filters, kernel_size=3, strides=(1, 1), pad=None, decomposed=False, **kwargs):
        kwargs.setdefault("use_bias", False)
        input_quantizer = kwargs.pop("input_quantizer", None) or AdaBinActivationQuantizer()
        kernel_quantizer = kwargs.pop("kernel_quantizer", None) or AdaBinWeightQuantizer()
        super().__init__(
            filters, kernel_size, strides=strides, pad=pad,
            input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer, **kwargs,
        )
        if not isinstance(self.input_quantizer, AdaBinActivationQuantizer) or not isinstance(
            self.kernel_quantizer, AdaBinWeightQuantizer
        ):
            raise ValueError("AdaBinConv2D needs AdaBin activation and weight quantizers")
        self.decomposed = bool(decomposed)

    def call(self, inputs):
        if self.decomposed:
            return self.decomposed_call(inputs)
        return super().call(inputs)

    def decomposed_call(self, inputs):
        if not self.input_quantizer.built:
            self.input_quantizer.build(inputs.shape)
        alpha = self.input_quantizer.alpha
        beta = self.input_quantizer.beta
        kernel = tf.convert_to_tensor(self.kernel.latent_variable)
        center, distance = self.kernel_quantizer.statistics(kernel)
        weight_signs = lq.math.sign((kernel - center) / distance)
        binary_kernel = distance * weight_signs + center

        signs = lq.math.sign(self._padded((inputs - beta) / alpha, value=1.0))
        conv = tf.nn.convolution(
            signs, weight_signs, self.strides, "VALID", dilations=self.dilation_rate
        )
        kh, kw = self.kernel_size
        box = (kh * kw) * tf.nn.avg_pool2d(
            tf.reduce_sum(signs, axis=-1, keepdims=True), self.kernel_size, self.strides, "VALID"
        )
        border = tf.nn.convolution(
            self._border_mask(inputs), binary_kernel, self.strides, "VALID", dilations=self.dilation_rate
        )
        outputs = (
            alpha * (tf.reshape(distance, [-1]) * conv + tf.reshape(center, [-1]) * box)
            + alpha * beta * tf.reduce_sum(binary_kernel, axis=[0, 1, 2])
            - alpha * (1.0 + beta) * border
        )
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs

    def get_config(self):
        return {**super().get_config(), "decomposed": self.decomposed}
