"""DWR networks (Xue et al., "Fast and Accurate Binary Neural Networks based on Depth-Width
Reshaping", AAAI 2023).

DWR makes binary backbones *shallower and wider* at about the same binary compute
(fewer blocks per stage, wider stages whose widths are set by cluster-based channel
pruning), which divides the activations that get binarized by about sqrt(s). The builders
reproduce the released architectures; every one takes ``widths=`` and ``blocks=`` (one entry
per stage) so that any reshaped or searched variant can be built, e.g.
``get_model("dwr_resnet20", widths=[24, 90, 150], blocks=[1, 1, 1])``. The reshaping rule
and the width search are in :mod:`larq_adaptive.models.dwr_search` (re-exported here); the
whole pipeline as a command is ``larq-adaptive-dwr`` (:mod:`larq_adaptive.training.dwr_cli`).

Binarizers. Every binary conv of the official CIFAR-10 code is ``IRConv2d``
(``modules/ir_1w1a.py``): **unscaled** ``sign(W)`` with the clamp straight-through estimator
``sign(W).detach() - clamp(W, -1, 1).detach() + clamp(W, -1, 1)`` (larq ``SteSign``,
``clip_value=1``) and ApproxSign activations (``binactivation.py``: larq's ``ApproxSign``,
as ``ApproxSignQuantizer`` with a faster backward) --
also in ``dwr_reactnet_resnet20``, whose ReActNet parts are the learnable shifts around them
(``LearnableBias`` before the conv = ``RSign``, ``PReLU`` between two shifts = ``RPReLU``),
not ReActNet's scaled weights. Its stem and ``alg2`` keep Hardtanh and plain ApproxSign.
Init as the official ``_weights_init``: ``kaiming_normal_`` (fan in, untruncated) for every
conv and Linear weight, stem, shortcut and head included, ``nn.Linear``'s default bias;
VGG-small: ``normal(0, sqrt(2 / (k k C_out)))`` convs and ``normal(0, 0.01)`` Linear.
ImageNet (``dwr_reactnet_resnet18``): the official code uses ReActNet's scaled
``HardBinaryConv`` (``mean|W| sign(W)``), RSign and RPReLU, so the ``"reactnet"`` row.

Methods (``method=``, see :mod:`larq_adaptive.models.methods`): each builder's default is the
official one above; ``"irnet"``, ``"reactnet"`` (on the IR-Net models: ReActNet's own row,
scaled weights), ``"dybnn"``, ``"adabin"``, ``"ste_sign"`` binarize the whole network with
their row; ``"float"`` (real-valued twin, registered as ``float_<name>``) keeps the default's
activations and init. ``binary_weights=False`` builds stage 1 of two-step training
(switchable kernel quantizers, inactive).

Complexity of the released architectures (from the official modules; parameters
= trainable parameters, BN running statistics excluded; MACs of conv/FC layers):

| model                    | widths                   | params  | bin MACs | FP MACs | #bin conv |
|--------------------------|--------------------------|---------|----------|---------|-----------|
| ``dwr_resnet20``         | 16, 78, 134 (+alg2 64)   | 0.406 M | 42.9 M   | 0.44 M  | 7         |
| ``dwr_reactnet_resnet20``| 30, 86, 154 (+alg2 64)   | 0.528 M | 62.7 M   | 0.44 M  | 7         |
| ``dwr_resnet18_cifar``   | 120, 222, 290, 458       | 5.55 M  | 513 M    | 22.7 M  | 8         |
| ``dwr_vgg_small``        | 106, 252, 256, 512, 512  | 6.93 M  | 599 M    | 3.6 M   | 6         |
| ``dwr_reactnet_resnet18``| 116, 188, 408, 910       | 15.15 M | 2121 M   | 169 M   | 8         |

Reported results: up to +1.7 % absolute over the original backbones at comparable compute;
67.2 % ImageNet top-1 for the ResNet-18-derived model (1/1 bits; DWR abstract). The
per-model CIFAR-10 table of the paper is not available here.

References:
- Xue et al. Fast and Accurate Binary Neural Networks based on Depth-Width Reshaping.
  AAAI 2023. https://ojs.aaai.org/index.php/AAAI/article/view/26268
- Official code: https://github.com/pingxue-hfut/DWR
"""

import functools

import larq as lq
import tensorflow as tf

from larq_adaptive.layers import ChannelSlice
from larq_adaptive.models.blocks import (
    batch_norm,
    bireal_block,
    cifar_resnet,
    finish,
    image_input,
    pooled_head,
    resnet_basic_block,
    stages,
    stem,
    torch_max_pool,
    vgg_small,
)
from larq_adaptive.models.dwr_search import reshape, search_widths
from larq_adaptive.models.methods import HE_FAN_IN, HE_FAN_OUT, get_method
from larq_adaptive.models.registry import PaperResult, register_with_float_twin

__all__ = [
    "dwr_reactnet_resnet18",
    "dwr_reactnet_resnet20",
    "dwr_resnet18_cifar",
    "dwr_resnet20",
    "dwr_vgg_small",
    "reshape",
    "search_widths",
]

# Default train.py recipes (larq_adaptive.training.recipes); float twins: "<recipe>_float".
CIFAR = dict(input_shape=(32, 32, 3), num_classes=10, recipe="dwr_cifar", family="dwr")
IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000, recipe="dwr_imagenet_two_step",
                family="dwr")


def _method(method, family, binary_weights, pad_values, **overrides):
    return get_method(method, family, binary_weights=binary_weights, pad_values=pad_values,
                      **overrides)


# The official DWR CIFAR-10 code (modules/ir_1w1a.py IRConv2d): unscaled sign(W), clamp STE.
DWR_CIFAR_WEIGHTS = functools.partial(lq.quantizers.SteSign, clip_value=1.0)


def _vgg_linear_init():
    """VGG-small's ``m.weight.data.normal_(0, 0.01)`` for the Linear head."""
    return tf.keras.initializers.RandomNormal(0.0, 0.01)


def _widths(widths, blocks, stages_count):
    widths, blocks = tuple(int(w) for w in widths), tuple(int(b) for b in blocks)
    if len(widths) != stages_count or len(blocks) != stages_count:
        raise ValueError(
            f"need {stages_count} widths and {stages_count} block counts, got "
            f"widths={list(widths)}, blocks={list(blocks)}"
        )
    return widths, blocks


def prelu(x, name):
    """``nn.PReLU(C)``: one learnable slope per channel, initialised to 0.25."""
    return tf.keras.layers.PReLU(
        alpha_initializer=tf.keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )(x)


def convalg(x, filters, name="alg"):
    """DWR ImageNet ``Convalg`` (channel alignment after the stem), ``C -> filters`` with
    ``filters <= 2 C``: per-channel scale (depthwise 1x1 conv, FP) -> BN, concatenated with
    its input ``[scaled, x]``, first ``filters`` channels kept, then PReLU."""
    channels = int(x.shape[-1])
    if not 0 < filters <= 2 * channels:
        raise ValueError(f"Convalg maps {channels} channels to at most {2 * channels}, "
                         f"got {filters}")
    y = tf.keras.layers.DepthwiseConv2D(
        1, use_bias=False, depthwise_initializer=tf.keras.initializers.RandomUniform(-1.0, 1.0),
        name=f"{name}_conv",
    )(x)  # PyTorch default init of a 1x1 conv with one input per group: U(-1, 1)
    y = batch_norm(y, f"{name}_bn")
    y = tf.keras.layers.Concatenate(name=f"{name}_concat")([y, x])
    y = ChannelSlice(0, filters, name=f"{name}_slice")(y)
    return prelu(y, f"{name}_act")


# ---------------------------------------------------------------------------------------
# CIFAR-10


@register_with_float_twin("dwr_resnet20", method="irnet", provenance="official", **CIFAR)
def dwr_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    widths=(16, 78, 134), blocks=(1, 1, 1), method="irnet", binary_weights=True,
    pad_values=0.0,
):
    """DWR ResNet-20 for CIFAR-10 (official ``CIFAR-10/ResNet-20``, IR-Net style).

    Provenance: official (``CIFAR-10/ResNet-20/resnet.py``).

    FP stem conv 3x3 3->16 -> BN -> Hardtanh; one stage per width (strides 1, 2, 2) of
    ``blocks`` blocks ``h = HT(BN(conv1(x)) + optionA(x)); y = HT(BN(conv2(h)) + h)``, where
    option A zero-pads ``(width - C_in) // 2`` channels on each side; ``alg2`` = binary conv
    3x3 -> 64 + BN + Hardtanh; head GAP -> BN -> Dense. Binary convs: IRConv2d (ApproxSign,
    unscaled sign weights, clamp STE); ``kaiming_normal_`` init of every conv and Linear weight.
    """
    widths, blocks = _widths(widths, blocks, 3)
    official = method in ("irnet", "float")
    return cifar_resnet(
        name="dwr_resnet20", method=_method(method, "irnet", binary_weights, pad_values),
        widths=widths,
        blocks=blocks, align=64, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
        stem_initializer=HE_FAN_IN if official else None, torch_bias=official,
    )


@register_with_float_twin("dwr_reactnet_resnet20", method="reactnet", provenance="official",
                          **CIFAR)
def dwr_reactnet_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    widths=(30, 86, 154), blocks=(1, 1, 1), method="reactnet", binary_weights=True,
    pad_values=0.0,
):
    """DWR ResNet-20 + ReActNet for CIFAR-10 (official ``CIFAR-10/ResNet-20+ReActNet``).

    Provenance: official (``CIFAR-10/ResNet-20+ReActNet/resnet.py``).

    As :func:`dwr_resnet20` with widths 30/86/154; in the blocks every binary conv reads
    ``RSign(x) = sign(x + b_c)`` (``LearnableBias`` + ApproxSign) and every Hardtanh is an
    RPReLU, while the weights stay the DWR code's IRConv2d binarizer: **unscaled**
    ``sign(W)`` with the clamp STE (not ReActNet's ``mean|W| sign(W)``: under BN the scale
    leaves the forward pass unchanged but multiplies the latent-weight gradient by
    ``1/mean|W|``). The stem (FP conv + BN + Hardtanh) and ``alg2`` (IRConv2d 154 -> 64 with
    plain ApproxSign + BN + Hardtanh) are the IR-Net units. ``kaiming_normal_`` (fan in)
    init of every conv and Linear weight, PReLU slopes 0.25. Other ``method=`` values
    binarize the whole network with their own row.
    """
    widths, blocks = _widths(widths, blocks, 3)
    official = method in ("reactnet", "float")
    if official:
        body = _method(method, "reactnet", binary_weights, pad_values,
                       kernel_initializer=HE_FAN_IN,
                       kernel_quantizer=DWR_CIFAR_WEIGHTS if method == "reactnet" else None)
        edge = _method("float" if method == "float" else "irnet", "irnet", binary_weights,
                       pad_values,
                       kernel_quantizer=DWR_CIFAR_WEIGHTS if method == "reactnet" else None)
    else:
        body = edge = _method(method, "reactnet", binary_weights, pad_values)
    return cifar_resnet(
        name="dwr_reactnet_resnet20", method=body, edge_method=edge, widths=widths,
        blocks=blocks, align=64, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
        stem_initializer=HE_FAN_IN if official else None, torch_bias=official,
    )


@register_with_float_twin(
    "dwr_resnet18_cifar", method="irnet", provenance="official",
    **{**CIFAR, "recipe": "dwr_cifar_resnet18"}
)
def dwr_resnet18_cifar(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    widths=(120, 222, 290, 458), blocks=(1, 1, 1, 1), method="irnet", binary_weights=True,
    pad_values=0.0,
):
    """DWR ResNet-18 for CIFAR-10 (official ``CIFAR-10/ResNet-18``).

    Provenance: official (``CIFAR-10/ResNet-18/resnet.py``).

    FP stem conv 3x3 3->64 -> BN -> Hardtanh; stages (strides 1, 2, 2, 2) of standard
    BasicBlocks ``HT(BN(conv2(HT(BN(conv1(x))))) + SC(x))`` with SC = FP 1x1 conv + BN when
    the shape changes; head GAP -> BN -> Dense. Binary convs: IRConv2d; ``kaiming_normal_``
    init of every conv and Linear weight (stem and shortcuts included).
    """
    widths, blocks = _widths(widths, blocks, 4)
    official = method in ("irnet", "float")
    method = _method(method, "irnet", binary_weights, pad_values)
    inputs = image_input(input_shape, input_tensor, CIFAR["input_shape"])
    x = stem(inputs, 64, 3, 1, method, initializer=HE_FAN_IN if official else None)
    block = functools.partial(resnet_basic_block,
                              shortcut_initializer=HE_FAN_IN if official else None)
    x = stages(x, widths, blocks, (1, 2, 2, 2), block, method)
    if include_top:
        x = pooled_head(x, num_classes, method, torch_bias=official)
    return finish(inputs, x, input_tensor, "dwr_resnet18_cifar", method, weights)


@register_with_float_twin("dwr_vgg_small", method="irnet", provenance="official", **CIFAR)
def dwr_vgg_small(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    widths=(106, 252, 256, 512, 512), blocks=(1, 1, 1, 1, 1), method="irnet",
    binary_weights=True,
    pad_values=0.0,
):
    """DWR VGG-small for CIFAR-10 (official ``CIFAR-10/VGG-Small&VGG-11/vgg.py``).

    Provenance: official (``CIFAR-10/VGG-Small&VGG-11/vgg.py``).

    FP conv 3x3 3->128 -> BN -> Hardtanh (``stem_*``); five "stages" of ``blocks[s]`` binary
    convs of width ``widths[s]``, each conv -> [MaxPool 2x2 after the last conv of stages 1,
    3 and 5] -> BN -> Hardtanh (``stage{s}_block{b}_conv/_pool/_bn/_act``); ``alg2`` = binary
    conv 3x3 -> 512 + BN + Hardtanh; flatten (4 x 4 x 512) -> Dense. ``include_top=False``
    returns the 4x4x512 map. Binary convs: IRConv2d; init as the official
    ``_initialize_weights``: every conv ``normal(0, sqrt(2 / (k k C_out)))`` (fan out), the
    Linear ``normal(0, 0.01)``, biases zero.
    """
    widths, blocks = _widths(widths, blocks, 5)
    official = method in ("irnet", "float")
    overrides = dict(kernel_initializer=HE_FAN_OUT) if official else {}
    return vgg_small(
        name="dwr_vgg_small", method=_method(method, "irnet", binary_weights, pad_values,
                                              **overrides),
        widths=widths, blocks=blocks, align=512, input_shape=input_shape,
        input_tensor=input_tensor, weights=weights, include_top=include_top,
        num_classes=num_classes, stem_initializer=HE_FAN_OUT if official else None,
        head_initializer=_vgg_linear_init if official else None,
    )


# ---------------------------------------------------------------------------------------
# ImageNet


@register_with_float_twin("dwr_reactnet_resnet18", method="reactnet", provenance="official",
                          **IMAGENET, paper=PaperResult(67.2, "ImageNet", "DWR paper, abstract"))
def dwr_reactnet_resnet18(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    widths=(116, 188, 408, 910), blocks=(2, 2, 2, 2), method="reactnet", binary_weights=True,
    pad_values=0.0,
):
    """DWR ResNet-18 + ReActNet for ImageNet (official ``ImageNet/resnet-18+reactnet``).

    Provenance: official (``ImageNet/resnet-18+reactnet/birealnet.py``).

    FP stem conv 7x7/2 p3 3->64 -> BN -> PReLU -> MaxPool 3x3/2 p1; :func:`convalg`
    64 -> ``widths[0]`` (at most 128); one-conv ReActNet blocks
    ``RPReLU(BN(conv3x3(RSign(x))) + SC(x))`` (SC = AvgPool 2x2 -> FP 1x1 conv -> BN when
    the shape changes), ``blocks`` per stage, strides 1, 2, 2, 2; head GAP -> BN -> Dense.
    """
    widths, blocks = _widths(widths, blocks, 4)
    method = _method(method, "reactnet", binary_weights, pad_values)
    inputs = image_input(input_shape, input_tensor, IMAGENET["input_shape"])
    x = stem(inputs, 64, 7, 2, method, activation=False)
    x = prelu(x, "stem_act")
    x = torch_max_pool(x, 3, 2, 1, name="stem_pool")
    x = convalg(x, widths[0])
    x = stages(x, widths, blocks, (1, 2, 2, 2), bireal_block, method)
    if include_top:
        x = pooled_head(x, num_classes, method)
    return finish(inputs, x, input_tensor, "dwr_reactnet_resnet18", method, weights)

