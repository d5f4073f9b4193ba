"""Binary convolutions: larq ``QuantConv2D`` with PyTorch-equivalent padding *after* the input
quantizer, AdaBin's convolution (direct and LCE-deployable decomposed form) and the
border-corrected export form of a zero-padded +-1 convolution."""

import contextlib
import logging

import larq as lq
import tensorflow as tf

from larq_adaptive.padding import (
    border_correction,
    is_same_padding,
    pad_nhwc,
    padded_shape,
    pair,
)
from larq_adaptive.quantizers import AdaBinActivationQuantizer, AdaBinWeightQuantizer
from larq_adaptive.serialization import build_sublayer, register

__all__ = ["AdaBinConv2D", "BorderCorrectedQuantConv2D", "PaddedQuantConv2D"]


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
    """``QuantConv2D`` with PyTorch-style padding ``pad`` applied after the input quantizer.

    Binarize, then pad, then a VALID convolution: the official code's order. The pad is
    written LCE-safe (``((p, p-1), ...)`` for stride 2 on even sizes, see
    :mod:`larq_adaptive.padding`). ``pad`` defaults to ``kernel_size // 2``. Where zero
    padding equals TF "same" padding on a static input shape (stride 1 with ``pad = k // 2``,
    stride 2 on odd sizes) the convolution pads by itself instead: the same numbers without
    a ``Pad`` op (and the ``Slice`` of its gradient), 1.2-1.4x faster forward and backward.

    ``pad_values=0.0`` (default): zero padding, as PyTorch and the official code (exact
    export needs a border correction or LCE's zero-padded "same" conv).
    ``pad_values=1.0``: the binarized input is padded with +1 (larq / larq-zoo convention;
    no correction at all in LCE). Only for training from scratch: weights trained with zero
    padding do not compute the same function.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), pad=None, padding="valid",
                 pad_values=0.0, **kwargs):
        if padding != "valid":
            raise ValueError("PaddedQuantConv2D pads by itself: give `pad`, not `padding`")
        if pad_values not in (0.0, 1.0):
            raise ValueError(
                f"pad_values must be 0.0 (zero padding) or 1.0 (+1), got {pad_values!r}"
            )
        kernel_size = pair(kernel_size)
        self.pad = pair(pad) if pad is not None else tuple(k // 2 for k in kernel_size)
        with _quiet_larq_constraint_warning():
            super().__init__(filters, kernel_size, strides=strides, padding="valid",
                             pad_values=float(pad_values), **kwargs)

    def _padded(self, inputs, value=0.0):
        return pad_nhwc(inputs, self.kernel_size, self.strides, self.pad, value, self.dilation_rate)

    def _pad_constant(self):
        """The value the quantized input is padded with (``pad_values`` for +-1 quantizers)."""
        return self.pad_values

    def _pads_as_same(self, inputs):
        """Whether PyTorch's padding equals TF "same" padding on ``inputs``' static spatial
        shape (stride 1 with ``pad = k // 2``, stride 2 on odd sizes, ...)."""
        return inputs.shape[1:3].is_fully_defined() and is_same_padding(
            inputs.shape, self.kernel_size, self.strides, self.pad, self.dilation_rate)

    def _same_conv(self, inputs, kernel):
        """The conv of zero-padded ``inputs`` as one "same" convolution (where
        :meth:`_pads_as_same`): oneDNN pads inside the kernel, without the ``Pad`` op and the
        ``Slice`` of its gradient, 1.2-1.4x faster forward and backward (``benchmarks/bfloat16_ops.py``)."""
        return tf.nn.convolution(inputs, kernel, self.strides, "SAME",
                                 dilations=self.dilation_rate, name=self.__class__.__name__)

    def _border(self, inputs, kernel, scale=None):
        """``conv(m, kernel)`` for the padding mask ``m`` of ``inputs``: compact (a few
        ``C_out`` vectors, :func:`~larq_adaptive.padding.border_correction`) for a static
        spatial shape, else a conv of the mask; None when no tap reads padding."""
        if inputs.shape[1:3].is_fully_defined():
            return border_correction(kernel, inputs.shape, self.strides, self.pad,
                                     self.dilation_rate, scale)
        border = tf.nn.convolution(self._border_mask(inputs), kernel, self.strides, "VALID",
                                   dilations=self.dilation_rate)
        return border if scale is None else border * scale

    def _border_mask(self, inputs):
        """The padded input's mask for one image: 1 on the padded border, 0 inside (for
        dynamic spatial shapes; static ones use the compact :meth:`_border`)."""
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
        value = self._pad_constant()
        if isinstance(value, float) and value == 0.0 and self._pads_as_same(inputs):
            return self._same_conv(inputs, kernel)
        if tf.is_tensor(value) or isinstance(value, tf.Variable):
            value = tf.cast(value, inputs.dtype)
        return super().convolution_op(self._padded(inputs, value), kernel)

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
    last term is the border correction (a few ``C_out`` vectors expanded over the one-pixel
    ring, :func:`~larq_adaptive.padding.border_correction`), so borders are exact.

    ``pad_values=1.0`` pads the binarized input with its "+1" level ``alpha (1 + beta)``
    instead of 0 (larq convention, from-scratch training only): no border term at all.
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

    def _pad_constant(self):
        if self.pad_values == 0.0:
            return 0.0
        quantizer = self.input_quantizer
        return quantizer.alpha * (self.pad_values + quantizer.beta)  # q at sign = pad_values

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
        outputs = (
            alpha * (tf.reshape(distance, [-1]) * conv + tf.reshape(center, [-1]) * box)
            + alpha * beta * tf.reduce_sum(binary_kernel, axis=[0, 1, 2])
        )
        if self.pad_values == 0.0:
            # |s| of one element is exactly 1 but known only at run time (see _border).
            scale = alpha * (1.0 + beta) * tf.abs(signs[:1, :1, :1, :1])
            border = self._border(inputs, binary_kernel, scale)
            if border is not None:
                outputs = outputs - border
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return outputs

    def get_config(self):
        return {**super().get_config(), "decomposed": self.decomposed}


@register
class BorderCorrectedQuantConv2D(PaddedQuantConv2D):
    r"""Export form of a :class:`PaddedQuantConv2D` whose input quantizer outputs +-1.

    Where PyTorch's padding equals TF "same" padding (stride 1, stride 2 on odd sizes; see
    :func:`~larq_adaptive.padding.is_same_padding`) the conv is a "same" conv of the +-1
    tensor: LCE's ``LceBconv2d`` pads with 0 or +1 by itself, exactly, with nothing stored
    (``pad_values=1``: an explicit symmetric +1 pad that the converter fuses). Elsewhere
    (stride 2 on even sizes) the input is padded with +1 explicitly, PyTorch-style, and for
    zero padding the border term is subtracted:

    \[ \mathrm{conv}(\mathrm{pad}_0(s), W) = \mathrm{conv}(\mathrm{pad}_{+1}(s), W)
       - \mathrm{conv}(m, W) \]

    with ``m`` the padding mask (1 on the padded border, 0 inside), built from a few ``C_out``
    vectors (:func:`~larq_adaptive.padding.border_correction`). The padded +-1 tensor is
    passed through ``larq.math.sign`` again (the identity on +-1), so the conv input is
    directly a binarizer output and LCE makes it an ``LceBconv2d`` with VALID padding.
    Same weights and config as :class:`PaddedQuantConv2D`; for deployment only.
    """

    def convolution_op(self, inputs, kernel):
        inputs = tf.cast(inputs, self.compute_dtype)
        conv = super(PaddedQuantConv2D, self).convolution_op  # plain VALID conv
        if self._pads_as_same(inputs):
            if self.pad_values == 0.0:
                return self._same_conv(inputs, kernel)
            return conv(self._padded(inputs, 1.0), kernel)  # fused into a +1 "same" LceBconv2d
        outputs = conv(lq.math.sign(self._padded(inputs, 1.0)), kernel)
        if self.pad_values == 0.0:
            # |s| of one input element is exactly 1 but known only at run time (see _border).
            border = self._border(inputs, kernel, tf.abs(inputs[:1, :1, :1, :1]))
            if border is not None:
                outputs = outputs - border
        return outputs
