"""Walking a Keras model: its layers (nested models included), the quantizers they hold, which
convolutions are binary, and the effective binary kernels.

"Binary conv" has one definition in the package, :func:`binary_conv_layers`: a larq
``QuantConv2D`` whose input *and* kernel quantizers are 1-bit in the final training stage
(looking through :class:`~larq_adaptive.quantizers.SwitchableQuantizer`). Export, plots, the
DWR width search and the tests all use it.
"""

import dataclasses

import larq as lq
import numpy as np
import tensorflow as tf

from larq_adaptive.quantizers import SwitchableQuantizer

__all__ = [
    "BinaryKernel",
    "binary_conv_layers",
    "binary_weights",
    "final_quantizer",
    "is_binary",
    "iter_layers",
    "iter_quantizers",
    "unwrap",
]

QUANTIZER_ATTRIBUTES = ("input_quantizer", "kernel_quantizer")


def iter_layers(model):
    """Every layer of ``model`` depth-first, descending into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from iter_layers(layer)


def unwrap(quantizer):
    """(final-stage quantizer, the SwitchableQuantizers wrapped around it, outermost first)."""
    switches = []
    while isinstance(quantizer, SwitchableQuantizer):
        switches.append(quantizer)
        quantizer = quantizer.quantizer
    return quantizer, switches


def final_quantizer(quantizer):
    """The quantizer applied in the final training stage (inside any SwitchableQuantizer)."""
    return unwrap(quantizer)[0]


def iter_quantizers(model, cls):
    """Every input/kernel quantizer of ``model`` that is an instance of ``cls``, the wrapped
    one of a ``SwitchableQuantizer`` included."""
    for layer in iter_layers(model):
        for attr in QUANTIZER_ATTRIBUTES:
            quantizer = getattr(layer, attr, None)
            final, switches = unwrap(quantizer)
            found = [q for q in [*switches, final] if isinstance(q, cls)]
            yield from found[:1]


def is_binary(quantizer):
    """True if ``quantizer``'s final stage is a 1-bit quantizer (not larq's ``NoOp``)."""
    quantizer = final_quantizer(quantizer)
    return (
        quantizer is not None
        and not isinstance(quantizer, lq.quantizers.NoOp)
        and getattr(quantizer, "precision", None) == 1
    )


def binary_conv_layers(model):
    """Every ``QuantConv2D`` of ``model`` with binary input *and* binary kernel quantizers:
    the convolutions a user marked binary, which must become ``LceBconv2d``."""
    return [
        layer
        for layer in iter_layers(model)
        if isinstance(layer, lq.layers.QuantConv2D)
        and is_binary(layer.input_quantizer)
        and is_binary(layer.kernel_quantizer)
    ]


@dataclasses.dataclass
class BinaryKernel:
    """The effective binary kernel of one layer: ``signs * scale + center`` (HWIO).

    ``signs``: int8 +-1, shape of the kernel; ``scale``, ``center``: float32 per output
    channel (``center`` is 0 for symmetric binarizers, AdaBin's beta_w otherwise).
    The binary set of filter ``o`` is ``{center[o] - scale[o], center[o] + scale[o]}``.
    """

    signs: np.ndarray
    scale: np.ndarray
    center: np.ndarray

    @property
    def values(self):
        """The float kernel the layer convolves with."""
        return self.signs.astype(np.float32) * self.scale + self.center


def _split_binary(kernel):
    """(signs, scale, center) of a kernel whose every filter holds at most two values."""
    axes = tuple(range(kernel.ndim - 1))
    high, low = kernel.max(axis=axes), kernel.min(axis=axes)
    # A filter with a single value: a symmetric binarizer whose signs all agree.
    single = np.isclose(high, low, rtol=1e-6, atol=0.0)
    center = np.where(single, 0.0, (high + low) / 2).astype(np.float32)
    scale = np.where(single, np.abs(high), (high - low) / 2).astype(np.float32)
    signs = np.where(kernel >= center, 1, -1).astype(np.int8)
    if not np.allclose(signs * scale + center, kernel, rtol=1e-5, atol=1e-6 * scale.max()):
        raise ValueError("the quantized kernel has more than two values per output channel")
    return signs, scale, center


def binary_weights(model):
    """``{layer name: BinaryKernel}`` for every layer with a binary kernel quantizer.

    larq only exposes latent weights (what Keras saves); this applies each layer's final-
    stage kernel quantizer and splits the result into +-1 signs and a per-output-channel
    scale and center. For AdaBin, ``center``/``scale`` are the filter mean and std of the
    latent weights; for ReActNet the scale is mean|W|; for ``ste_sign`` it is 1.
    """
    result = {}
    for layer in iter_layers(model):
        quantizer = final_quantizer(getattr(layer, "kernel_quantizer", None))
        if not is_binary(quantizer) or getattr(layer, "kernel", None) is None:
            continue
        latent = tf.convert_to_tensor(getattr(layer.kernel, "latent_variable", layer.kernel))
        quantized = np.asarray(quantizer(tf.cast(latent, tf.float32)), dtype=np.float32)
        result[layer.name] = BinaryKernel(*_split_binary(quantized))
    return result
