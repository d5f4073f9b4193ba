"""DWR builders: the released architectures against spec/algorithms.md 4.4, reshaped variants
via ``widths=``/``blocks=``, float twins and two-step switches.

Counting convention (it reproduces every 4.4 row; the spec computed them from the official
PyTorch modules): params = trainable parameters (conv/FC weights and biases, BN gamma/beta,
shifts, PReLU slopes; BN running statistics excluded) = ``lqa.summary(model).weight_count()``
(larq counts a BN's moving mean/variance instead of gamma/beta: the same number). "bin MACs" =
MACs of convs with binarized inputs (``op_count("mac", 1)``), "FP MACs" = the other conv/FC
MACs (``op_count("mac", 32)``), "acts" = sum of the input elements of the binary convs.
"""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.quantizers import ReActNetWeightQuantizer, RSign, SwitchableQuantizer
from larq_adaptive.introspect import binary_conv_layers as binary_convs

# spec 4.4: params, bin MACs, FP MACs, #bin conv, bin-conv input acts
SPEC_4_4 = {
    "dwr_resnet20": (0.406e6, 42.9e6, 0.44e6, 7, 106e3),
    "dwr_reactnet_resnet20": (0.528e6, 62.7e6, 0.44e6, 7, 142e3),
    "dwr_resnet18_cifar": (5.55e6, 513e6, 22.7e6, 8, 469e3),
    "dwr_vgg_small": (6.93e6, 599e6, 3.6e6, 6, 280e3),
    "dwr_reactnet_resnet18": (15.15e6, 2121e6, 169e6, 8, 1591e3),
}
CIFAR_NAMES = ["dwr_resnet20", "dwr_reactnet_resnet20", "dwr_resnet18_cifar", "dwr_vgg_small"]


def costs(model):
    profile = lqa.summary(model, print_fn=lambda *args, **kwargs: None)
    convs = binary_convs(model)
    return dict(
        params=profile.weight_count(),
        trainable=sum(int(np.prod(w.shape)) for w in model.trainable_weights),
        bin_macs=profile.op_count("mac", 1), fp_macs=profile.op_count("mac", 32),
        bin_convs=len(convs),
        acts=sum(int(np.prod(layer.input_shape[1:])) for layer in convs),
    )


def assert_close(value, spec, rel=0.01):
    assert abs(value - spec) <= rel * spec, f"{value} is not within {rel:.0%} of {spec}"


def forward(model, batch=2, seed=0):
    x = np.random.default_rng(seed).normal(size=(batch, *model.input_shape[1:]))
    return model(x.astype("float32"), training=False).numpy()


def check_spec_row(model, name):
    params, bin_macs, fp_macs, bin_convs, acts = SPEC_4_4[name]
    c = costs(model)
    assert c["params"] == c["trainable"]
    assert_close(c["params"], params)
    assert_close(c["bin_macs"], bin_macs)
    assert_close(c["fp_macs"], fp_macs)
    assert c["bin_convs"] == bin_convs
    assert_close(c["acts"], acts)
    return c


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_spec_4_4_and_forward(name, build_model):
    model = build_model(name)
    check_spec_row(model, name)
    y = forward(model)
    assert y.shape == (2, 10) and np.all(np.isfinite(y))


def test_dwr_resnet20_exact_sizes_and_layout(build_model):
    model = build_model("dwr_resnet20")
    # By hand: stem 3->16; stage1 16->16 x2 @32x32; stage2 16->78, 78->78 @16x16;
    # stage3 78->134, 134->134 @8x8; alg2 134->64 @8x8; head BN(64) + Dense(64->10).
    convs = [(16, 16, 1024), (16, 16, 1024), (16, 78, 256), (78, 78, 256), (78, 134, 64),
             (134, 134, 64), (134, 64, 64)]
    bn_channels = [16, 16, 16, 78, 78, 134, 134, 64, 64]
    c = costs(model)
    assert c["bin_macs"] == sum(9 * i * o * p for i, o, p in convs)
    assert c["params"] == (27 * 16 + sum(9 * i * o for i, o, _ in convs)
                           + 2 * sum(bn_channels) + 64 * 10 + 10)
    layer = model.get_layer("stage2_block1_conv1")
    assert layer.input_quantizer.__class__ is lqa.quantizers.ApproxSignQuantizer
    assert layer.kernel_quantizer.__class__ is lq.quantizers.SteSign
    assert layer.strides == (2, 2)
    assert model.get_layer("alg2_conv").filters == 64
    assert model.get_layer("stage3_block1_shortcut").filters == 134
    # option A pads (134 - 78) // 2 = 28 zero channels on each side
    sub = tf.keras.Model(model.input, [model.get_layer("stage2_block1_act2").output,
                                       model.get_layer("stage3_block1_shortcut").output])
    before, shortcut = (t.numpy() for t in sub(np.ones((1, 32, 32, 3), np.float32)))
    np.testing.assert_array_equal(shortcut[..., :28], 0)
    np.testing.assert_array_equal(shortcut[..., 28 + 78:], 0)
    np.testing.assert_array_equal(shortcut[..., 28:28 + 78], before[:, ::2, ::2, :])
    acts = [layer for layer in model.layers if layer.name.endswith(("_act", "_act1", "_act2"))]
    assert len(acts) == 8 and all(type(a).__name__ == "HardTanh" for a in acts)


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_float_twin(name, build_model):
    twin = build_model(f"float_{name}")
    assert twin.name == f"float_{name}"
    assert not binary_convs(twin)
    c = costs(twin)
    binary_params, binary_macs, fp_macs, _, _ = SPEC_4_4[name]
    assert c["bin_macs"] == 0
    assert_close(c["fp_macs"], binary_macs + fp_macs)  # every binary conv became FP
    assert_close(c["params"], binary_params)
    y = forward(twin)
    assert y.shape == (2, 10) and np.all(np.isfinite(y))


def test_reshaped_variant_via_widths_and_blocks(build_model):
    # Odd channel differences (16 -> 25 -> 91) exercise the generalised option A.
    model = build_model("dwr_resnet20", widths=[25, 91, 150], blocks=[2, 1, 1])
    convs = [  # (C_in, C_out, input size, stride), by hand
        (16, 25, 32, 1), (25, 25, 32, 1), (25, 25, 32, 1), (25, 25, 32, 1),  # stage 1
        (25, 91, 32, 2), (91, 91, 16, 1), (91, 150, 16, 2), (150, 150, 8, 1),  # stages 2-3
        (150, 64, 8, 1),  # alg2
    ]
    c = costs(model)
    assert c["bin_convs"] == 9
    assert c["bin_macs"] == sum(9 * i * o * (h // s) ** 2 for i, o, h, s in convs)
    assert c["acts"] == sum(i * h * h for i, _, h, _ in convs)
    assert {f"stage1_block{b}_conv{u}" for b in (1, 2) for u in (1, 2)} <= {
        layer.name for layer in model.layers}
    assert forward(model).shape == (2, 10)


@pytest.mark.parametrize("name,kwargs", [
    ("dwr_resnet20", dict(widths=[16, 78])),
    ("dwr_resnet18_cifar", dict(blocks=[1, 1, 1])),
    ("dwr_vgg_small", dict(widths=[1, 2, 3, 4])),
    ("dwr_reactnet_resnet18", dict(widths=[200, 188, 408, 910])),  # Convalg: <= 2 x 64
])
def test_bad_widths_or_blocks_raise(name, kwargs, build_model):
    with pytest.raises(ValueError):
        build_model(name, **kwargs)


@pytest.mark.parametrize("name", ["dwr_reactnet_resnet20", "dwr_resnet20"])
def test_binary_weights_false(name, build_model):
    model = build_model(name, binary_weights=False)
    convs = binary_convs(model)
    assert len(convs) == 7
    for layer in convs:  # every DWR CIFAR binary conv: IRConv2d's unscaled sign weights
        assert isinstance(layer.kernel_quantizer, SwitchableQuantizer)
        assert type(layer.kernel_quantizer.quantizer) is lq.quantizers.SteSign
        assert float(layer.kernel_quantizer.active.numpy()) == 0.0
    if "reactnet" in name:
        assert all(isinstance(layer.input_quantizer, RSign) for layer in convs[:-1])
        alg2 = model.get_layer("alg2_conv")
        assert type(alg2.input_quantizer) is lqa.quantizers.ApproxSignQuantizer
        assert isinstance(model.get_layer("alg2_act"), lqa.layers.HardTanh)


def test_vgg_small_layout(build_model):
    model = build_model("dwr_vgg_small")
    pools = [layer.name for layer in model.layers if isinstance(layer, tf.keras.layers.MaxPool2D)]
    assert pools == ["stage1_block1_pool", "stage3_block1_pool", "stage5_block1_pool"]
    assert model.get_layer("alg2_conv").output_shape == (None, 4, 4, 512)
    assert model.get_layer("logits").kernel.shape == (4 * 4 * 512, 10)


def test_dwr_search_is_re_exported():
    from larq_adaptive.models import dwr, dwr_search

    assert dwr.reshape is dwr_search.reshape
    assert dwr.search_widths is dwr_search.search_widths


@pytest.mark.slow
def test_dwr_reactnet_resnet18_imagenet(build_model):
    model = build_model("dwr_reactnet_resnet18")
    check_spec_row(model, "dwr_reactnet_resnet18")
    y = forward(model, batch=1)
    assert y.shape == (1, 1000) and np.all(np.isfinite(y))
    assert model.get_layer("alg_slice").output_shape == (None, 56, 56, 116)
    assert isinstance(model.get_layer("stage2_block1_conv").input_quantizer, RSign)


def test_keras_round_trip(tmp_path, build_model):
    model = build_model("dwr_resnet20")
    path = tmp_path / "dwr_resnet20.keras"
    model.save(path)
    loaded = lqa.load_model(path)  # safe_mode=True: no Lambda layers anywhere
    np.testing.assert_array_equal(forward(loaded), forward(model))


def test_hardtanh_and_channel_slice():
    from larq_adaptive.layers import ChannelSlice, HardTanh

    x = np.array([[-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0]], np.float32)
    np.testing.assert_array_equal(HardTanh()(x).numpy(), [[-1, -1, -0.5, 0, 0.5, 1, 1]])
    layer = ChannelSlice.from_config(ChannelSlice(0, 116).get_config())
    x = np.arange(2 * 3 * 3 * 128, dtype=np.float32).reshape(2, 3, 3, 128)
    np.testing.assert_array_equal(layer(x).numpy(), x[..., :116])
    inputs = tf.constant(x)
    with tf.GradientTape() as tape:  # the gradient: dy in the kept channels, zeros elsewhere
        tape.watch(inputs)
        y = ChannelSlice(4, 120)(inputs)
    dy = np.ones(y.shape, np.float32)
    dx = tape.gradient(y, inputs, tf.constant(dy)).numpy()
    np.testing.assert_array_equal(dx, np.pad(dy, [(0, 0)] * 3 + [(4, 8)]))
    x = np.arange(2 * 10, dtype=np.float32).reshape(2, 1, 1, 10)
    for start, stop in [(0, -1), (2, -4), (-3, 10), (3, 12), (7, 3)]:  # as Python slices them
        layer = ChannelSlice(start, stop)
        np.testing.assert_array_equal(layer(x).numpy(), x[..., start:stop])
        assert layer.compute_output_shape(x.shape) == x[..., start:stop].shape


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hardtanh_gradient_is_pytorchs(dtype):
    """By hand, as PyTorch's ``hardtanh_backward``: dy where -1 < x < 1, 0 elsewhere,
    0 at exactly +-1 too (where TensorFlow's ``clip_by_value`` would pass dy)."""
    from larq_adaptive.layers import HardTanh

    x = tf.constant([-2.0, -1.0, -0.99609375, -0.5, 0.0, 0.5, 0.99609375, 1.0, 1.0078125, 3.0],
                    dtype)  # every value exact in bfloat16
    dy = tf.constant([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], dtype)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = HardTanh(dtype=dtype)(x)
    dx = tape.gradient(y, x, output_gradients=dy)
    assert y.dtype == dx.dtype == tf.as_dtype(dtype)
    np.testing.assert_array_equal(tf.cast(y, tf.float32).numpy(),
                                  [-1, -1, -0.99609375, -0.5, 0, 0.5, 0.99609375, 1, 1, 1])
    np.testing.assert_array_equal(tf.cast(dx, tf.float32).numpy(), [0, 0, 3, 4, 5, 6, 7, 0, 0, 0])


def test_convalg_concatenates_scaled_channels_first():
    from larq_adaptive.models.dwr import convalg

    tf.keras.backend.clear_session()
    inputs = tf.keras.Input((4, 4, 8))
    model = tf.keras.Model(inputs, convalg(inputs, 12))
    scale = np.arange(1, 9, dtype=np.float32)
    model.get_layer("alg_conv").set_weights([scale.reshape(1, 1, 8, 1)])
    x = np.random.default_rng(0).normal(size=(2, 4, 4, 8)).astype(np.float32)
    # BN in inference with its initial statistics: y / sqrt(1 + 1e-5)
    expected = np.concatenate([x * scale / np.sqrt(1 + 1e-5), x], axis=-1)[..., :12]
    expected = np.where(expected >= 0, expected, 0.25 * expected)  # PReLU, slopes 0.25
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, rtol=1e-5, atol=1e-6)


def _export_check(model, expected_bconvs):
    """Every binary conv becomes an LceBconv2d and the LCE interpreter agrees with Keras."""
    pytest.importorskip("larq_compute_engine")
    from larq_adaptive import export

    rng = np.random.default_rng(0)
    for weight in model.weights:  # non-trivial BN statistics and shifts
        if "moving_variance" in weight.name:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
        elif "moving_mean" in weight.name or "beta" in weight.name:
            weight.assign(rng.normal(0.0, 0.2, weight.shape))
    report = export.to_tflite(model)
    assert report.ok and report.histogram["LceBconv2d"] == expected_bconvs
    x = rng.normal(size=(2, *model.input_shape[1:])).astype(np.float32)
    np.testing.assert_allclose(export.lce_predict(report.flatbuffer, x),
                               model(x, training=False).numpy(), atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_exports_binary_convs(name, build_model):
    _export_check(build_model(name), SPEC_4_4[name][3])


# ---------------------------------------------------------------------------------------
# Binarizers and init of the official DWR CIFAR-10 code (CIFAR-10/*/modules/ir_1w1a.py
# IRConv2d, resnet.py _weights_init, vgg.py _initialize_weights)


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_weight_binarizer_is_unscaled_sign_with_clamp_ste(name, build_model):
    """IRConv2d: ``bw = sign(W).detach() - clamp(W,-1,1).detach() + clamp(W,-1,1)``: forward
    sign(W) (no mean|W| scale), backward the upstream gradient where ``|W| <= 1``."""
    model = build_model(name)
    rng = np.random.default_rng(0)
    convs = binary_convs(model)
    assert convs
    for layer in convs:
        kernel = layer.kernel
        latent = rng.normal(0.0, 1.0, kernel.shape).astype(np.float32)  # ~32 % beyond +-1
        kernel.assign(latent)
        upstream = rng.normal(size=kernel.shape).astype(np.float32)
        with tf.GradientTape() as tape:
            binary = layer.kernel_quantizer(tf.identity(kernel))
            loss = tf.reduce_sum(binary * upstream)
        np.testing.assert_array_equal(binary.numpy(), np.where(latent >= 0, 1.0, -1.0))
        expected = upstream * (np.abs(latent) <= 1.0)
        np.testing.assert_array_equal(tape.gradient(loss, kernel).numpy(), expected)


def _initializer_config(initializer):
    config = initializer.get_config()
    return type(initializer).__name__, {k: config[k] for k in sorted(config) if k != "seed"}


def _kaiming(mode):  # torch kaiming_normal_: N(0, 2 / fan), not truncated
    return "VarianceScaling", {"distribution": "untruncated_normal", "mode": mode, "scale": 2.0}


@pytest.mark.parametrize("name", CIFAR_NAMES)
def test_cifar_init_is_the_official_one(name, build_model):
    """ResNets: ``kaiming_normal_`` (fan in) for EVERY conv and Linear weight (stem, shortcut
    and head included), Linear bias ``U(+-1/sqrt(fan_in))``; VGG-small: every conv
    ``N(0, 2 / (k k C_out))``, Linear ``N(0, 0.01)``, bias 0. Checked on the initializers and
    on the sampled values (std within sampling error; no truncation)."""
    model = build_model(name)
    vgg = "vgg" in name
    convs = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Conv2D)]
    assert len(convs) >= len(binary_convs(model)) + 1  # the stem too
    for layer in convs:
        assert _initializer_config(layer.kernel_initializer) == _kaiming(
            "fan_out" if vgg else "fan_in"), layer.name
        k, _, c_in, c_out = layer.kernel.shape
        fan = k * k * (c_out if vgg else c_in)
        values = layer.kernel.numpy()
        std, expected = values.std(), np.sqrt(2.0 / fan)
        assert abs(std / expected - 1) < 4 / np.sqrt(2 * values.size) + 0.01, layer.name
        if values.size > 50_000:  # a truncated normal never exceeds ~2.3 sigma
            assert np.abs(values).max() > 3.5 * expected, layer.name
    head = model.get_layer("logits")
    fan_in = head.kernel.shape[0]
    if vgg:
        assert _initializer_config(head.kernel_initializer) == (
            "RandomNormal", {"mean": 0.0, "stddev": 0.01})
        np.testing.assert_array_equal(head.bias.numpy(), 0.0)
    else:
        assert _initializer_config(head.kernel_initializer) == _kaiming("fan_in")
        bound = 1 / np.sqrt(fan_in)
        assert _initializer_config(head.bias_initializer) == (
            "RandomUniform", {"maxval": bound, "minval": -bound})
        bias = head.bias.numpy()
        assert np.all(np.abs(bias) <= bound) and np.any(bias != 0)


def test_dwr_reactnet_resnet20_units_follow_the_official_code(build_model):
    """ResNet-20+ReActNet: stem FP conv + BN + Hardtanh; blocks RSign (LearnableBias +
    ApproxSign) -> IRConv2d -> BN (+ shortcut) -> RPReLU (PReLU slopes 0.25); alg2 = IRConv2d
    with plain ApproxSign + BN + Hardtanh."""
    model = build_model("dwr_reactnet_resnet20")
    assert isinstance(model.get_layer("stem_act"), lqa.layers.HardTanh)
    assert isinstance(model.get_layer("alg2_act"), lqa.layers.HardTanh)
    assert type(model.get_layer("alg2_conv").input_quantizer) is lqa.quantizers.ApproxSignQuantizer
    blocks = [layer for layer in binary_convs(model) if layer.name.startswith("stage")]
    assert len(blocks) == 6 and all(isinstance(layer.input_quantizer, RSign) for layer in blocks)
    acts = [layer for layer in model.layers if layer.name.startswith("stage")
            and layer.name.endswith(("_act1", "_act2"))]
    assert len(acts) == 6 and all(isinstance(layer, lqa.layers.RPReLU) for layer in acts)
    for layer in acts:
        np.testing.assert_array_equal(layer.prelu.alpha.numpy(), 0.25)


def test_dwr_reactnet_resnet20_other_methods_binarize_everything(build_model):
    model = build_model("dwr_reactnet_resnet20", method="dybnn")
    assert all(isinstance(layer.kernel_quantizer, ReActNetWeightQuantizer)
               for layer in binary_convs(model))
    assert isinstance(model.get_layer("alg2_act"), lqa.layers.DyPReLU)
