"""AdaBin networks (Tu et al., "AdaBin: Improving Binary Neural Networks with Adaptive
Binary Sets", ECCV 2022), built exactly as the official code builds them.

The networks are written in the zoo's shared vocabulary (:mod:`larq_adaptive.models.blocks`)
with the ``"adabin"`` row of the method table (:mod:`larq_adaptive.models.methods`): every
binary 3x3 convolution is an :class:`larq_adaptive.layers.AdaBinConv2D` (AdaBin activation
and weight binarizers, zero padding *after* binarization). Each one has its own
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
weights="model.th")``, see :mod:`larq_adaptive.models.official_adabin`); its top-1 against the
official PyTorch code's on the same images is measured by
``benchmarks/official_adabin_cifar10.py`` (docs/benchmarks.md).

References:
- Tu, Chen, Li, Xu, Wang, Han, Wang. AdaBin: Improving Binary Neural Networks with Adaptive
  Binary Sets. ECCV 2022. https://arxiv.org/abs/2208.08084
- Official code: https://github.com/huawei-noah/Efficient-Computing (BinaryNetworks/AdaBin)
"""

from larq_adaptive.models import blocks, official_adabin
from larq_adaptive.models.methods import HE_FAN_IN, HE_FAN_OUT, TORCH_DEFAULT, get_method
from larq_adaptive.models.registry import PaperResult, register_with_float_twin

__all__ = [
    "adabin_resnet18",
    "adabin_resnet18_cifar",
    "adabin_resnet20",
    "adabin_resnet34",
    "adabin_vgg_small",
]

CIFAR = dict(input_shape=(32, 32, 3), num_classes=10, family="adabin", method="adabin",
             recipe="adabin_cifar")
IMAGENET = dict(input_shape=(224, 224, 3), num_classes=1000, family="adabin", method="adabin",
                recipe="adabin_imagenet")


def _method(method, decomposed, initializer, pad_values):
    """The ``"adabin"`` (or ``"float"``) method with the official code's conv initializer."""
    return get_method(method, "adabin", decomposed=decomposed, kernel_initializer=initializer,
                      pad_values=pad_values)


@register_with_float_twin("adabin_resnet20", provenance="official", **CIFAR,
                          paper=PaperResult(88.1, "CIFAR-10", "AdaBin README"))
def adabin_resnet20(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False, pad_values=0.0,
):
    """AdaBin ResNet-20 for CIFAR-10, exactly the official ``resnet20_1w1a``.

    Provenance: official (``cifar10/nets/resnet20.py``; the official checkpoint loads).

    FP stem conv 3->16 + BN + Maxout; 3 stages x 3 BasicBlocks (16/32/64 channels, stride 2
    at the first block of stages 2 and 3) with option-A shortcuts; head GAP -> BN -> Dense.
    18 AdaBin convs; 271,262 trainable parameters; 40.11 M binary MACs, 0.44 M FP MACs.
    He-normal (fan_in) init on every conv and on the Dense layer, like the official code.

    ``weights``: None, the official PyTorch checkpoint ``model.th``, the same tensors as a
    ``.npz`` state dict, or a Keras weights file saved by this library.
    """
    return blocks.cifar_resnet(
        name="adabin_resnet20", method=_method(method, decomposed, HE_FAN_IN, pad_values),
        widths=(16, 32, 64), blocks=(3, 3, 3), align=None, stem_initializer=HE_FAN_IN,
        input_shape=input_shape, input_tensor=input_tensor, weights=weights,
        include_top=include_top, num_classes=num_classes, load=official_adabin.load_weights,
    )


def _torch_conv_shortcut(x, filters, strides, name):
    """The CIFAR ResNet-18 shortcut: FP 1x1 conv (PyTorch default init) -> BN."""
    return blocks.conv_shortcut(x, filters, strides, name, TORCH_DEFAULT)


def _avg_down_shortcut(x, filters, strides, name):
    """AdaBin's ``avg_down``: AvgPool 2x2 (ceil mode) -> FP 1x1 conv (He fan_out) -> BN."""
    return blocks.avg_pool_shortcut(x, filters, strides, name, HE_FAN_OUT, ceil_mode=True)


@register_with_float_twin("adabin_resnet18_cifar", provenance="official", **CIFAR)
def adabin_resnet18_cifar(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False, pad_values=0.0,
):
    """AdaBin ResNet-18 for CIFAR-10 (official ``cifar10/nets/resnet18.py``).

    Provenance: official (``cifar10/nets/resnet18.py``).

    FP stem conv 3x3 3->64 + BN + Maxout (no max-pool); stages 64/128/256/512 x 2 blocks
    (strides 1, 2, 2, 2); FP 1x1 conv + BN shortcut when the shape changes; head
    GAP -> BN -> Dense. PyTorch default init (the official module sets none).
    11.18 M parameters, 547 M binary MACs.
    """
    method = _method(method, decomposed, TORCH_DEFAULT, pad_values)
    inputs = blocks.image_input(input_shape, input_tensor, CIFAR["input_shape"])
    x = blocks.stem(inputs, 64, 3, 1, method, initializer=TORCH_DEFAULT)
    def block(x, filters, strides, name, method):
        return blocks.double_residual_block(x, filters, strides, name, method,
                                            _torch_conv_shortcut)

    x = blocks.stages(x, (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2), block, method)
    if include_top:
        x = blocks.pooled_head(x, num_classes, method)
    return blocks.finish(inputs, x, input_tensor, "adabin_resnet18_cifar", method, weights)


def _imagenet_resnet(name, stage_blocks, *, method, decomposed, pad_values, input_shape,
                     input_tensor, weights, include_top, num_classes):
    """FP stem conv 7x7/2 p3 -> BN -> Maxout -> MaxPool 3x3/2 p1 (-inf padding); stages
    64/128/256/512 of AdaBin BasicBlocks with the ``avg_down`` shortcut; GAP -> BN -> Dense
    (PyTorch default init); convs He normal fan_out."""
    method = _method(method, decomposed, HE_FAN_OUT, pad_values)
    inputs = blocks.image_input(input_shape, input_tensor, IMAGENET["input_shape"])
    x = blocks.stem(inputs, 64, 7, 2, method, initializer=HE_FAN_OUT)
    x = blocks.torch_max_pool(x, 3, 2, 1, name="stem_pool")

    def block(x, filters, strides, name, method):
        return blocks.double_residual_block(x, filters, strides, name, method, _avg_down_shortcut)

    x = blocks.stages(x, (64, 128, 256, 512), stage_blocks, (1, 2, 2, 2), block, method)
    if include_top:
        x = blocks.pooled_head(x, num_classes, method, initializer=TORCH_DEFAULT)
    return blocks.finish(inputs, x, input_tensor, name, method, weights)


@register_with_float_twin("adabin_resnet18", provenance="official", **IMAGENET,
                          paper=PaperResult(63.1, "ImageNet", "AdaBin README"))
def adabin_resnet18(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="adabin", decomposed=False, pad_values=0.0,
):
    """AdaBin ResNet-18 for ImageNet (official ``imagenet/nets/resnet18.py``).

    Provenance: official (``imagenet/nets/resnet18.py``, minus two modules it never calls).

    FP stem conv 7x7/2 p3 3->64 + BN + Maxout + MaxPool 3x3/2 p1; stages 64/128/256/512 x 2
    blocks; ``avg_down`` shortcut (AvgPool 2x2 -> FP 1x1 conv -> BN); head GAP -> BN -> Dense.
    He-normal fan_out init on convs, like the official code. About 11.7 M parameters.
    (The official module also builds an unused Maxout and BN1d(1000); they are omitted.)
    """
    return _imagenet_resnet(
        "adabin_resnet18", (2, 2, 2, 2), method=method, decomposed=decomposed,
        pad_values=pad_values, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin("adabin_resnet34", provenance="official", **IMAGENET,
                          paper=PaperResult(66.4, "ImageNet", "AdaBin README"))
def adabin_resnet34(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=1000,
    method="adabin", decomposed=False, pad_values=0.0,
):
    """AdaBin ResNet-34 for ImageNet (official ``imagenet/nets/resnet34.py``): as
    :func:`adabin_resnet18` with 3/4/6/3 blocks. About 21.8 M parameters.

    Provenance: official (``imagenet/nets/resnet34.py``)."""
    return _imagenet_resnet(
        "adabin_resnet34", (3, 4, 6, 3), method=method, decomposed=decomposed,
        pad_values=pad_values, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )


@register_with_float_twin("adabin_vgg_small", provenance="reconstructed", **CIFAR,
                          paper=PaperResult(92.3, "CIFAR-10", "AdaBin README"))
def adabin_vgg_small(
    *, input_shape=None, input_tensor=None, weights=None, include_top=True, num_classes=10,
    method="adabin", decomposed=False, pad_values=0.0,
):
    """AdaBin VGG-small for CIFAR-10 (:func:`larq_adaptive.models.blocks.vgg_small`).

    Provenance: reconstructed. The AdaBin paper reports VGG-small, but the official code
    has no VGG-small; the layout below is the usual BNN VGG-small with AdaBin's
    convs and Maxout (assumed: the FP stem, pooling before BN, He-normal init).

    FP conv 3x3 3->128 -> BN -> Maxout (``stem_*``: like the ResNet stems, so that the first
    binary conv sees a normalised, non-binarized input), then five AdaBin convs
    128 -> 256 -> 256 -> 512 -> 512 (``stage{s}_block1_conv``); each is followed by
    [MaxPool 2x2 for the 1st, 3rd and 5th] -> BN -> Maxout (pooling between conv and BN, as in
    the usual BNN VGG-small); flatten 4x4x512 = 8192 -> FP Dense. No residuals.
    He-normal (fan_in) init. ``include_top=False`` returns the 4x4x512 feature map.
    """
    return blocks.vgg_small(
        name="adabin_vgg_small", method=_method(method, decomposed, HE_FAN_IN, pad_values),
        widths=(128, 256, 256, 512, 512), blocks=(1, 1, 1, 1, 1), align=None,
        stem_initializer=HE_FAN_IN, input_shape=input_shape, input_tensor=input_tensor,
        weights=weights, include_top=include_top, num_classes=num_classes,
    )
