"""DyBNN networks (Zhang et al., "Dynamic Binary Neural Network by Learning Channel-wise
Thresholds", ICASSP 2022): the ReActNet backbones with every RSign replaced by a
:class:`~larq_adaptive.quantizers.DySign` and every RPReLU by a
:class:`~larq_adaptive.layers.DyPReLU`.

DySign: ``sign(x - tau(x) + b)``; DyPReLU: ``PReLU(x - gamma(x) + b1) + zeta(x) + b2``, where
``tau``, ``gamma``, ``zeta`` come from a hyper-function ``FC2(act(FC1(GAP(x))))`` with
``FC1: C -> C/reduction``. FC2 starts at zero, so a freshly built DyBNN computes exactly
the ReActNet network with the same weights. The hyper-function design (``reduction=16``,
``hidden_activation="relu"``) is an assumption: the paper's exact form could not be checked
(see :mod:`larq_adaptive.hyper`); both knobs are builder arguments. Kernels, two-step training
(``binary_weights``) and the ``float_<name>`` twins (real-valued convs, no DySign, DyPReLU
kept) work as in :mod:`larq_adaptive.models.reactnet`.

Reported results (ImageNet, 1-bit weights / 1-bit activations, DyBNN abstract):

| model                                 | top-1  | ReActNet baseline |
|---------------------------------------|--------|-------------------|
| ``dybnn_reactnet_a`` (MobileNetV1)    | 71.2 % | 69.4 %            |
| ``dybnn_resnet18`` (ReAct ResNet-18)  | 67.4 % | 65.9 %            |

Parameter and MAC counts are the ReActNet ones plus the hyper-functions' FC layers
(full precision; :func:`larq_adaptive.summary` counts their per-image MACs).
``dybnn_resnet20`` (CIFAR-10) is :func:`~larq_adaptive.models.reactnet.reactnet_resnet20`
with the dynamic layers; no result is reported for it.

References:
- Zhang, Chen, Zhang, Wang, Lin, Ji. Dynamic Binary Neural Network by Learning Channel-wise
  Thresholds. ICASSP 2022. https://arxiv.org/abs/2110.05185
"""

from larq_adaptive.models import reactnet
from larq_adaptive.models.methods import get_method
from larq_adaptive.models.registry import PaperResult, register_with_float_twin

__all__ = ["dybnn_reactnet_a", "dybnn_resnet18", "dybnn_resnet20"]

CIFAR = dict(reactnet.CIFAR)
IMAGENET = dict(reactnet.IMAGENET)
DYBNN = dict(family="dybnn", method="dybnn")


def _build(network, name, method, binary_weights, reduction, hidden_activation, pad_values,
           **kwargs):
    method = get_method(method, "dybnn", binary_weights=binary_weights, reduction=reduction,
                        hidden_activation=hidden_activation, pad_values=pad_values)
    return network(name=name, method=method, **kwargs)


@register_with_float_twin("dybnn_resnet20", provenance="reconstructed", **DYBNN, **CIFAR)
def dybnn_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="dybnn", binary_weights=True, reduction=16, hidden_activation="relu", pad_values=0.0,
):
    """DyBNN ResNet-20 for CIFAR-10: :func:`~larq_adaptive.models.reactnet.reactnet_resnet20`
    with DySign/DyPReLU (the stem activation included).

    Provenance: reconstructed (DyBNN has no official code; the hyper-function is assumed, see
    the module docstring) on an adapted backbone (ReActNet has no CIFAR network)."""
    return _build(
        reactnet.resnet20_network, "dybnn_resnet20", method, binary_weights, reduction,
        hidden_activation, pad_values, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin(
    "dybnn_resnet18", recipe=reactnet.RESNET18_RECIPE, provenance="reconstructed", **DYBNN,
    **IMAGENET, paper=PaperResult(67.4, "ImageNet", "DyBNN paper"),
)
def dybnn_resnet18(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="dybnn", binary_weights=True, reduction=16, hidden_activation="relu", pad_values=0.0,
):
    """DyBNN ReAct ResNet-18 for ImageNet: :func:`~larq_adaptive.models.reactnet.reactnet_resnet18`
    with DySign/DyPReLU.

    Provenance: reconstructed (DyBNN has no official code; the hyper-function is assumed, see
    the module docstring) on the official ReActNet ResNet-18 backbone."""
    return _build(
        reactnet.resnet18_network, "dybnn_resnet18", method, binary_weights, reduction,
        hidden_activation, pad_values, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin(
    "dybnn_reactnet_a", recipe=reactnet.REACTNET_A_RECIPE, provenance="reconstructed", **DYBNN,
    **IMAGENET, paper=PaperResult(71.2, "ImageNet", "DyBNN paper"),
)
def dybnn_reactnet_a(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="dybnn", binary_weights=True, reduction=16, hidden_activation="relu", pad_values=0.0,
):
    """DyBNN ReActNet-A for ImageNet: :func:`~larq_adaptive.models.reactnet.reactnet_a` with
    DySign/DyPReLU in place of every RSign/RPReLU.

    Provenance: reconstructed (DyBNN has no official code; the hyper-function is assumed, see
    the module docstring) on the ReActNet-A backbone."""
    return _build(
        reactnet.reactnet_a_network, "dybnn_reactnet_a", method, binary_weights, reduction,
        hidden_activation, pad_values, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )
