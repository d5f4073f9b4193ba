"""DWR tooling: reshaping arithmetic and the cluster-based width search.

Expected figures were computed from the official PyTorch modules (pingxue-hfut/DWR) or are
derived by hand in the comments.
"""

import math

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.introspect import binary_conv_layers
from larq_adaptive.models import available_models, get_model
from larq_adaptive.models.dwr_search import (
    BACKBONES,
    reshape,
    search_widths,
    stage_output_convs,
)

# --------------------------------------------------------------------------------------
# reshape(): binary MACs / activations
# --------------------------------------------------------------------------------------

# (backbone, s, final DWR widths or None for the original, #binary convs,
#            binary MACs in M (1 decimal / 3 significant digits), input activations in K)
SPEC_44 = [
    ("resnet20", None, None, 18, 40.1, 184),
    ("resnet20", 3, (16, 78, 134), 7, 42.9, 106),
    ("resnet20", 3, (30, 86, 154), 7, 62.7, 142),
    ("resnet18_cifar", None, None, 16, 547, 549),
    ("resnet18_cifar", 2, (120, 222, 290, 458), 8, 513, 469),
    ("vgg_small", 1, (106, 252, 256, 512, 512), 6, 599, 280),
    ("resnet18", None, None, 16, 1676, 1681),
    ("resnet18", 2, (96, 168, 378, 866), 8, 1672, 1357),
    ("resnet18", 2, (116, 188, 408, 910), 8, 2121, 1591),
]


@pytest.mark.parametrize("name,s,widths,convs,macs_m,acts_k", SPEC_44)
def test_costs_match_spec_table(name, s, widths, convs, macs_m, acts_k):
    backbone = BACKBONES[name] if s is None else reshape(name, s).backbone.with_widths(widths)
    assert backbone.num_binary_convs == convs
    digits = 1 if macs_m < 100 else 0
    assert round(backbone.binary_macs / 1e6, digits) == macs_m
    assert round(backbone.binary_activations / 1e3) == acts_k


def test_resnet20_exact_counts_by_hand():
    # 3x3 convs at 32x32 (x6), 16x16, 8x8; the first conv of stages 2/3 reads the wider map.
    macs = (6 * 16 * 16 * 9 * 32**2
            + 16 * 32 * 9 * 16**2 + 5 * 32 * 32 * 9 * 16**2
            + 32 * 64 * 9 * 8**2 + 5 * 64 * 64 * 9 * 8**2)
    acts = 6 * 16 * 32**2 + 16 * 32**2 + 5 * 32 * 16**2 + 32 * 16**2 + 5 * 64 * 8**2
    assert BACKBONES["resnet20"].binary_macs == macs == 40_108_032
    assert BACKBONES["resnet20"].binary_activations == acts == 184_320


def test_reshape_resnet20_s3_sqrt_rule():
    result = reshape("resnet20", 3)
    assert result.blocks == (1, 1, 1)
    # 16, 32, 64 x sqrt(3) = 27.7, 55.4, 110.9
    assert result.widths == (28, 55, 111)
    # stem 16 -> 28 -> 28 | -> 55 (s2) -> 55 | -> 111 (s2) -> 111 | alg2 111 -> 64
    macs = (16 * 28 * 9 * 32**2 + 28 * 28 * 9 * 32**2 + 28 * 55 * 9 * 16**2
            + 55 * 55 * 9 * 16**2 + 55 * 111 * 9 * 8**2 + 111 * 111 * 9 * 8**2
            + 111 * 64 * 9 * 8**2)
    acts = (16 * 32**2 + 28 * 32**2 + 28 * 32**2 + 55 * 16**2 + 55 * 16**2
            + 111 * 8**2 + 111 * 8**2)
    assert (result.binary_macs, result.activations) == (macs, acts)
    assert (result.base_binary_macs, result.base_activations) == (40_108_032, 184_320)
    # "comparable cost, ~sqrt(s) fewer activations" (the released model: x1.07, /1.74)
    assert 0.85 < result.mac_ratio < 1.1
    assert abs(result.activation_reduction / math.sqrt(3) - 1) < 0.1


def test_reshape_width_multiplier_and_depth_floor():
    wide = reshape("resnet20", 3, width_multiplier=3)
    assert wide.widths == (48, 96, 192) and wide.blocks == (1, 1, 1)
    assert reshape("resnet20", 5).blocks == (1, 1, 1)  # 3 / 5 -> at least one block
    assert reshape("resnet18_cifar", 2).blocks == (1, 1, 1, 1)
    assert reshape("resnet18", 2).blocks == (2, 2, 2, 2)
    assert reshape("resnet18", 2, width_multiplier=1).widths == (64, 128, 256, 512)
    # s = 1 keeps depth and width (the DWR VGG-small case: only the width search)
    assert reshape("vgg_small", 1).widths == BACKBONES["vgg_small"].widths


def test_reshape_accepts_a_dict_and_rejects_bad_input():
    base = dict(input_size=32, stem_width=16, blocks=(4,), widths=(10,), strides=(1,),
                convs_per_block=1)
    result = reshape(base, 4)
    assert result.blocks == (1,) and result.widths == (20,)
    # 4 convs 16->10,10->10x3 vs one 16->20 conv at 32x32
    assert result.base_binary_macs == (16 * 10 + 3 * 10 * 10) * 9 * 1024
    assert result.binary_macs == 16 * 20 * 9 * 1024
    with pytest.raises(ValueError, match="s must be >= 1"):
        reshape("resnet20", 0.5)
    with pytest.raises(ValueError, match="unknown backbone"):
        reshape("resnet21", 3)


# --------------------------------------------------------------------------------------
# search_widths(): constructed conv outputs with a known answer
# --------------------------------------------------------------------------------------

SIDE = 8  # 8x8 maps: rows of length 64


def _patterns(count, seed=0):
    """``count`` random +-1 patterns (SIDE, SIDE): pairwise cosine distance ~1 +- 0.13."""
    return np.random.default_rng(seed).choice([-1.0, 1.0], size=(count, SIDE, SIDE))


def _images(patterns, n=6, seed=1):
    """n images whose sign is exactly the patterns (a positive random magnitude)."""
    rng = np.random.default_rng(seed)
    magnitude = rng.uniform(0.5, 1.5, size=(n, SIDE, SIDE, len(patterns)))
    return (np.moveaxis(patterns, 0, -1)[None] * magnitude).astype(np.float32)


def _selector_model(sources, scales, names=("stage1_block1_conv1",), bn=False,
                    kernel_quantizer=None):
    """Input -> 1x1 conv(s) of binarized inputs: output channel j = scales[j] *
    sign(x[..., sources[j]]) (with real kernels; ``kernel_quantizer="ste_sign"`` makes them
    binary convs, whose outputs are then sums of signs)."""
    tf.keras.backend.clear_session()
    inputs = tf.keras.Input((SIDE, SIDE, max(sources) + 1))
    kernel = np.zeros((1, 1, max(sources) + 1, len(sources)), np.float32)
    kernel[0, 0, sources, np.arange(len(sources))] = scales
    x, outputs = inputs, []
    for name in names:
        conv = lq.layers.QuantConv2D(len(sources), 1, input_quantizer="ste_sign",
                                     kernel_quantizer=kernel_quantizer, use_bias=False, name=name)
        x = conv(x)
        conv.set_weights([kernel])
        kernel = np.eye(len(sources), dtype=np.float32)[None, None]  # the next ones copy
        if bn:  # a side output: BN(conv) with per-channel shifts
            outputs.append(tf.keras.layers.BatchNormalization(
                beta_initializer=tf.keras.initializers.RandomUniform(-5, 5, seed=0),
                name=f"{name}_bn")(x))
    return tf.keras.Model(inputs, [x] + outputs)


def test_groups_of_scaled_copies_and_noise():
    # sources 0,1,2: groups of 5, 6, 7 positively scaled copies -> 3 clusters;
    # source 3: 4 copies < min_samples 5 -> 4 noise points; sources 4..7: distinct -> 4 noise.
    groups = [0] * 5 + [1] * 6 + [2] * 7 + [3] * 4 + [4, 5, 6, 7]
    scales = np.random.default_rng(2).uniform(0.1, 3.0, len(groups))
    model = _selector_model(groups, scales)
    images = _images(_patterns(8))
    hook = ["stage1_block1_conv1"]
    (result,) = search_widths(model, images, eps=0.021, min_samples=5, layers=hook)
    assert result.layer == "stage1_block1_conv1" and result.stage == 1
    assert (result.channels, result.clusters, result.noise, result.width) == (26, 3, 8, 11)
    labels = result.labels
    for start, size in ((0, 5), (5, 6), (11, 7)):
        assert len(set(labels[start:start + size])) == 1 and labels[start] != -1
    assert len({labels[0], labels[5], labels[11]}) == 3
    assert (labels[18:] == -1).all()
    # the eps that makes a channel core: 0 inside groups of >= 5, ~1 elsewhere
    assert (result.core_eps[:18] < 1e-6).all() and (result.core_eps[18:] > 0.5).all()
    # min_samples=4 makes the group of 4 a cluster too
    (result,) = search_widths(model, images, eps=0.021, min_samples=4, layers=hook)
    assert (result.clusters, result.noise, result.width) == (4, 4, 8)


def test_eps_is_a_cosine_distance():
    # Two +-1 patterns differing in 1 of 64 entries: cos = 62/64, distance 1 - cos = 1/32.
    patterns = _patterns(1).repeat(2, axis=0)
    patterns[1, 0, 0] *= -1
    sources = [0] * 5 + [1] * 5
    scales = np.linspace(0.5, 2.0, 10)  # scaling changes Euclidean, not cosine, distance
    model = _selector_model(sources, scales)
    images = _images(patterns)
    hook = ["stage1_block1_conv1"]
    widths = {eps: search_widths(model, images, eps=eps, layers=hook)[0].width
              for eps in (0.03, 0.033)}
    assert widths == {0.03: 2, 0.033: 1}
    # a negated copy is at cosine distance 2: never a neighbour
    model = _selector_model([0] * 10, [1.0] * 5 + [-1.0] * 5)
    assert search_widths(model, images[..., :1], eps=1.5, layers=hook)[0].width == 2


def test_the_mean_over_images_is_clustered():
    # Per image, channels a and b are not parallel; their means over the 2 images are:
    # a = (P, P) -> P, b = (Q, 2P - Q) -> P. Float conv, picked by name.
    tf.keras.backend.clear_session()
    p, q = _patterns(2)
    first = np.stack([p, q], -1)
    second = np.stack([p, 2 * p - q], -1)
    images = np.stack([first, second]).astype(np.float32)
    inputs = tf.keras.Input((SIDE, SIDE, 2))
    conv = tf.keras.layers.Conv2D(10, 1, use_bias=False, name="probe")
    model = tf.keras.Model(inputs, conv(inputs))
    kernel = np.zeros((1, 1, 2, 10), np.float32)
    kernel[0, 0, 0, :5] = np.arange(1, 6)
    kernel[0, 0, 1, 5:] = np.arange(1, 6)
    conv.set_weights([kernel])
    for batch_size in (1, 100):
        (result,) = search_widths(model, images, eps=0.021, layers=["probe"],
                                  batch_size=batch_size)
        assert (result.clusters, result.noise, result.stage) == (1, 0, None)
    (result,) = search_widths(model, images[:1], eps=0.021, layers=["probe"])
    assert result.clusters == 2  # a single image: two groups


def test_default_hooks_are_the_raw_last_conv_of_each_stage():
    names = ("stage1_block1_conv1", "stage1_block1_conv2", "stage2_block1_conv1",
             "stage2_block1_conv2", "alg2")
    # 10 copies of one pattern: raw conv outputs form 1 cluster; the BN betas in [-5, 5)
    # after each conv would scatter them (this checks that the pre-BN output is used).
    model = _selector_model([0] * 10, np.linspace(1, 2, 10), names=names, bn=True,
                            kernel_quantizer="ste_sign")
    hooked = [layer.name for layer in stage_output_convs(model)]
    assert hooked == ["stage1_block1_conv2", "stage2_block1_conv2"]
    images = _images(_patterns(1))
    results = search_widths(model, images, eps=0.021)
    assert [(r.stage, r.width) for r in results] == [(1, 1), (2, 1)]
    bn_out = search_widths(model, images, eps=0.021, layers=["stage1_block1_conv2_bn"])
    assert bn_out[0].width > 1
    with pytest.raises(ValueError, match="no layer"):
        search_widths(model, images, eps=0.021, layers=["stage9_conv"])


def test_default_hooks_without_stage_names():
    tf.keras.backend.clear_session()
    inputs = tf.keras.Input((8, 8, 3))
    x = inputs
    for filters, strides in ((4, 1), (4, 1), (6, 2), (6, 1), (5, 1)):
        x = lq.layers.QuantConv2D(filters, 3, strides, padding="same",
                                  input_quantizer="ste_sign", kernel_quantizer="ste_sign")(x)
    x = tf.keras.layers.Conv2D(2, 1)(x)  # full precision: never hooked
    model = tf.keras.Model(inputs, x)
    convs = [layer for layer in model.layers if isinstance(layer, lq.layers.QuantConv2D)]
    assert stage_output_convs(model) == [convs[1], convs[3], convs[4]]


# --------------------------------------------------------------------------------------
# cross-check of the arithmetic with lqa.summary on built models
# --------------------------------------------------------------------------------------


def _binary_cost(model):
    """(binary MACs from lqa.summary, sum of binary-conv input elements)."""
    profile = lqa.summary(model, print_fn=lambda *a, **k: None)
    acts = sum(int(np.prod(layer.input_shape[1:])) for layer in binary_conv_layers(model))
    return profile.op_count("mac", 1), acts


@pytest.mark.parametrize("backbone,s,widths,model_name", [
    ("resnet20", None, None, "adabin_resnet20"),
    ("resnet18_cifar", None, None, "adabin_resnet18_cifar"),
    ("resnet20", 3, (16, 78, 134), "dwr_resnet20"),
    ("resnet20", 3, (30, 86, 154), "dwr_reactnet_resnet20"),
    ("resnet20", 3, (48, 96, 192), "dwr_resnet20"),
    ("vgg_small", 1, (106, 252, 256, 512, 512), "dwr_vgg_small"),
    ("resnet18_cifar", 2, (120, 222, 290, 458), "dwr_resnet18_cifar"),
    ("resnet18", 2, (116, 188, 408, 910), "dwr_reactnet_resnet18"),
])
def test_arithmetic_matches_built_models(backbone, s, widths, model_name):
    if model_name not in available_models():
        pytest.skip(f"{model_name} is not registered yet")
    tf.keras.backend.clear_session()
    if widths is None:  # the original backbone (AdaBin has the same binary convs)
        description, model = BACKBONES[backbone], get_model(model_name)
    else:
        description = reshape(backbone, s).backbone.with_widths(widths)
        model = get_model(model_name, widths=list(widths), blocks=list(description.blocks))
    assert _binary_cost(model) == (description.binary_macs, description.binary_activations)
