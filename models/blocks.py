"""Building blocks shared by the ReActNet, DyBNN and DWR model families.

A *method* says how a network binarizes (:func:`get_method`):

| method     | input quantizer     | kernel quantizer            | activation   | conv init       |
|------------|---------------------|-----------------------------|--------------|-----------------|
| "reactnet" | ``RSign``           | ``ReActNetWeightQuantizer`` | ``RPReLU``   | PyTorch default |
| "dybnn"    | ``DySign``          | ``ReActNetWeightQuantizer`` | ``DyPReLU``  | PyTorch default |
| "irnet"    | larq ``ApproxSign`` | larq ``SteSign`` (unscaled) | ``HardTanh`` | kaiming normal  |
| "ste_sign" | larq ``SteSign``    | larq ``SteSign`` (unscaled) | ``HardTanh`` | kaiming normal  |
| "float"    | none                | none                        | the family's | the family's    |

``binary_weights=False`` wraps the kernel quantizer in a ``SwitchableQuantizer`` that starts
inactive (stage 1 of two-step training: real weights, binary activations). "float" keeps the
family's activation, so ``float_<name>`` is the same graph with full-precision convs.
"ste_sign" is the plain larq baseline (``ste_sign`` on inputs and kernels), used to measure
what the adaptive methods add on the same network.

Every binary convolution is a :class:`larq_adaptive.layers.PaddedQuantConv2D`: the binarizer
sits in ``input_quantizer`` and the PyTorch zero padding comes after it, so larq's summary sees
1-bit inputs and the LCE converter produces binary convolutions. Networks are built with the
functional API only (no block layers, no ``Lambda``).
"""

import dataclasses
import functools

import larq as lq
import tensorflow as tf

from larq_adaptive.layers import DyPReLU, PaddedQuantConv2D, RPReLU
from larq_adaptive.models import common
from larq_adaptive.models.registry import register_with_float_twin  # noqa: F401  (re-export)
from larq_adaptive.quantizers import DySign, ReActNetWeightQuantizer, RSign, SwitchableQuantizer
from larq_adaptive.registry import register

__all__ = [
    "BINARY_METHODS",
    "METHODS",
    "ChannelSlice",
    "HardTanh",
    "Method",
    "get_method",
    "register_with_float_twin",
]


@register
class HardTanh(tf.keras.layers.Layer):
    """PyTorch's ``nn.Hardtanh()``: ``clip(x, -1, 1)`` (IR-Net-style BNNs)."""

    def call(self, inputs):
        return tf.clip_by_value(inputs, -1.0, 1.0)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)


@register
class ChannelSlice(tf.keras.layers.Layer):
    """Keeps channels ``start:stop`` of an NHWC tensor (a serialisable ``x[..., start:stop]``)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = int(stop)

    def call(self, inputs):
        return inputs[..., self.start : self.stop]

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        return shape[:-1].concatenate([self.stop - self.start])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@dataclasses.dataclass(frozen=True)
class Method:
    """How the convolutions of a network are binarized; factories are called once per layer."""

    name: str
    input_quantizer: object  # () -> quantizer, or None for full precision
    kernel_quantizer: object  # () -> quantizer, or None for full precision
    activation: object  # (name=...) -> Keras layer
    kernel_initializer: object  # () -> Keras initializer

    @property
    def binary(self):
        return self.input_quantizer is not None


BINARY_METHODS = ("reactnet", "dybnn", "irnet", "ste_sign")
METHODS = BINARY_METHODS + ("float",)

# method -> (input quantizer, kernel quantizer, activation, binary-conv kernel init, dynamic?)
_TABLE = {
    "reactnet": (RSign, ReActNetWeightQuantizer, RPReLU, common.TORCH_DEFAULT, False),
    "dybnn": (DySign, ReActNetWeightQuantizer, DyPReLU, common.TORCH_DEFAULT, True),
    "irnet": (
        lq.quantizers.ApproxSign, lq.quantizers.SteSign, HardTanh, common.HE_FAN_IN, False,
    ),
    "ste_sign": (
        lq.quantizers.SteSign, lq.quantizers.SteSign, HardTanh, common.HE_FAN_IN, False,
    ),
}


def _kernel_quantizer_factory(quantizer_class, binary_weights):
    def make():
        quantizer = quantizer_class()
        return quantizer if binary_weights else SwitchableQuantizer(quantizer, active=False)

    return make


def get_method(method, family, *, binary_weights=True, reduction=16, hidden_activation="relu"):
    """The :class:`Method` named ``method`` (one of :data:`METHODS`).

    ``family`` (one of :data:`BINARY_METHODS`) is the builder's own method: ``"float"``
    takes its activation and initializer. ``reduction``/``hidden_activation`` configure the
    DyBNN hyper-functions (ignored by the other methods).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if family not in BINARY_METHODS:
        raise ValueError(f"family must be one of {BINARY_METHODS}, got {family!r}")
    input_q, kernel_q, activation, init, dynamic = _TABLE[family if method == "float" else method]
    if dynamic:
        knobs = dict(reduction=reduction, hidden_activation=hidden_activation)
        input_q = functools.partial(input_q, **knobs)
        activation = functools.partial(activation, **knobs)
    if method == "float":
        return Method("float", None, None, activation, init)
    return Method(method, input_q, _kernel_quantizer_factory(kernel_q, binary_weights),
                  activation, init)


# ---------------------------------------------------------------------------------------
# Layers and blocks. ``name`` is a layer-name prefix; numbered units get ``{name}_conv{i}``,
# ``{name}_bn{i}``, ``{name}_add{i}``, ``{name}_act{i}``.


def conv(x, filters, kernel_size, strides, name, method):
    """Binary conv (the method's quantizers) or, for "float", a full-precision conv; PyTorch
    zero padding ``kernel_size // 2`` after the input quantizer; no bias."""
    return PaddedQuantConv2D(
        filters, kernel_size, strides=strides,
        input_quantizer=method.input_quantizer() if method.binary else None,
        kernel_quantizer=method.kernel_quantizer() if method.binary else None,
        kernel_initializer=method.kernel_initializer(), use_bias=False, name=name,
    )(x)


def conv_bn(x, filters, kernel_size, strides, name, method, index=""):
    """conv -> BN, layers ``{name}_conv{index}``, ``{name}_bn{index}``."""
    x = conv(x, filters, kernel_size, strides, f"{name}_conv{index}", method)
    return common.batch_norm(x, f"{name}_bn{index}")


def conv_bn_act(x, filters, kernel_size, strides, name, method, index=""):
    """conv -> BN -> activation (DWR's ``Convalg``/``alg2`` channel alignment is one)."""
    x = conv_bn(x, filters, kernel_size, strides, name, method, index)
    return method.activation(name=f"{name}_act{index}")(x)


def residual_unit(x, shortcut, filters, strides, name, method, index="", kernel_size=3):
    """The Bi-Real / ReActNet unit: ``act(BN(conv(x)) + shortcut)``."""
    y = conv_bn(x, filters, kernel_size, strides, name, method, index)
    y = tf.keras.layers.Add(name=f"{name}_add{index}")([y, shortcut])
    return method.activation(name=f"{name}_act{index}")(y)


def dwr_basic_block(x, filters, strides, name, method):
    """DWR's CIFAR ResNet-20 block: a residual around *each* binary conv.

    ``h = act1(BN1(conv1(x)) + optionA(x)); y = act2(BN2(conv2(h)) + h)``.
    """
    h = residual_unit(x, common.option_a_shortcut(x, filters, strides, name), filters, strides, name,
                      method, 1)
    return residual_unit(h, h, filters, 1, name, method, 2)


def resnet_basic_block(x, filters, strides, name, method):
    """The standard BasicBlock (DWR CIFAR ResNet-18): ``act(BN(conv2(act(BN(conv1(x))))) + SC(x))``
    with a full-precision 1x1 conv + BN shortcut when the shape changes."""
    h = conv_bn_act(x, filters, 3, strides, name, method, 1)
    return residual_unit(h, common.conv_shortcut(x, filters, strides, name), filters, 1, name, method, 2)


def bireal_block(x, filters, strides, name, method):
    """One-conv Bi-Real / ReActNet block: ``act(BN(conv3x3(x)) + SC(x))``, SC =
    :func:`larq_adaptive.models.common.avg_pool_shortcut`."""
    return residual_unit(x, common.avg_pool_shortcut(x, filters, strides, name), filters, strides,
                         name, method)


def stages(x, widths, blocks, strides, block, method):
    """Stack ``blocks[s]`` blocks of width ``widths[s]`` per stage; the first block of stage
    ``s`` has stride ``strides[s]``. Blocks are named ``stage{s}_block{b}`` (1-based)."""
    if not len(widths) == len(blocks) == len(strides):
        raise ValueError(
            f"need one width and one block count per stage ({len(strides)} stages), got "
            f"widths={list(widths)}, blocks={list(blocks)}"
        )
    for s, (filters, count, stride) in enumerate(zip(widths, blocks, strides), start=1):
        if count < 1:
            raise ValueError(f"every stage needs at least one block, got blocks={list(blocks)}")
        for b in range(1, count + 1):
            x = block(x, int(filters), stride if b == 1 else 1, f"stage{s}_block{b}", method)
    return x


def stem(x, filters, kernel_size, strides, method, activation=True):
    """Full-precision conv -> BN (-> the method's activation): ``stem_conv/_bn/_act``."""
    x = common.float_conv(x, filters, kernel_size, strides, name="stem_conv")
    x = common.batch_norm(x, "stem_bn")
    return method.activation(name="stem_act")(x) if activation else x


def dense(x, num_classes, method):
    """Full-precision Dense logits with bias (float32 under mixed precision)."""
    return tf.keras.layers.Dense(
        num_classes, kernel_initializer=method.kernel_initializer(), dtype="float32",
        name="logits",
    )(x)


def pooled_head(x, num_classes, method, batch_norm=True):
    """Global average pool (-> BN on the pooled vector) -> Dense: ``head_pool``, ``head_bn``,
    ``logits``."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    if batch_norm:
        x = common.batch_norm(x, "head_bn")
    return dense(x, num_classes, method)


def finish(inputs, outputs, input_tensor, name, method, weights):
    """The Keras model (named ``float_<name>`` for the float twin), with ``weights`` loaded."""
    prefix = "float_" if method.name == "float" else ""
    model = common.model_from(inputs, outputs, input_tensor, f"{prefix}{name}")
    return common.load_weights(model, weights)


# ---------------------------------------------------------------------------------------
# The CIFAR ResNet-20 layout shared by ReActNet/DyBNN ResNet-20 and the DWR ResNet-20s.


def cifar_resnet20(
    *, name, method, widths, blocks, align, input_shape, input_tensor, weights, include_top,
    num_classes, stem_filters=16,
):
    """FP stem conv 3x3 3->16 + BN + act; one stage per width (strides 1, 2, 2) of
    ``blocks[s]`` :func:`dwr_basic_block` blocks; optional ``alg2`` (binary conv 3x3 -> ``align`` + BN + act);
    head GAP -> BN -> Dense. ``include_top=False`` returns the last feature map."""
    inputs = common.image_input(input_shape, input_tensor, (32, 32, 3))
    x = stem(inputs, stem_filters, 3, 1, method)
    x = stages(x, widths, blocks, (1, 2, 2), dwr_basic_block, method)
    if align:
        x = conv_bn_act(x, align, 3, 1, "alg2", method)
    if include_top:
        x = pooled_head(x, num_classes, method)
    return finish(inputs, x, input_tensor, name, method, weights)
