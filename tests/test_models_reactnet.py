"""ReActNet and DyBNN builders: registration, forward passes, exact sizes, two-step training,
DyBNN == ReActNet at initialisation, `.keras` round trip.

Counting convention (checked against spec/algorithms.md 2.2, 2.3 and 4.4): "params" are the
trainable parameters of the official PyTorch modules -- conv/FC weights and biases, BN gamma and
beta, RSign/RPReLU shifts, PReLU slopes -- *without* BN running statistics. In Keras that is
``sum(trainable weights)``, which is also ``lqa.summary(model).weight_count()``: larq counts a
BN's moving mean/variance in place of its gamma/beta (same number). MACs are conv/FC MACs only
(``op_count("mac", 1)`` for binary convs, ``op_count("mac", 32)`` for full-precision layers).
"""

import re

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.models import get_model
from larq_adaptive.layers import HardTanh
from larq_adaptive.quantizers import (
    DySign,
    ReActNetWeightQuantizer,
    RSign,
    SwitchableQuantizer,
)
from larq_adaptive.introspect import binary_conv_layers as binary_convs

CIFAR_NAMES = ["reactnet_resnet20", "dybnn_resnet20"]
IMAGENET_NAMES = ["reactnet_resnet18", "reactnet_a", "dybnn_resnet18", "dybnn_reactnet_a"]
# Official mobilenet/*/reactnet.py stage_out_channel[:-1]: the input width of each block.
REACTNET_A_INPUT_WIDTHS = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024]


def costs(model):
    profile = lqa.summary(model, print_fn=lambda *args, **kwargs: None)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return dict(
        params=profile.weight_count(), trainable=trainable,
        bin_macs=profile.op_count("mac", 1), fp_macs=profile.op_count("mac", 32),
        bin_convs=len(binary_convs(model)),
    )


def assert_close(value, spec, rel=0.01):
    assert abs(value - spec) <= rel * spec, f"{value} is not within {rel:.0%} of {spec}"


def forward(model, batch=2, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, *model.input_shape[1:]))
    return model(x.astype("float32"), training=False).numpy()


# -------------------------------------------------------------------------------------------
# Registry contract


def test_unknown_method_is_rejected_and_every_table_row_builds():
    with pytest.raises(ValueError, match="method must be one of"):
        get_model("reactnet_resnet20", method="xnor")
    # One vocabulary: any row of the method table binarizes any architecture.
    model = get_model("reactnet_resnet20", method="adabin")
    convs = binary_convs(model)
    assert len(convs) == 18 and all(isinstance(c, lqa.layers.AdaBinConv2D) for c in convs)
    assert isinstance(model.get_layer("stage1_block1_act1"), lqa.layers.Maxout)


# -------------------------------------------------------------------------------------------
# CIFAR ResNet-20: sizes derived by hand from the layout (stem 3->16; 3 stages x 3 blocks x 2
# binary 3x3 convs at 16/32/64 on 32/16/8 maps; head BN(64) + Dense(64->10)).

CONVS_20 = (  # (C_in, C_out, output pixels) of the 18 binary convs
    [(16, 16, 1024)] * 6
    + [(16, 32, 256)] + [(32, 32, 256)] * 5
    + [(32, 64, 64)] + [(64, 64, 64)] * 5
)
ACT_CHANNELS_20 = [16] + [16] * 6 + [32] * 6 + [64] * 6  # stem act + 2 acts per block
BIN_MACS_20 = sum(9 * cin * cout * pixels for cin, cout, pixels in CONVS_20)
FP_MACS_20 = 27 * 16 * 1024 + 64 * 10
BASE_PARAMS_20 = (  # kernels + stem + BNs + head, as the IR-Net/AdaBin ResNet-20 minus its
    sum(9 * cin * cout for cin, cout, _ in CONVS_20) + 27 * 16  # quantizer/activation params
    + 2 * (16 + sum(cout for _, cout, _ in CONVS_20) + 64) + 64 * 10 + 10
)
RSIGN_PARAMS_20 = sum(cin for cin, _, _ in CONVS_20)
RPRELU_PARAMS_20 = 3 * sum(ACT_CHANNELS_20)


def _hyper_params(channels, units):
    """FC1 C -> C//16 (+bias), FC2 C//16 -> units (+bias)."""
    hidden = max(1, channels // 16)
    return channels * hidden + hidden + hidden * units + units


def _hyper_macs(channels, units):
    hidden = max(1, channels // 16)
    return channels * hidden + hidden * units


@pytest.fixture(scope="module")
def reactnet20(build_model):
    return build_model("reactnet_resnet20")


@pytest.fixture(scope="module")
def dybnn20(build_model):
    return build_model("dybnn_resnet20")


def test_reactnet_resnet20_sizes(reactnet20):
    c = costs(reactnet20)
    assert BIN_MACS_20 == 40_108_032  # spec 4.4 "ResNet-20 original": 40.1 M
    assert c["bin_convs"] == 18
    assert c["bin_macs"] == BIN_MACS_20
    assert c["fp_macs"] == FP_MACS_20
    assert c["params"] == c["trainable"] == BASE_PARAMS_20 + RSIGN_PARAMS_20 + RPRELU_PARAMS_20
    assert_close(c["params"], 0.271e6)  # spec 4.4 (AdaBin shape; differs only by the small
    assert_close(c["bin_macs"], 40.1e6)  # per-channel params of the binarizers/activations)
    assert_close(c["fp_macs"], 0.44e6)


def test_dybnn_resnet20_sizes(dybnn20):
    c = costs(dybnn20)
    hyper_params = sum(_hyper_params(cin, cin) for cin, _, _ in CONVS_20) + sum(
        _hyper_params(ch, 2 * ch) for ch in ACT_CHANNELS_20
    )
    hyper_macs = sum(_hyper_macs(cin, cin) for cin, _, _ in CONVS_20) + sum(
        _hyper_macs(ch, 2 * ch) for ch in ACT_CHANNELS_20
    )
    assert c["bin_convs"] == 18
    assert c["params"] == BASE_PARAMS_20 + RSIGN_PARAMS_20 + RPRELU_PARAMS_20 + hyper_params
    assert c["bin_macs"] == BIN_MACS_20
    assert c["fp_macs"] == FP_MACS_20 + hyper_macs
    quantizers = [layer.input_quantizer for layer in binary_convs(dybnn20)]
    assert all(isinstance(q, DySign) for q in quantizers)
    assert {q.reduction for q in quantizers} == {16}


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_forward_and_float_twin(name, reactnet20, dybnn20, build_model):
    model = {"reactnet_resnet20": reactnet20, "dybnn_resnet20": dybnn20}[name]
    y = forward(model)
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    twin = build_model(f"float_{name}")
    assert twin.name == f"float_{name}"
    y = forward(twin)
    assert y.shape == (2, 10) and np.all(np.isfinite(y))
    assert not binary_convs(twin)
    c = costs(twin)
    assert c["bin_macs"] == 0
    # Same graph: the same layer names, minus nothing (RSign/DySign live inside the convs).
    assert [layer.name for layer in twin.layers] == [layer.name for layer in model.layers]
    # Without RSign/DySign: the conv input shifts (and DySign hyper-functions) disappear.
    removed = RSIGN_PARAMS_20 + (
        sum(_hyper_params(cin, cin) for cin, _, _ in CONVS_20) if name.startswith("dybnn") else 0
    )
    assert c["params"] == costs(model)["params"] - removed


def test_stable_layer_names(reactnet20):
    names = {layer.name for layer in reactnet20.layers}
    expected = {"stem_conv", "stem_bn", "stem_act", "head_pool", "head_bn", "logits"}
    for s in (1, 2, 3):
        for b in (1, 2, 3):
            for unit in (1, 2):
                kinds = ("conv", "bn", "add", "act")
                expected |= {f"stage{s}_block{b}_{kind}{unit}" for kind in kinds}
    expected |= {"stage2_block1_shortcut", "stage3_block1_shortcut"}
    assert expected <= names
    layer = reactnet20.get_layer("stage2_block1_conv1")
    assert isinstance(layer.input_quantizer, RSign)
    assert isinstance(layer.kernel_quantizer, ReActNetWeightQuantizer)
    assert layer.strides == (2, 2) and layer.pad == (1, 1)
    assert isinstance(reactnet20.get_layer("stage2_block1_act1"), lqa.layers.RPReLU)


def test_plain_ste_sign_baseline_is_the_same_resnet20(reactnet20, build_model):
    """method="ste_sign" (the fixed-budget baseline): same layer names and shapes, larq's
    SteSign on inputs and kernels, HardTanh activations; forward sign(x) (sign(0) = +1) and
    backward 1{|x| <= 1}, derived by hand."""
    plain = build_model("reactnet_resnet20", method="ste_sign")
    assert [layer.name for layer in plain.layers] == [layer.name for layer in reactnet20.layers]
    assert plain.output_shape == reactnet20.output_shape
    convs = binary_convs(plain)
    assert len(convs) == 18
    for layer in convs:
        assert type(layer.input_quantizer) is lq.quantizers.SteSign
        assert type(layer.kernel_quantizer) is lq.quantizers.SteSign
    assert isinstance(plain.get_layer("stage2_block1_act1"), HardTanh)
    x = tf.constant([-2.0, -1.0, -0.5, 0.0, 0.3, 1.0, 1.5])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = convs[0].input_quantizer(x)
    np.testing.assert_array_equal(y.numpy(), [-1, -1, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), [0, 1, 1, 1, 1, 1, 0])


def test_include_top_false_returns_feature_map(build_model):
    model = build_model("reactnet_resnet20", include_top=False, input_shape=(16, 16, 3))
    assert model.output_shape == (None, 4, 4, 64)


# -------------------------------------------------------------------------------------------
# Two-step training


def _relative_key(layer, weight):
    """A weight's name inside its layer, with auto-numbered quantizer scopes unified."""
    key = weight.name.split(":")[0][len(layer.name) + 1:]
    key = re.sub(r"(r_sign|dy_sign)(_\d+)?/", "sign/", key)
    return re.sub(r"^.*switchable_quantizer(_\d+)?/", "switch/", key)


def copy_weights(source, target):
    """Copy every weight of ``source`` into the same-named weight of ``target``; return how
    many target weights were left alone."""
    left = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        source_weights = {_relative_key(layer, w): w for w in source.get_layer(layer.name).weights}
        for weight in layer.weights:
            match = source_weights.get(_relative_key(layer, weight))
            if match is None:
                left += 1
            else:
                weight.assign(match)
    return left


def randomize(model, seed=1):
    """Non-trivial weights: random kernels/shifts/slopes, positive BN variances."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "active" in weight.name or "fc2" in weight.name:
            continue
        shape = weight.shape
        if "moving_variance" in weight.name or "gamma" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, shape))
        else:
            weight.assign(rng.normal(0.0, 0.3, shape))


def test_binary_weights_false_is_stage_one_and_switches_to_stage_two(reactnet20, build_model):
    stage1 = build_model("reactnet_resnet20", binary_weights=False)
    convs = binary_convs(stage1)
    assert len(convs) == 18
    for layer in convs:
        assert isinstance(layer.kernel_quantizer, SwitchableQuantizer)
        assert isinstance(layer.kernel_quantizer.quantizer, ReActNetWeightQuantizer)
        assert float(layer.kernel_quantizer.active.numpy()) == 0.0
        assert isinstance(layer.input_quantizer, RSign)  # activations binary in stage 1
    randomize(stage1)
    # Stage 1: real-valued kernels are used as they are.
    layer = stage1.get_layer("stage3_block2_conv1")
    latent = layer.kernel.latent_variable.numpy()
    np.testing.assert_array_equal(layer.kernel_quantizer(latent).numpy(), latent)
    # Stage 2 after the switch: mean|W| sign(W) per output channel, computed here by hand.
    for conv in convs:
        conv.kernel_quantizer.active.assign(1.0)
    expected = np.mean(np.abs(latent), axis=(0, 1, 2)) * np.where(latent >= 0, 1.0, -1.0)
    np.testing.assert_allclose(layer.kernel_quantizer(latent).numpy(), expected, rtol=1e-5)
    # ... and the switched model equals the binary_weights=True model with the same weights.
    assert copy_weights(stage1, reactnet20) == 0
    np.testing.assert_allclose(forward(stage1), forward(reactnet20), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------------
# DyBNN starts as ReActNet


def test_dybnn_starts_as_reactnet(reactnet20, dybnn20):
    randomize(reactnet20, seed=2)
    randomize(dybnn20, seed=3)  # random FC1s; FC2s stay zero-initialised
    left = copy_weights(reactnet20, dybnn20)
    assert left == 4 * (18 + 19)  # the FC1/FC2 kernels and biases of every hyper-function
    reference = forward(reactnet20)
    np.testing.assert_allclose(forward(dybnn20), reference, rtol=1e-6, atol=1e-6)
    # The comparison can fail: a non-zero threshold changes the output.
    fc2 = dybnn20.get_layer("stage1_block1_conv1").input_quantizer.threshold.fc2
    fc2.bias.assign(np.full(fc2.bias.shape, 0.5, np.float32))
    assert np.max(np.abs(forward(dybnn20) - reference)) > 1e-3
    fc2.bias.assign(np.zeros(fc2.bias.shape, np.float32))


def test_every_trainable_variable_gets_a_gradient(dybnn20):
    x = np.random.default_rng(9).normal(size=(4, 32, 32, 3)).astype(np.float32)
    labels = np.arange(4) % 10
    with tf.GradientTape() as tape:
        logits = dybnn20(x, training=True)
        loss = tf.reduce_mean(
            tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    grads = tape.gradient(loss, dybnn20.trainable_weights)
    missing = [w.name for w, g in zip(dybnn20.trainable_weights, grads) if g is None]
    assert not missing
    # The zero-initialised FC2 of a hyper-function learns from the first step.
    threshold = dybnn20.get_layer("stage3_block3_conv2").input_quantizer.threshold
    index = [w.ref() for w in dybnn20.trainable_weights].index(threshold.fc2.kernel.ref())
    assert np.any(grads[index].numpy() != 0)


def test_dybnn_knobs_pass_through(build_model):
    model = build_model("dybnn_resnet20", reduction=8, hidden_activation=None)
    sign = model.get_layer("stage3_block3_conv2").input_quantizer
    act = model.get_layer("stage3_block3_act2")
    assert (sign.reduction, sign.hidden_activation) == (8, None)
    assert (act.reduction, act.hidden_activation) == (8, None)
    assert sign.threshold.fc1.kernel.shape == (64, 8)
    assert act.shift.fc2.kernel.shape == (8, 128)


def test_dybnn_keras_round_trip(dybnn20, tmp_path):
    randomize(dybnn20, seed=4)
    for layer in binary_convs(dybnn20):  # make the hyper-functions matter
        fc2 = layer.input_quantizer.threshold.fc2
        fc2.kernel.assign(np.random.default_rng(5).normal(0, 0.1, fc2.kernel.shape))
    path = tmp_path / "dybnn_resnet20.keras"
    dybnn20.save(path)
    loaded = lqa.load_model(path)  # safe_mode=True
    assert isinstance(loaded.get_layer("stage1_block1_conv1").input_quantizer, DySign)
    np.testing.assert_array_equal(forward(loaded, seed=6), forward(dybnn20, seed=6))


# -------------------------------------------------------------------------------------------
# ImageNet (spec 2.2 / 2.3)


def test_reactnet_resnet18_imagenet(build_model):
    model = build_model("reactnet_resnet18")
    y = forward(model, batch=1)
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))
    c = costs(model)
    assert c["bin_convs"] == 16
    assert_close(c["params"], 11.70e6)
    assert_close(c["bin_macs"], 1.676e9)
    assert_close(c["fp_macs"], 137.8e6)
    assert c["params"] == c["trainable"]
    assert "head_bn" not in {layer.name for layer in model.layers}  # GAP -> FC, no BN
    assert isinstance(model.get_layer("stage2_block1_shortcut_conv"), tf.keras.layers.Conv2D)


@pytest.mark.slow
def test_reactnet_a_imagenet(build_model):
    model = build_model("reactnet_a")
    y = forward(model, batch=1)
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))
    c = costs(model)
    # 13 3x3 + 13 1x1 layers: a doubling block's two official 1x1 convs (binary_pw_down1/2)
    # share one RSign (move21), so here they are one C -> 2C layer with one RSign.
    assert c["bin_convs"] == 26
    rsigns = [layer.input_quantizer for layer in binary_convs(model)]
    # official move11 + move21 shifts: 2 x sum of the 13 blocks' input widths
    assert sum(int(q.bias.shape[0]) for q in rsigns) == 2 * sum(REACTNET_A_INPUT_WIDTHS)
    # sum(p.numel() for p in reactnet().parameters()) of the official mobilenet/2_step2 module
    assert c["trainable"] == 29_343_592
    assert_close(c["params"], 29.3e6)
    assert_close(c["bin_macs"], 4.817e9)
    assert_close(c["fp_macs"], 11.9e6)
    # Full (not depthwise) 3x3 binary convs; no activation after the stem BN.
    assert model.get_layer("block13_conv1").kernel.shape == (3, 3, 1024, 1024)
    assert "stem_act" not in {layer.name for layer in model.layers}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dybnn_resnet18", "dybnn_reactnet_a"])
def test_dybnn_imagenet(name, build_model):
    model = build_model(name)
    y = forward(model, batch=1)
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))
    c = costs(model)
    assert c["bin_convs"] == (16 if name == "dybnn_resnet18" else 26)
    assert_close(c["bin_macs"], 1.676e9 if name == "dybnn_resnet18" else 4.817e9)
    assert all(isinstance(layer.input_quantizer, DySign) for layer in binary_convs(model))
    acts = [layer for layer in model.layers if isinstance(layer, lqa.layers.RPReLU)]
    assert acts and all(isinstance(layer, lqa.layers.DyPReLU) for layer in acts)


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_exports_binary_convs(name, build_model):
    """Every binary conv (RSign/DySign inside) becomes an LceBconv2d; outputs agree."""
    pytest.importorskip("larq_compute_engine")
    from larq_adaptive import export

    model = build_model(name)
    randomize(model, seed=7)
    report = export.to_tflite(model)
    assert report.ok and report.histogram["LceBconv2d"] == 18
    x = np.random.default_rng(8).normal(size=(2, 32, 32, 3)).astype(np.float32)
    # Random 1-bit nets are chaotic (spec larq_integration 8.5): compare the class decisions.
    np.testing.assert_array_equal(export.lce_predict(report.flatbuffer, x).argmax(-1),
                                  model(x, training=False).numpy().argmax(-1))
