"""AdaBin model family: registration, architecture, parameter and MAC counts.

Counts are compared with independent figures: spec algorithms.md 1.5 / 4.4 / 5 and MACs
derived by hand below (output pixels x kernel size x C_in x C_out per conv).
"""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.layers import AdaBinConv2D, Maxout, OptionAShortcut
from larq_adaptive.models import available_models, get_model, model_entry

CIFAR_NAMES = ["adabin_resnet20", "adabin_resnet18_cifar", "adabin_vgg_small"]
IMAGENET_NAMES = ["adabin_resnet18", "adabin_resnet34"]
ALL_NAMES = CIFAR_NAMES + IMAGENET_NAMES


@pytest.fixture(scope="module")
def resnet20():
    """One adabin_resnet20 shared by the read-only tests (builds cost seconds)."""
    return get_model("adabin_resnet20")


def profile(model):
    return lqa.summary(model, print_fn=lambda *args, **kwargs: None)


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def layers_of(model, cls):
    return [layer for layer in model.layers if isinstance(layer, cls)]


def forward(name, batch):
    model = get_model(name)
    entry = model_entry(name)
    x = np.random.default_rng(0).normal(size=(batch, *entry.input_shape)).astype("float32")
    y = model(x, training=False).numpy()
    assert y.shape == (batch, entry.num_classes)
    assert np.all(np.isfinite(y))
    return model


def test_registry_entries():
    for name in ALL_NAMES:
        for registered in (name, f"float_{name}"):
            assert registered in available_models()
            entry = model_entry(registered)
            assert entry.family == "adabin"
            assert entry.method == ("adabin" if registered == name else "float")
    assert model_entry("adabin_resnet20").recipe == "adabin_cifar"
    assert model_entry("adabin_resnet34").recipe == "adabin_imagenet"
    assert model_entry("adabin_resnet18").input_shape == (224, 224, 3)
    assert model_entry("adabin_resnet18").num_classes == 1000


@pytest.mark.parametrize("name", CIFAR_NAMES + [f"float_{n}" for n in CIFAR_NAMES])
def test_cifar_models_forward(name):
    forward(name, batch=2)


def test_imagenet_resnet18_forward_and_counts():
    model = forward("adabin_resnet18", batch=1)
    counts = profile(model)
    # spec 4.4 / 5 (Bi-Real/ReAct ResNet-18 shape): 11.70 M params, 1676 M binary MACs, 138 M FP.
    assert trainable_count(model) == pytest.approx(11.70e6, rel=0.01)
    assert counts.op_count("mac", 1) == pytest.approx(1676e6, rel=0.01)
    assert counts.op_count("mac", 32) == pytest.approx(138e6, rel=0.01)
    assert len(layers_of(model, AdaBinConv2D)) == 16
    assert model.get_layer("stem_pool").output_shape == (None, 56, 56, 64)
    assert model.get_layer("stage2_block1_shortcut_pool").output_shape == (None, 28, 28, 64)
    assert model.get_layer("stage2_block1_shortcut_conv").kernel.shape == (1, 1, 64, 128)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["adabin_resnet34"] + [f"float_{n}" for n in IMAGENET_NAMES])
def test_imagenet_models_forward(name):
    forward(name, batch=1)


@pytest.mark.slow
def test_imagenet_resnet34_counts():
    model = get_model("adabin_resnet34")
    assert trainable_count(model) == pytest.approx(21.8e6, rel=0.01)  # spec 5
    assert len(layers_of(model, AdaBinConv2D)) == 32


def resnet20_binary_macs():
    """18 binary 3x3 convs: (output pixels, C_in, C_out) per conv, written out by stage."""
    convs = [(32 * 32, 16, 16)] * 6
    convs += [(16 * 16, 16, 32)] + [(16 * 16, 32, 32)] * 5
    convs += [(8 * 8, 32, 64)] + [(8 * 8, 64, 64)] * 5
    return sum(pixels * 9 * c_in * c_out for pixels, c_in, c_out in convs)


def test_adabin_resnet20_counts(resnet20):
    model = resnet20
    counts = profile(model)
    assert trainable_count(model) == 271_262  # spec 1.5 (verified on the official module)
    assert counts.weight_count() == pytest.approx(271_262, rel=0.01)
    assert resnet20_binary_macs() == pytest.approx(40.11e6, rel=1e-3)  # spec 1.5
    assert counts.op_count("mac", 1) == resnet20_binary_macs()
    fp_macs = 32 * 32 * 27 * 16 + 64 * 10  # stem conv + classifier
    assert fp_macs == pytest.approx(0.44e6, rel=0.01)
    assert counts.op_count("mac", 32) == fp_macs


def test_adabin_resnet18_cifar_counts():
    model = get_model("adabin_resnet18_cifar")
    counts = profile(model)
    # spec 4.4 row "ResNet-18 CIFAR original (AdaBin shape)": 11.18 M params, 547 M / 8.1 M MACs
    assert trainable_count(model) == pytest.approx(11.18e6, rel=0.01)
    assert counts.weight_count() == pytest.approx(11.18e6, rel=0.01)
    assert counts.op_count("mac", 1) == pytest.approx(547e6, rel=0.01)
    assert counts.op_count("mac", 32) == pytest.approx(8.1e6, rel=0.01)
    assert len(layers_of(model, AdaBinConv2D)) == 16
    assert model.get_layer("stage2_block1_shortcut_conv").kernel.shape == (1, 1, 64, 128)


def test_adabin_vgg_small_layout():
    model = get_model("adabin_vgg_small")
    counts = profile(model)
    binary = [(32 * 32, 128, 128), (16 * 16, 128, 256), (16 * 16, 256, 256),
              (8 * 8, 256, 512), (8 * 8, 512, 512)]
    assert counts.op_count("mac", 1) == sum(p * 9 * ci * co for p, ci, co in binary)
    assert counts.op_count("mac", 32) == 32 * 32 * 27 * 128 + 8192 * 10
    assert len(layers_of(model, AdaBinConv2D)) == 5
    assert model.get_layer("logits").kernel.shape == (8192, 10)
    assert model.get_layer("stage1_block1_pool").output_shape == (None, 16, 16, 128)
    features = get_model("adabin_vgg_small", include_top=False)
    assert features.output_shape == (None, 4, 4, 512)


def test_adabin_resnet20_architecture(resnet20):
    model = resnet20
    convs = layers_of(model, AdaBinConv2D)
    assert len(convs) == 18
    assert all(conv.kernel_size == (3, 3) and conv.pad == (1, 1) for conv in convs)
    assert not any(conv.use_bias for conv in convs)
    assert len(layers_of(model, Maxout)) == 1 + 18
    shortcuts = layers_of(model, OptionAShortcut)
    assert [s.name for s in shortcuts] == ["stage2_block1_shortcut", "stage3_block1_shortcut"]
    assert all(bn.epsilon == 1e-5 for bn in layers_of(model, tf.keras.layers.BatchNormalization))
    assert model.get_layer("stem_conv").kernel.shape == (3, 3, 3, 16)
    assert model.get_layer("stage2_block1_conv1").output_shape == (None, 16, 16, 32)
    assert model.get_layer("head_bn").output_shape == (None, 64)
    assert model.get_layer("logits").use_bias
    features = get_model("adabin_resnet20", include_top=False)
    assert features.output_shape == (None, 8, 8, 64)
    assert features.layers[-1].name == "stage3_block3_act2"


def test_adabin_resnet20_he_normal_init(resnet20):
    model = resnet20
    kernel = np.asarray(model.get_layer("stage3_block2_conv1").kernel)  # 3*3*64*64 samples
    assert kernel.std() == pytest.approx(np.sqrt(2.0 / (9 * 64)), rel=0.03)
    other = np.asarray(model.get_layer("stage3_block2_conv2").kernel)
    assert not np.allclose(kernel, other)  # every layer draws its own values
    logits = model.get_layer("logits").kernel.numpy()
    assert logits.std() == pytest.approx(np.sqrt(2.0 / 64), rel=0.2)


def test_float_twin_is_the_same_graph_in_full_precision(resnet20):
    binary = resnet20
    real = get_model("float_adabin_resnet20")
    assert real.name == "float_adabin_resnet20"
    assert not layers_of(real, AdaBinConv2D)
    assert [layer.name for layer in binary.layers] == [layer.name for layer in real.layers]
    conv = real.get_layer("stage2_block1_conv1")
    assert conv.input_quantizer is None and conv.kernel_quantizer is None
    assert conv.pad == (1, 1)
    # 18 (alpha, beta) pairs fewer
    assert trainable_count(binary) - trainable_count(real) == 36
    assert profile(real).op_count("mac", 1) == 0


def test_float_twin_pads_like_pytorch():
    """A stride-2 3x3 conv of an all-ones input with an all-ones kernel counts the pixels of
    each PyTorch window (pad 1 on every side): corners see 4 pixels, other borders 6."""
    model = get_model("float_adabin_resnet20")
    conv = model.get_layer("stage2_block1_conv1")
    ones = tf.ones((1, 32, 32, 16))
    conv.kernel.assign(tf.ones_like(conv.kernel) / 16.0)
    out = conv(ones).numpy()[0, :, :, 0]
    assert out.shape == (16, 16)
    assert out[0, 0] == 4 and out[0, 5] == 6 and out[5, 0] == 6 and out[15, 15] == 9


def test_decomposed_form_computes_the_same_convolution():
    direct = get_model("adabin_resnet20")
    decomposed = get_model("adabin_resnet20", decomposed=True)
    assert all(conv.decomposed for conv in layers_of(decomposed, AdaBinConv2D))
    rng = np.random.default_rng(1)
    weights = [w + 0.05 * rng.normal(size=w.shape).astype(w.dtype) for w in direct.get_weights()]
    direct.set_weights(weights)
    decomposed.set_weights(weights)
    x = rng.normal(size=(2, 32, 32, 3)).astype("float32")
    outputs = [
        tf.keras.Model(m.input, m.get_layer("stage2_block1_conv1").output)(x).numpy()
        for m in (direct, decomposed)
    ]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-4)


def test_method_is_checked():
    with pytest.raises(ValueError, match="method"):
        get_model("adabin_resnet20", method="xnor")
    with pytest.raises(ValueError, match="twin"):
        get_model("float_adabin_resnet20", method="adabin")
    with pytest.raises(ValueError, match="decomposed"):
        get_model("adabin_resnet20", method="float", decomposed=True)


def test_keras_weights_round_trip(tmp_path, resnet20):
    model = resnet20
    path = tmp_path / "weights.h5"
    model.save_weights(path)
    tf.keras.backend.clear_session()
    loaded = get_model("adabin_resnet20", weights=path)
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
