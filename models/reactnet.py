"""ReActNet networks (Liu et al., "ReActNet: Towards Precise Binary Neural Networks with
Generalized Activation Functions", ECCV 2020).

Every binary convolution is ``RSign -> binary conv -> BN``:
:class:`~larq_adaptive.quantizers.RSign` (sign(x + b), learnable per-channel b) is the conv's
``input_quantizer`` and the weights are ``mean|W| * sign(W)`` per output channel
(:class:`~larq_adaptive.quantizers.ReActNetWeightQuantizer`, detached scale, gradient
``1_{|W|<=1}``). Each binary conv has a full-precision residual and
is followed by :class:`~larq_adaptive.layers.RPReLU` after the addition.

Two-step training: ``binary_weights=False`` builds stage 1 (real weights, binary
activations; the kernel quantizers are ``SwitchableQuantizer``s with ``active == 0``) and a
callback (or a second build with ``binary_weights=True`` and copied weights) gives stage 2.
Binary kernels use PyTorch's default conv init (stage 1 trains them from scratch).
``method="float"`` builds the real-valued twin (also registered as ``float_<name>``): every
binary conv becomes a full-precision conv with the same padding and no RSign; RPReLU stays.

Reported results (ImageNet, 1-bit weights / 1-bit activations, ReActNet README; OPs =
BOPs/64 + FLOPs):

| model                                  | top-1  | OPs     | params  | binary MACs | #bin conv |
|----------------------------------------|--------|---------|---------|-------------|-----------|
| ``reactnet_a`` (MobileNetV1-based)     | 69.5 % | 0.87e8  | 29.3 M  | 4.817 G     | 31 (26 layers here) |
| ``reactnet_resnet18`` (Bi-Real-based)  | 65.9 % | 1.63e8  | 11.70 M | 1.676 G     | 16        |

``reactnet_resnet20`` (CIFAR-10) is the ResNet-20 layout (3 blocks per stage, 16/32/64
channels, 18 binary convs, 40.1 M binary MACs) with ReActNet's own binary conv (RSign,
scaled ``mean|W| sign(W)`` weights, RPReLU). It is not the DWR code's ResNet-20+ReActNet,
whose weights are unscaled IR-Net ones (``dwr_reactnet_resnet20``); no accuracy is reported
for it in the literature covered here.

References:
- Liu, Shen, Savvides, Cheng. ReActNet: Towards Precise Binary Neural Networks with
  Generalized Activation Functions. ECCV 2020. https://arxiv.org/abs/2003.03488
- Official code: https://github.com/liuzechun/ReActNet
"""

import tensorflow as tf

from larq_adaptive.models.blocks import (
    bireal_block,
    cifar_resnet,
    conv_bn,
    finish,
    image_input,
    pooled_head,
    residual_unit,
    stages,
    stem,
    torch_max_pool,
)
from larq_adaptive.models.methods import get_method
from larq_adaptive.models.registry import PaperResult, register_with_float_twin

__all__ = ["reactnet_a", "reactnet_resnet18", "reactnet_resnet20"]

# Default train.py recipes (larq_adaptive.training.recipes); float twins: "<recipe>_float".
CIFAR = dict(input_shape=(32, 32, 3), num_classes=10, recipe="reactnet_cifar")
IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000)
REACTNET = dict(family="reactnet", method="reactnet")
RESNET18_RECIPE = "reactnet_resnet18_two_step"  # [RA] resnet/run.sh
REACTNET_A_RECIPE = "reactnet_two_step"  # [RA] mobilenet/run.sh

# ReActNet-A: MobileNetV1 channel list; block i maps CHANNELS[i-1] -> CHANNELS[i].
REACTNET_A_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)


# ---------------------------------------------------------------------------------------
# Networks (shared with DyBNN, which swaps the method).


def resnet20_network(*, name, method, input_shape, input_tensor, weights, include_top,
                     num_classes):
    """ResNet-20 (3 x 3 blocks, 16/32/64) of two-residual ReActNet blocks, no ``alg2``."""
    return cifar_resnet(
        name=name, method=method, widths=(16, 32, 64), blocks=(3, 3, 3), align=None,
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes,
    )


def resnet18_network(*, name, method, input_shape, input_tensor, weights, include_top,
                     num_classes, blocks=(4, 4, 4, 4)):
    """Bi-Real-based ResNet-18: FP stem conv 7x7/2 -> BN -> MaxPool 3x3/2 (no activation);
    one-conv blocks 64/128/256/512 x ``blocks``; head GAP -> Dense (no BN)."""
    inputs = image_input(input_shape, input_tensor, IMAGENET["input_shape"])
    x = stem(inputs, 64, 7, 2, method, activation=False)
    x = torch_max_pool(x, 3, 2, 1, name="stem_pool")
    x = stages(x, (64, 128, 256, 512), blocks, (1, 2, 2, 2), bireal_block, method)
    if include_top:
        x = pooled_head(x, num_classes, method, batch_norm_features=False)
    return finish(inputs, x, input_tensor, name, method, weights)


def reactnet_a_block(x, filters, strides, name, method):
    """ReActNet-A block ``C_in -> filters`` (``filters`` is ``C_in`` or ``2 C_in``).

    1. ``h = act1(BN1(conv3x3(x; C_in -> C_in, strides)) + AvgPool2x2(x) if strided else x)``
       (a full 3x3 binary conv, not depthwise);
    2. ``y = act2(BN2(conv1x1(h; C_in -> filters)) + h)``, where for doubling blocks the
       shortcut is ``concat[h, h]``.

    The official doubling block has two ``C_in -> C_in`` binary 1x1 convs
    (``binary_pw_down1/2``) with their own BNs (``bn2_1/2``), both fed by *one* RSign
    (``move21``) and each adding ``h``, then concatenated. Here they are one
    ``C_in -> 2 C_in`` conv (kernel = the two kernels concatenated along the output axis)
    and one BN: the same function and the same gradients (the weight scale and BN are per
    output channel), and the shared RSign stays inside the conv's ``input_quantizer``.
    """
    channels = int(x.shape[-1])
    shortcut = x
    if strides != 1:
        shortcut = tf.keras.layers.AveragePooling2D(2, strides, name=f"{name}_shortcut_pool")(x)
    h = residual_unit(x, shortcut, channels, strides, name, method, 1)
    if filters == channels:
        return residual_unit(h, h, channels, 1, name, method, 2, kernel_size=1)
    if filters != 2 * channels:
        raise ValueError(f"ReActNet-A blocks keep or double channels, got {channels}->{filters}")
    doubled = tf.keras.layers.Concatenate(name=f"{name}_shortcut_concat")([h, h])
    return residual_unit(h, doubled, filters, 1, name, method, 2, kernel_size=1)


def reactnet_a_network(*, name, method, input_shape, input_tensor, weights, include_top,
                       num_classes, channels=REACTNET_A_CHANNELS):
    """ReActNet-A: FP stem conv 3x3/2 3->``channels[0]`` -> BN (no activation), one block
    ``block{i}`` per further entry of ``channels`` (stride 2 where the width changes, except
    to 64, as the official code), head GAP -> Dense (no BN). ``channels`` other than
    :data:`REACTNET_A_CHANNELS` give the reduced-width networks of the parity tests."""
    inputs = image_input(input_shape, input_tensor, IMAGENET["input_shape"])
    x = stem(inputs, channels[0], 3, 2, method, activation=False)
    for i, (cin, cout) in enumerate(zip(channels, channels[1:]), start=1):
        strides = 2 if cout != cin and cout != 64 else 1
        x = reactnet_a_block(x, cout, strides, f"block{i}", method)
    if include_top:
        x = pooled_head(x, num_classes, method, batch_norm_features=False)
    return finish(inputs, x, input_tensor, name, method, weights)


# ---------------------------------------------------------------------------------------
# Registered builders.


@register_with_float_twin("reactnet_resnet20", provenance="adapted", **REACTNET, **CIFAR)
def reactnet_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="reactnet", binary_weights=True, pad_values=0.0,
):
    """ReActNet ResNet-20 for CIFAR-10.

    Provenance: adapted. The ReActNet code has no CIFAR network: this is the CIFAR ResNet-20
    (AdaBin/IR-Net layout) with ReActNet's binary conv, RSign and RPReLU in every block.

    FP stem conv 3x3 3->16 -> BN -> RPReLU; 3 stages x 3 blocks (16/32/64, stride 2 at the
    first block of stages 2 and 3); each block is
    ``h = RPReLU(BN(conv1(RSign(x))) + optionA(x)); y = RPReLU(BN(conv2(RSign(h))) + h)``;
    head GAP -> BN -> Dense. 18 binary convs, 40.1 M binary MACs, 0.44 M FP MACs.
    """
    return resnet20_network(
        name="reactnet_resnet20",
        method=get_method(method, "reactnet", binary_weights=binary_weights,
                          pad_values=pad_values),
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin(
    "reactnet_resnet18", recipe=RESNET18_RECIPE, provenance="official", **REACTNET, **IMAGENET,
    paper=PaperResult(65.9, "ImageNet", "ReActNet README"),
)
def reactnet_resnet18(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="reactnet", binary_weights=True, pad_values=0.0,
):
    """ReActNet ResNet-18 (Bi-Real-based) for ImageNet, official ``birealnet18``.

    Provenance: official (``resnet/1_step1/birealnet.py``, ``resnet/2_step2/birealnet.py``).

    Stem conv 7x7/2 p3 3->64 -> BN -> MaxPool 3x3/2 p1; 4 x 4 one-conv blocks
    ``RPReLU(BN(conv3x3(RSign(x))) + SC(x))`` at 64/128/256/512 (SC = AvgPool 2x2/2 -> FP
    1x1 conv -> BN where the shape changes); head GAP -> Dense. 11.70 M parameters,
    1.676 G binary MACs, 137.8 M FP MACs, 16 binary convs.
    """
    return resnet18_network(
        name="reactnet_resnet18",
        method=get_method(method, "reactnet", binary_weights=binary_weights,
                          pad_values=pad_values),
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin(
    "reactnet_a", recipe=REACTNET_A_RECIPE, provenance="official", **REACTNET, **IMAGENET,
    paper=PaperResult(69.5, "ImageNet", "ReActNet README"),
)
def reactnet_a(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="reactnet", binary_weights=True, pad_values=0.0,
):
    """ReActNet-A (MobileNetV1-based) for ImageNet, official ``reactnet``.

    Provenance: official (``mobilenet/*/reactnet.py``; each doubling block's two 1x1 convs,
    which share one RSign there, are one C -> 2C conv layer here: same parameters).

    See :func:`reactnet_a_block`. 29.3 M parameters, 4.817 G binary MACs, 11.9 M FP MACs,
    26 binary conv layers (the official 31 convs: the two 1x1 convs of each of the 5
    doubling blocks are one layer here, same function and gradients). One training step
    equals the official code's (docs/parity.md).
    """
    return reactnet_a_network(
        name="reactnet_a", method=get_method(method, "reactnet", binary_weights=binary_weights,
                                           pad_values=pad_values),
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes,
    )
