"""The layer vocabulary every builder of the zoo is written in.

Builders compose these functions with a :class:`~larq_adaptive.models.methods.Method` (how the
convs binarize, :mod:`larq_adaptive.models.methods`); nothing here knows a paper. Networks use
the functional API only (no block layers, no ``Lambda``), PyTorch's BatchNorm settings and
PyTorch-equivalent zero padding. ``name`` arguments are layer-name prefixes: numbered units
get ``{name}_conv{i}``, ``{name}_bn{i}``, ``{name}_add{i}``, ``{name}_act{i}``, blocks are
``stage{s}_block{b}`` (1-based), the stem ``stem_*`` and the head ``head_*`` / ``logits``.

Every binary convolution is ``method.conv_layer`` (a ``PaddedQuantConv2D`` or
``AdaBinConv2D``) with the binarizer in its ``input_quantizer`` and the zero padding after
it, so larq's summary sees 1-bit inputs and the LCE converter produces binary convolutions.
"""

import math

import tensorflow as tf

from larq_adaptive.layers import OptionAShortcut, TorchBatchNormalization, TorchPadding2D
from larq_adaptive.models.weights import load_weights

BN_EPSILON = 1e-5  # PyTorch default (the AdaBin head BN has running_var down to 2e-5)
BN_MOMENTUM = 0.9  # PyTorch momentum 0.1

# ---------------------------------------------------------------------------------------
# Input and output (keras.applications conventions)


def image_input(input_shape, input_tensor, default_shape):
    """The model's input tensor, keras.applications style."""
    shape = tuple(input_shape) if input_shape is not None else tuple(default_shape)
    if len(shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {shape}")
    # Keras' Input is floatx() (float32) whatever the policy: a float64 model takes float64.
    dtype = "float64" if tf.keras.mixed_precision.global_policy().compute_dtype == "float64" \
        else None
    if input_tensor is None:
        return tf.keras.Input(shape=shape, name="input", dtype=dtype)
    if not tf.keras.backend.is_keras_tensor(input_tensor):
        return tf.keras.Input(tensor=input_tensor, shape=shape, name="input", dtype=dtype)
    return input_tensor


def finish(inputs, outputs, input_tensor, name, method, weights, load=load_weights):
    """The Keras model (named ``float_<name>`` for the float twin; the keras.applications
    ``input_tensor`` rule), with ``weights`` loaded by ``load``."""
    if input_tensor is not None:
        inputs = tf.keras.utils.get_source_inputs(input_tensor)
    prefix = "float_" if method.name == "float" else ""
    return load(tf.keras.Model(inputs=inputs, outputs=outputs, name=f"{prefix}{name}"), weights)


# ---------------------------------------------------------------------------------------
# Full-precision layers


def batch_norm(x, name, dtype=None):
    """PyTorch BatchNorm (momentum 0.1, eps 1e-5, running variance unbiased)."""
    return TorchBatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name, dtype=dtype
    )(x)


def float_conv(x, filters, kernel_size, strides=1, pad=None, name=None, use_bias=False,
               kernel_initializer="he_normal"):
    """Full-precision conv with PyTorch-equivalent zero padding (LCE-safe, see padding.py)."""
    pad = kernel_size // 2 if pad is None else pad
    if pad:
        x = TorchPadding2D(kernel_size, strides, pad, name=f"{name}_pad" if name else None)(x)
    return tf.keras.layers.Conv2D(
        filters, kernel_size, strides, padding="valid", use_bias=use_bias,
        kernel_initializer=kernel_initializer, name=name,
    )(x)


def torch_max_pool(x, pool_size=3, strides=2, pad=1, name=None):
    """PyTorch MaxPool2d(pool_size, strides, pad): pads with -inf."""
    x = TorchPadding2D(pool_size, strides, pad, value=float("-inf"), name=f"{name}_pad")(x)
    return tf.keras.layers.MaxPool2D(pool_size, strides, padding="valid", name=name)(x)


def head_dtype():
    """"float32" under a float16/bfloat16 policy (the head computes in float32), else None
    (the policy's dtype: float64 runs stay float64)."""
    half = tf.keras.mixed_precision.global_policy().compute_dtype in ("float16", "bfloat16")
    return "float32" if half else None


def dense(x, num_classes, initializer, name="logits", torch_bias=False):
    """Full-precision Dense logits with bias (float32 under mixed precision, else the
    policy's dtype: float64 runs stay float64). Bias init zeros, or with ``torch_bias``
    ``nn.Linear``'s default ``U(+-1/sqrt(fan_in))`` (official code that only re-initialises
    the weight)."""
    bias = "zeros"
    if torch_bias:
        bound = 1.0 / math.sqrt(int(x.shape[-1]))
        bias = tf.keras.initializers.RandomUniform(-bound, bound)
    return tf.keras.layers.Dense(
        num_classes, kernel_initializer=initializer(), bias_initializer=bias,
        dtype=head_dtype(), name=name,
    )(x)


def _initializer(factory):
    return factory() if factory else "he_normal"


# ---------------------------------------------------------------------------------------
# Residual shortcuts ``shortcut(x, filters, strides, name)``: the identity when the shape stays.


def changes_shape(x, filters, strides):
    return strides != 1 or x.shape[-1] != filters


def option_a_shortcut(x, filters, strides, name):
    """Parameter-free: subsample at even positions + zero channel padding (ResNet "option A";
    DWR's generalisation: ``(filters - C_in) // 2`` zeros before, the rest after)."""
    if not changes_shape(x, filters, strides):
        return x
    return OptionAShortcut(filters, strides, name=f"{name}_shortcut")(x)


def conv_shortcut(x, filters, strides, name, initializer=None):
    """Full-precision 1x1 conv (stride ``strides``) -> BN (CIFAR ResNet-18)."""
    if not changes_shape(x, filters, strides):
        return x
    x = float_conv(x, filters, 1, strides, pad=0, name=f"{name}_shortcut_conv",
                   kernel_initializer=_initializer(initializer))
    return batch_norm(x, f"{name}_shortcut_bn")


def avg_pool_shortcut(x, filters, strides, name, initializer=None, ceil_mode=False):
    """``AvgPool2d(2, strides)`` -> full-precision 1x1 conv -> BN (ImageNet ResNets).

    ``ceil_mode=False``: PyTorch's default VALID pool (Bi-Real / ReActNet). ``ceil_mode=True``:
    AdaBin's ``AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False)``, which is exactly
    Keras' ``padding="same"`` pool (identical on even sizes)."""
    if not changes_shape(x, filters, strides):
        return x
    if strides != 1:
        x = tf.keras.layers.AveragePooling2D(
            2, strides, padding="same" if ceil_mode else "valid", name=f"{name}_shortcut_pool"
        )(x)
    x = float_conv(x, filters, 1, 1, pad=0, name=f"{name}_shortcut_conv",
                   kernel_initializer=_initializer(initializer))
    return batch_norm(x, f"{name}_shortcut_bn")


# ---------------------------------------------------------------------------------------
# Units and blocks ``block(x, filters, strides, name, method)``


def conv(x, filters, kernel_size, strides, name, method):
    """The method's binary conv (a full-precision ``PaddedQuantConv2D`` for "float"); PyTorch
    zero padding ``kernel_size // 2`` after the input quantizer; no bias."""
    return method.conv_layer(
        filters, kernel_size, strides=strides,
        input_quantizer=method.input_quantizer() if method.binary else None,
        kernel_quantizer=method.kernel_quantizer() if method.binary else None,
        kernel_initializer=method.kernel_initializer(), use_bias=False, name=name,
    )(x)


def conv_bn(x, filters, kernel_size, strides, name, method, index=""):
    """conv -> BN, layers ``{name}_conv{index}``, ``{name}_bn{index}``."""
    x = conv(x, filters, kernel_size, strides, f"{name}_conv{index}", method)
    return batch_norm(x, f"{name}_bn{index}")


def conv_bn_act(x, filters, kernel_size, strides, name, method, index=""):
    """conv -> BN -> activation (DWR's ``Convalg``/``alg2`` channel alignment is one)."""
    x = conv_bn(x, filters, kernel_size, strides, name, method, index)
    return method.activation(name=f"{name}_act{index}")(x)


def residual_unit(x, shortcut, filters, strides, name, method, index="", kernel_size=3):
    """The Bi-Real / ReActNet unit: ``act(BN(conv(x)) + shortcut)``."""
    y = conv_bn(x, filters, kernel_size, strides, name, method, index)
    y = tf.keras.layers.Add(name=f"{name}_add{index}")([y, shortcut])
    return method.activation(name=f"{name}_act{index}")(y)


def double_residual_block(x, filters, strides, name, method, shortcut=option_a_shortcut):
    """AdaBin's / DWR's CIFAR BasicBlock: a residual around *each* binary conv,
    ``h = act1(BN1(conv1(x)) + SC(x)); y = act2(BN2(conv2(h)) + h)``."""
    h = residual_unit(x, shortcut(x, filters, strides, name), filters, strides, name, method, 1)
    return residual_unit(h, h, filters, 1, name, method, 2)


def resnet_basic_block(x, filters, strides, name, method, shortcut_initializer=None):
    """The standard BasicBlock (DWR CIFAR ResNet-18): ``act(BN(conv2(act(BN(conv1(x))))) + SC(x))``
    with a full-precision 1x1 conv + BN shortcut (init ``shortcut_initializer``) when the shape
    changes."""
    h = conv_bn_act(x, filters, 3, strides, name, method, 1)
    shortcut = conv_shortcut(x, filters, strides, name, shortcut_initializer)
    return residual_unit(h, shortcut, filters, 1, name, method, 2)


def bireal_block(x, filters, strides, name, method):
    """One-conv Bi-Real / ReActNet block: ``act(BN(conv3x3(x)) + SC(x))``, SC =
    :func:`avg_pool_shortcut`."""
    return residual_unit(x, avg_pool_shortcut(x, filters, strides, name), filters, strides,
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


# ---------------------------------------------------------------------------------------
# Stems and heads


def stem(x, filters, kernel_size, strides, method, activation=True, initializer=None):
    """Full-precision conv -> BN (-> the method's activation): ``stem_conv/_bn/_act``."""
    x = float_conv(x, filters, kernel_size, strides, name="stem_conv",
                   kernel_initializer=_initializer(initializer))
    x = batch_norm(x, "stem_bn")
    return method.activation(name="stem_act")(x) if activation else x


def pooled_head(x, num_classes, method, batch_norm_features=True, initializer=None,
                torch_bias=False):
    """Global average pool (-> BN on the pooled vector) -> Dense: ``head_pool``, ``head_bn``,
    ``logits``, in float32 under mixed precision (Dense init: ``initializer``, default the
    method's; ``torch_bias``: see :func:`dense`)."""
    # In float32 under mixed precision: TensorFlow 2.15's bfloat16 mean is off by up to 3.3
    # units in the last place at 8 x 8 (docs/training.md, "Mixed precision").
    x = tf.keras.layers.GlobalAveragePooling2D(name="head_pool", dtype=head_dtype())(x)
    if batch_norm_features:
        x = batch_norm(x, "head_bn", dtype=head_dtype())
    return dense(x, num_classes, initializer or method.kernel_initializer, torch_bias=torch_bias)


def flatten_head(x, num_classes, method, initializer=None):
    """Flatten -> Dense (VGG-small): ``flatten``, ``logits``."""
    x = tf.keras.layers.Flatten(name="flatten")(x)
    return dense(x, num_classes, initializer or method.kernel_initializer)


# ---------------------------------------------------------------------------------------
# Networks shared by several families


def cifar_resnet(
    *, name, method, widths, blocks, align, input_shape, input_tensor, weights, include_top,
    num_classes, stem_filters=16, shortcut=option_a_shortcut, stem_initializer=None,
    load=load_weights, edge_method=None, torch_bias=False,
):
    """CIFAR ResNet-20 layout: FP stem conv 3x3 3->``stem_filters`` + BN + act; one stage per
    width (strides 1, 2, 2) of ``blocks[s]`` :func:`double_residual_block` blocks; optional
    ``alg2`` (binary conv 3x3 -> ``align`` + BN + act, DWR); head GAP -> BN -> Dense.
    ``edge_method`` (default ``method``): the method of the stem activation and of ``alg2``
    (DWR ReActNet keeps the IR-Net units there). ``include_top=False`` returns the last
    feature map."""
    edge_method = edge_method or method
    inputs = image_input(input_shape, input_tensor, (32, 32, 3))
    x = stem(inputs, stem_filters, 3, 1, edge_method, initializer=stem_initializer)

    def block(x, filters, strides, block_name, method):
        return double_residual_block(x, filters, strides, block_name, method, shortcut)

    x = stages(x, widths, blocks, (1, 2, 2), block, method)
    if align:
        x = conv_bn_act(x, align, 3, 1, "alg2", edge_method)
    if include_top:
        x = pooled_head(x, num_classes, method, torch_bias=torch_bias)
    return finish(inputs, x, input_tensor, name, method, weights, load)


VGG_SMALL_POOLS = (True, False, True, False, True)  # a 2x2 max-pool ends stages 1, 3 and 5


def vgg_small(
    *, name, method, widths, blocks, align, input_shape, input_tensor, weights, include_top,
    num_classes, stem_initializer=None, head_initializer=None,
):
    """VGG-small: FP conv 3x3 3->128 -> BN -> act (``stem_*``); five "stages" of ``blocks[s]``
    binary convs of width ``widths[s]``, each conv -> [MaxPool 2x2 after the last conv of
    stages 1, 3 and 5] -> BN -> act (``stage{s}_block{b}_conv/_pool/_bn/_act``); optional
    ``alg2`` (DWR); flatten (4 x 4 x C) -> Dense. ``include_top=False`` returns the 4x4 map."""
    if not len(widths) == len(blocks) == len(VGG_SMALL_POOLS):
        raise ValueError(f"VGG-small needs 5 widths and 5 block counts, got widths="
                         f"{list(widths)}, blocks={list(blocks)}")
    inputs = image_input(input_shape, input_tensor, (32, 32, 3))
    x = stem(inputs, 128, 3, 1, method, initializer=stem_initializer)
    for s, (filters, count, pool) in enumerate(zip(widths, blocks, VGG_SMALL_POOLS), start=1):
        for b in range(1, count + 1):
            block_name = f"stage{s}_block{b}"
            x = conv(x, filters, 3, 1, f"{block_name}_conv", method)
            if pool and b == count:
                x = tf.keras.layers.MaxPool2D(2, 2, name=f"{block_name}_pool")(x)
            x = batch_norm(x, f"{block_name}_bn")
            x = method.activation(name=f"{block_name}_act")(x)
    if align:
        x = conv_bn_act(x, align, 3, 1, "alg2", method)
    if include_top:
        x = flatten_head(x, num_classes, method, initializer=head_initializer)
    return finish(inputs, x, input_tensor, name, method, weights)
