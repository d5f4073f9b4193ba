"""Binary convolutions: larq ``QuantConv2D`` with PyTorch-equivalent padding *after* the input
quantizer, AdaBin's convolution (direct and LCE-deployable decomposed form) and the
border-corrected export form of a zero-padded +-1 convolution."""

import contextlib
import logging

import larq as lq
import tensorflow as tf

from larq_adaptive.padding import pad_nhwc, padded_shape, pair
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
    """``QuantConv2D`` with PyTorch-style zero padding ``pad`` applied after the input quantizer.

    Binarize, then pad with 0, then a VALID convolution: the official code's order. The pad
    is written LCE-safe (``((p, p-1), ...)`` for stride 2 on even sizes, see
    :mod:`larq_adaptive.padding`). ``pad`` defaults to ``kernel_size // 2``.
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), pad=None, padding="valid", **kwargs):
        if padding != "valid":
            raise ValueError("PaddedQuantConv2D pads by itself: give `pad`, not `padding`")
        kernel_size = pair(kernel_size)
        self.pad = pair(pad) if pad is not None else tuple(k // 2 for k in kernel_size)
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


@register
class BorderCorrectedQuantConv2D(PaddedQuantConv2D):
    r"""Export form of a :class:`PaddedQuantConv2D` whose input quantizer outputs +-1.

    \[ \mathrm{conv}(\mathrm{pad}_0(s), W) = \mathrm{conv}(\mathrm{pad}_{+1}(s), W)
       - \mathrm{conv}(m, W) \]

    with ``m`` the padding mask (1 on the padded border, 0 inside). The padded +-1 tensor
    is passed through ``larq.math.sign`` again (the identity on +-1), so the conv input is
    directly a binarizer output: LCE makes it an ``LceBconv2d`` with VALID padding for any
    stride, and the pad stays exact (no "SAME" rewrite, docs/deployment.md). With a
    static input shape the border term is a constant the converter folds into one ``SUB``.
    Same weights and config as :class:`PaddedQuantConv2D`; for deployment only.
    """

    def convolution_op(self, inputs, kernel):
        conv = super(PaddedQuantConv2D, self).convolution_op  # plain VALID conv
        signs = lq.math.sign(self._padded(inputs, value=1.0))
        # Written as -(border - conv): LCE folds a constant subtracted from a binary conv
        # into its per-channel bias even when the constant varies over space (invalid).
        return tf.negative(conv(self._border_mask(inputs), kernel) - conv(signs, kernel))
