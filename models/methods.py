"""How a network binarizes: the method table every builder of the zoo uses.

A *method* is one row: the binary convolution's layer and its input/kernel quantizers, the
activation that follows the residual additions, and the binary convs' kernel initializer.

| method     | conv layer          | input quantizer        | kernel quantizer            | activation | conv init       |
|------------|---------------------|------------------------|-----------------------------|------------|-----------------|
| "adabin"   | ``AdaBinConv2D``    | ``AdaBinActivationQuantizer`` | ``AdaBinWeightQuantizer`` | ``Maxout`` | He normal, fan in |
| "reactnet" | ``PaddedQuantConv2D`` | ``RSign``            | ``ReActNetWeightQuantizer`` | ``RPReLU`` | PyTorch default |
| "dybnn"    | ``PaddedQuantConv2D`` | ``DySign``           | ``ReActNetWeightQuantizer`` | ``DyPReLU``| PyTorch default |
| "irnet"    | ``PaddedQuantConv2D`` | ``ApproxSignQuantizer`` | larq ``SteSign`` (unscaled) | ``HardTanh``| He normal, fan in |
| "ste_sign" | ``PaddedQuantConv2D`` | larq ``SteSign``     | larq ``SteSign`` (unscaled) | ``HardTanh``| He normal, fan in |
| "float"    | ``PaddedQuantConv2D`` | none                 | none                        | the architecture's | the architecture's |

A new method is one row of :data:`TABLE` plus its quantizers. ``"float"`` keeps the
architecture's own activation and initializer (the ``default`` method of the builder), so
``float_<name>`` is the same graph with full-precision convs. ``"ste_sign"`` is larq's plain
baseline on the same networks. Builders pass ``binary_weights=False`` for stage 1 of two-step
training: the kernel quantizer is wrapped in an inactive ``SwitchableQuantizer``.
"""

import dataclasses
import functools
from typing import Callable, Optional

import larq as lq
import tensorflow as tf

from larq_adaptive.layers import (
    AdaBinConv2D,
    DyPReLU,
    HardTanh,
    Maxout,
    PaddedQuantConv2D,
    RPReLU,
)
from larq_adaptive.quantizers import (
    AdaBinActivationQuantizer,
    AdaBinWeightQuantizer,
    ApproxSignQuantizer,
    DySign,
    ReActNetWeightQuantizer,
    RSign,
    SwitchableQuantizer,
)

__all__ = [
    "BINARY_METHODS",
    "HE_FAN_IN",
    "HE_FAN_OUT",
    "METHODS",
    "TABLE",
    "PAD_VALUES",
    "TORCH_DEFAULT",
    "Method",
    "MethodRow",
    "get_method",
]


def init_factory(scale, mode, distribution):
    """A factory of fresh ``VarianceScaling`` initializers: an unseeded Keras initializer
    instance called twice returns the same values, so every layer needs its own."""

    def factory():
        return tf.keras.initializers.VarianceScaling(scale, mode, distribution)

    return factory


# PyTorch's initializers: kaiming_normal_ (gain sqrt 2, not truncated; fan_in or fan_out) and
# the nn.Conv2d / nn.Linear default kaiming_uniform_(a=sqrt 5) = U(+-1/sqrt(fan_in)).
HE_FAN_IN = init_factory(2.0, "fan_in", "untruncated_normal")
HE_FAN_OUT = init_factory(2.0, "fan_out", "untruncated_normal")
TORCH_DEFAULT = init_factory(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class MethodRow:
    """One row of :data:`TABLE` (classes and factories, not instances)."""

    conv_layer: type
    input_quantizer: Callable
    kernel_quantizer: Callable
    activation: Callable
    kernel_initializer: Callable
    dynamic: bool = False  # takes DyBNN's hyper-function knobs


TABLE = {
    "adabin": MethodRow(AdaBinConv2D, AdaBinActivationQuantizer, AdaBinWeightQuantizer, Maxout,
                        HE_FAN_IN),
    "reactnet": MethodRow(PaddedQuantConv2D, RSign, ReActNetWeightQuantizer, RPReLU,
                          TORCH_DEFAULT),
    "dybnn": MethodRow(PaddedQuantConv2D, DySign, ReActNetWeightQuantizer, DyPReLU, TORCH_DEFAULT,
                       dynamic=True),
    "irnet": MethodRow(PaddedQuantConv2D, ApproxSignQuantizer, lq.quantizers.SteSign,
                       HardTanh, HE_FAN_IN),
    "ste_sign": MethodRow(PaddedQuantConv2D, lq.quantizers.SteSign, lq.quantizers.SteSign,
                          HardTanh, HE_FAN_IN),
}
BINARY_METHODS = tuple(TABLE)
METHODS = BINARY_METHODS + ("float",)


@dataclasses.dataclass(frozen=True)
class Method:
    """A resolved method: factories called once per layer by :mod:`larq_adaptive.models.blocks`."""

    name: str
    conv_layer: Callable  # (filters, kernel_size, strides=, input_quantizer=, ...) -> layer
    input_quantizer: Optional[Callable]  # () -> quantizer, None for full precision
    kernel_quantizer: Optional[Callable]
    activation: Callable  # (name=...) -> Keras layer
    kernel_initializer: Callable  # () -> Keras initializer

    @property
    def binary(self):
        return self.input_quantizer is not None


def _switchable(quantizer_class, binary_weights):
    def make():
        quantizer = quantizer_class()
        return quantizer if binary_weights else SwitchableQuantizer(quantizer, active=False)

    return make


PAD_VALUES = (0.0, 1.0)


def get_method(method, default, *, binary_weights=True, reduction=16, hidden_activation="relu",
               decomposed=False, kernel_initializer=None, kernel_quantizer=None,
               pad_values=0.0):
    """The :class:`Method` named ``method`` (one of :data:`METHODS`) for an architecture whose
    own method is ``default`` (one of :data:`BINARY_METHODS`; ``"float"`` takes its activation
    and initializer).

    ``reduction``/``hidden_activation`` configure DyBNN's hyper-functions; ``decomposed``
    builds AdaBin convs in their LCE-deployable form; ``kernel_initializer`` and
    ``kernel_quantizer`` (a quantizer class or factory) override the row's binary-conv
    initializer and weight binarizer (architectures whose official code sets its own, e.g.
    DWR's ReActNet models: unscaled ``SteSign`` weights).

    ``pad_values``: what the binary convs pad their binarized input with. ``0.0`` (default):
    zero padding, as the official PyTorch code (official weights load exactly; LCE export
    exact through LCE's zero-padded "same" conv or a small border correction). ``1.0``: +1,
    the larq / larq-zoo convention, for training from scratch (costs nothing in LCE; official
    or zero-padding weights do not compute the same function with it).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if default not in BINARY_METHODS:
        raise ValueError(f"default method must be one of {BINARY_METHODS}, got {default!r}")
    row = TABLE[default if method == "float" else method]
    if decomposed and (method != "adabin"):
        raise ValueError("decomposed=True needs method='adabin'")
    if pad_values not in PAD_VALUES:
        raise ValueError(f"pad_values must be 0.0 (zero padding) or 1.0 (+1), got {pad_values!r}")
    if pad_values and method == "float":
        raise ValueError("pad_values=1.0 pads binarized inputs; method='float' has none")
    input_quantizer, activation = row.input_quantizer, row.activation
    if row.dynamic:
        knobs = dict(reduction=reduction, hidden_activation=hidden_activation)
        input_quantizer = functools.partial(input_quantizer, **knobs)
        activation = functools.partial(activation, **knobs)
    initializer = kernel_initializer or row.kernel_initializer
    if method == "float":
        return Method("float", PaddedQuantConv2D, None, None, activation, initializer)
    conv_layer = row.conv_layer
    if decomposed:
        conv_layer = functools.partial(conv_layer, decomposed=True)
    if pad_values:
        conv_layer = functools.partial(conv_layer, pad_values=float(pad_values))
    weights = kernel_quantizer or row.kernel_quantizer
    return Method(method, conv_layer, input_quantizer, _switchable(weights, binary_weights),
                  activation, initializer)
