"""``larq.models.summary`` with exact MAC accounting.

larq 0.14 counts *every* non-``bias`` weight of a conv/dense layer as ``count x output
pixels`` MACs, so quantizer state (AdaBin ``alpha``/``beta``/``ede_k``/``ede_t``, DySign's
FC kernels) shows up as spurious 32-bit MACs. :func:`summary` prints the same table where a
conv/dense layer's MACs come from its kernel only, and DySign/DyPReLU hyper-functions add
their true per-image FC MACs (32-bit). Parameters and memory are larq's own figures:
binary kernels 1-bit, quantizer and hyper-function state 32-bit. A quantized kernel is
counted at its quantizer's *current* precision, so stage 1 of two-step training (an inactive
:class:`~larq_adaptive.quantizers.SwitchableQuantizer`) shows real-valued 32-bit kernels.
"""

import larq as lq
from larq import models as lq_models

from larq_adaptive.hyper import HyperFunction

_KERNEL_NAMES = ("kernel", "depthwise_kernel", "pointwise_kernel")


def _is_kernel(layer, weight):
    return any(weight is getattr(layer, name, None) for name in _KERNEL_NAMES)


class ExactLayerProfile(lq_models.LayerProfile):
    """A larq ``LayerProfile`` whose MACs count kernels and hyper-functions only."""

    def __init__(self, layer):
        super().__init__(layer)
        for profile in self.weight_profiles:
            quantizer = getattr(profile._weight, "quantizer", None)  # larq QuantizedVariable
            profile.bitwidth = getattr(quantizer, "precision", None) or profile.bitwidth
        self.hyper_functions = [m for m in layer.submodules if isinstance(m, HyperFunction)]
        self.op_profiles = []
        is_mac_layer = isinstance(layer, lq_models.mac_containing_layers)
        if is_mac_layer and self.output_pixels:
            for profile in self.weight_profiles:
                if _is_kernel(layer, profile._weight):
                    self.op_profiles.append(
                        lq_models.OperationProfile(
                            n=profile.count * self.output_pixels,
                            precision=max(self.input_precision or 32, profile.bitwidth),
                            op_type="mac",
                        )
                    )
        for hyper in self.hyper_functions:
            self.op_profiles.append(
                lq_models.OperationProfile(n=hyper.macs, precision=32, op_type="mac")
            )

    def op_count(self, op_type=None, precision=None):
        if op_type != "mac":
            raise ValueError("Currently only counting of MAC-operations is supported.")
        if self.hyper_functions or (
            isinstance(self._layer, lq_models.op_count_supported_layer_types)
            and self.output_pixels
        ):
            return sum(
                op.n for op in self.op_profiles if precision is None or op.precision == precision
            )
        return None


class ExactModelProfile(lq_models.ModelProfile):
    """A larq ``ModelProfile`` built from :class:`ExactLayerProfile` (nested models too)."""

    def __init__(self, model):
        self.name = model.name
        self.layer_profiles = [
            ExactModelProfile(layer) if isinstance(layer, lq_models.tf.keras.Model)
            else ExactLayerProfile(layer)
            for layer in model.layers
        ]


def summary(model, print_fn=None, include_macs=True):
    """Print ``larq.models.summary(model)`` with exact MACs; return the profile.

    The returned :class:`ExactModelProfile` answers ``weight_count(bitwidth)``,
    ``op_count("mac", precision)``, ``memory`` (bits) like larq's own profile.
    Use ``larq.models.summary`` when you need larq's numbers as-is; use this one for the
    cost of a model with trainable or dynamic quantizers.
    """
    with lq.utils.patch_object(lq_models, "ModelProfile", ExactModelProfile):
        lq_models.summary(model, print_fn=print_fn, include_macs=include_macs)
    return ExactModelProfile(model)
