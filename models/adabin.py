"""AdaBin networks (Tu et al., "AdaBin: Improving Binary Neural Networks with Adaptive
Binary Sets", ECCV 2022), built exactly as the official code builds them.

Every binary 3x3 convolution is an :class:`larq_adaptive.layers.AdaBinConv2D` (AdaBin
activation and weight binarizers, zero padding *after* binarization). Each one has its own
full-precision residual (Bi-Real style) and is followed by BatchNorm, the residual addition
and AdaBin's two-slope "Maxout" activation:

    h = Maxout1(BN1(AdaBinConv1(x)) + shortcut(x))
    y = Maxout2(BN2(AdaBinConv2(h)) + h)

The stem convolution, the projection shortcuts and the classifier stay full precision.
``method="float"`` builds the real-valued twin: the same graph with every binary conv
replaced by a full-precision conv with the same PyTorch padding. Each model is also
registered as ``float_<name>``. ``decomposed=True`` builds the binary convs in their
LCE-deployable form (a +-1 binary conv plus float corrections, exact at the zero-padded
borders): the same function and the same weights, so weights load into either form.

Reported results (1-bit weights / 1-bit activations; AdaBin README, paper, MindSpore port):

| dataset  | model                          | top-1  | top-5  |
|----------|--------------------------------|--------|--------|
| CIFAR-10 | ResNet-20                      | 88.1 % | -      |
| CIFAR-10 | ResNet-18                      | "62.1 %" (README, implausible) | - |
| CIFAR-10 | VGG-small                      | 92.3 % | -      |
| ImageNet | ResNet-18                      | 63.1 % | 84.3 % |
| ImageNet | ResNet-18 (ReActNet two-step)  | 66.4 % | 86.5 % |
| ImageNet | ResNet-34                      | 66.4 % | 86.6 % |

The official ResNet-20 checkpoint imports exactly (``get_model("adabin_resnet20",
weights="model.th")``, see :mod:`larq_adaptive.models.official_adabin`). Measured with
``benchmarks/official_adabin_cifar10.py`` (official PyTorch code in brackets): lossless
CIFAR-10 test set 88.01 % [87.97 %] (decomposed form 87.98 %); JPEG copy 78.11 % [78.15 %].

References:
- Tu, Chen, Li, Xu, Wang, Han, Wang. AdaBin: Improving Binary Neural Networks with Adaptive
  Binary Sets. ECCV 2022. https://arxiv.org/abs/2208.08084
- Official code: https://github.com/huawei-noah/Efficient-Computing (BinaryNetworks/AdaBin)
"""

import functools

import tensorflow as tf

from larq_adaptive.layers import AdaBinConv2D, Maxout, PaddedQuantConv2D
from larq_adaptive.models import common, official_adabin
from larq_adaptive.models.registry import register_with_float_twin

__all__ = [
    "adabin_resnet18",
    "adabin_resnet18_cifar",
    "adabin_resnet20",
    "adabin_resnet34",
    "adabin_vgg_small",
]

METHODS = ("adabin", "float")


HE_FAN_IN, HE_FAN_OUT, TORCH_DEFAULT = common.HE_FAN_IN, common.HE_FAN_OUT, common.TORCH_DEFAULT


def conv(x, filters, kernel_size, strides, name, *, initializer, layer=PaddedQuantConv2D):
    """PyTorch-padded conv (pad ``kernel_size // 2``, no bias); ``layer`` is
    :class:`PaddedQuantConv2D` (full precision) or a binary conv from :func:`binary_conv_layer`."""
    return layer(
        filters, kernel_size, strides=strides, use_bias=False,
        kernel_initializer=initializer(), name=name,
    )(x)


def conv_bn_act(x, filters, kernel_size, strides, name, *, initializer):
    """FP conv -> BN -> Maxout, layers named ``{name}_conv``, ``{name}_bn``, ``{name}_act``."""
    x = conv(x, filters, kernel_size, strides, f"{name}_conv", initializer=initializer)
    x = common.batch_norm(x, f"{name}_bn")
    return Maxout(name=f"{name}_act")(x)


# Shortcuts: ``shortcut(x, filters, strides, name)`` from :mod:`larq_adaptive.models.common`.
option_a_shortcut = common.option_a_shortcut
conv_shortcut = functools.partial(common.conv_shortcut, initializer=TORCH_DEFAULT)
avg_down_shortcut = functools.partial(
    common.avg_pool_shortcut, initializer=HE_FAN_OUT, ceil_mode=True
)


def basic_block(x, filters, strides, name, *, binary_conv, shortcut, initializer):
    """AdaBin's BasicBlock: two binary 3x3 convs, each with its own residual."""
    h = conv(x, filters, 3, strides, f"{name}_conv1", initializer=initializer, layer=binary_conv)
    h = common.batch_norm(h, f"{name}_bn1")
    h = tf.keras.layers.Add(name=f"{name}_add1")(
        [h, shortcut(x, filters, strides, name)]
    )
    h = Maxout(name=f"{name}_act1")(h)
    y = conv(h, filters, 3, 1, f"{name}_conv2", initializer=initializer, layer=binary_conv)
    y = common.batch_norm(y, f"{name}_bn2")
    y = tf.keras.layers.Add(name=f"{name}_add2")([y, h])
    return Maxout(name=f"{name}_act2")(y)


def cifar_stem(x, filters, initializer):
    """Full-precision conv 3x3 -> BN -> Maxout."""
    return conv_bn_act(x, filters, 3, 1, "stem", initializer=initializer)


def imagenet_stem(x, filters, initializer):
    """Full-precision conv 7x7/2 p3 -> BN -> Maxout -> MaxPool 3x3/2 p1 (-inf padding)."""
    x = conv_bn_act(x, filters, 7, 2, "stem", initializer=initializer)
    return common.torch_max_pool(x, 3, 2, 1, name="stem_pool")


def head(x, num_classes, initializer):
    """Global average pool -> BatchNorm (on the pooled vector) -> Dense logits with bias."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = common.batch_norm(x, "head_bn")
    return logits(x, num_classes, initializer)


def logits(x, num_classes, initializer):
    """Full-precision Dense with bias (float32 under mixed precision), named ``logits``."""
    return tf.keras.layers.Dense(
        num_classes, kernel_initializer=initializer(), dtype="float32", name="logits"
    )(x)


def binary_conv_layer(method, decomposed=False):
    """The layer standing in for the binary convs: :class:`AdaBinConv2D` (``decomposed``: its
    LCE-deployable form, same function) for ``method="adabin"``, a full-precision
    :class:`PaddedQuantConv2D` for ``method="float"``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "float":
        if decomposed:
            raise ValueError("decomposed=True needs method='adabin'")
        return PaddedQuantConv2D
    return functools.partial(AdaBinConv2D, decomposed=bool(decomposed))


def _model_name(name, method):
    return name if method == "adabin" else f"{method}_{name}"


def adabin_resnet(
    *, name, stem, stem_filters, stages, shortcut, conv_init, dense_init, default_shape,
    input_shape, input_tensor, weights, include_top, num_classes, method, decomposed,
    load=common.load_weights,
):
    """A ResNet of AdaBin basic blocks. ``stages``: one ``(filters, blocks, stride)`` per stage."""
    binary_conv = binary_conv_layer(method, decomposed)
    inputs = common.image_input(input_shape, input_tensor, default_shape)
    x = stem(inputs, stem_filters, conv_init)
    for s, (filters, blocks, stride) in enumerate(stages, start=1):
        for b in range(1, blocks + 1):
            x = basic_block(
                x, filters, stride if b == 1 else 1, f"stage{s}_block{b}",
                binary_conv=binary_conv, shortcut=shortcut, initializer=conv_init,
            )
    if include_top:
        x = head(x, num_classes, dense_init)
    model = common.model_from(inputs, x, input_tensor, _model_name(name, method))
    return load(model, weights)


CIFAR = dict(input_shape=(32, 32, 3), num_classes=10, family="adabin", recipe="adabin_cifar")
IMAGENET = dict(
    input_shape=(224, 224, 3), num_classes=1000, family="adabin", recipe="adabin_imagenet"
)


@register_with_float_twin("adabin_resnet20", **CIFAR)
def adabin_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False,
):
    """AdaBin ResNet-20 for CIFAR-10, exactly the official ``resnet20_1w1a``.

    FP stem conv 3->16 + BN + Maxout; 3 stages x 3 BasicBlocks (16/32/64 channels, stride 2
    at the first block of stages 2 and 3) with option-A shortcuts; head GAP -> BN -> Dense.
    18 AdaBin convs; 271,262 trainable parameters; 40.11 M binary MACs, 0.44 M FP MACs.
    He-normal (fan_in) init on every conv and on the Dense layer, like the official code.

    ``weights``: None, the official PyTorch checkpoint ``model.th``, the same tensors as a
    ``.npz`` state dict, or a Keras weights file saved by this library.
    """
    return adabin_resnet(
        name="adabin_resnet20", stem=cifar_stem, stem_filters=16,
        stages=[(16, 3, 1), (32, 3, 2), (64, 3, 2)], shortcut=option_a_shortcut,
        conv_init=HE_FAN_IN, dense_init=HE_FAN_IN, default_shape=CIFAR["input_shape"],
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes, method=method,
        decomposed=decomposed,
        load=official_adabin.load_weights,
    )


@register_with_float_twin("adabin_resnet18_cifar", **CIFAR)
def adabin_resnet18_cifar(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False,
):
    """AdaBin ResNet-18 for CIFAR-10 (official ``cifar10/nets/resnet18.py``).

    FP stem conv 3x3 3->64 + BN + Maxout (no max-pool); stages 64/128/256/512 x 2 blocks
    (strides 1, 2, 2, 2); FP 1x1 conv + BN shortcut when the shape changes; head
    GAP -> BN -> Dense. PyTorch default init (the official module sets none).
    11.18 M parameters, 547 M binary MACs.
    """
    return adabin_resnet(
        name="adabin_resnet18_cifar", stem=cifar_stem, stem_filters=64,
        stages=[(64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)], shortcut=conv_shortcut,
        conv_init=TORCH_DEFAULT, dense_init=TORCH_DEFAULT, default_shape=CIFAR["input_shape"],
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes, method=method,
        decomposed=decomposed,
    )


def _imagenet_resnet(name, blocks, **kwargs):
    return adabin_resnet(
        name=name, stem=imagenet_stem, stem_filters=64,
        stages=list(zip((64, 128, 256, 512), blocks, (1, 2, 2, 2))), shortcut=avg_down_shortcut,
        conv_init=HE_FAN_OUT, dense_init=TORCH_DEFAULT, default_shape=IMAGENET["input_shape"],
        **kwargs,
    )


@register_with_float_twin("adabin_resnet18", **IMAGENET)
def adabin_resnet18(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="adabin", decomposed=False,
):
    """AdaBin ResNet-18 for ImageNet (official ``imagenet/nets/resnet18.py``).

    FP stem conv 7x7/2 p3 3->64 + BN + Maxout + MaxPool 3x3/2 p1; stages 64/128/256/512 x 2
    blocks; ``avg_down`` shortcut (AvgPool 2x2 -> FP 1x1 conv -> BN); head GAP -> BN -> Dense.
    He-normal fan_out init on convs, like the official code. About 11.7 M parameters.
    (The official module also builds an unused Maxout and BN1d(1000); they are omitted.)
    """
    return _imagenet_resnet(
        "adabin_resnet18", (2, 2, 2, 2), input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes, method=method,
        decomposed=decomposed,
    )


@register_with_float_twin("adabin_resnet34", **IMAGENET)
def adabin_resnet34(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="adabin", decomposed=False,
):
    """AdaBin ResNet-34 for ImageNet (official ``imagenet/nets/resnet34.py``): as
    :func:`adabin_resnet18` with 3/4/6/3 blocks. About 21.8 M parameters."""
    return _imagenet_resnet(
        "adabin_resnet34", (3, 4, 6, 3), input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes, method=method,
        decomposed=decomposed,
    )


# VGG-small: (filters, max-pool after the conv) for the five binary convs after the FP conv.
VGG_SMALL_CONVS = ((128, True), (256, False), (256, True), (512, False), (512, True))


@register_with_float_twin("adabin_vgg_small", **CIFAR)
def adabin_vgg_small(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False,
):
    """AdaBin VGG-small for CIFAR-10.

    FP conv 3x3 3->128 -> BN -> Maxout (layers ``stem_conv``/``stem_bn``/``stem_act``: like
    the ResNet stems, so that the first binary conv sees a normalised, non-binarized input),
    then five AdaBin convs 128 -> 256 -> 256 -> 512 -> 512; each is followed by
    [MaxPool 2x2 for the 1st, 3rd and 5th] -> BN -> Maxout (pooling between conv and BN, as in
    the usual BNN VGG-small); flatten 4x4x512 = 8192 -> FP Dense. No residuals.
    He-normal (fan_in) init. ``include_top=False`` returns the 4x4x512 feature map.
    """
    binary_conv = binary_conv_layer(method, decomposed)
    inputs = common.image_input(input_shape, input_tensor, CIFAR["input_shape"])
    x = cifar_stem(inputs, 128, HE_FAN_IN)
    for i, (filters, pool) in enumerate(VGG_SMALL_CONVS, start=1):
        name = f"block{i}"
        x = conv(x, filters, 3, 1, f"{name}_conv", initializer=HE_FAN_IN, layer=binary_conv)
        if pool:
            x = tf.keras.layers.MaxPool2D(2, 2, name=f"{name}_pool")(x)
        x = common.batch_norm(x, f"{name}_bn")
        x = Maxout(name=f"{name}_act")(x)
    if include_top:
        x = tf.keras.layers.Flatten(name="flatten")(x)
        x = logits(x, num_classes, HE_FAN_IN)
    model = common.model_from(inputs, x, input_tensor, _model_name("adabin_vgg_small", method))
    return common.load_weights(model, weights)
