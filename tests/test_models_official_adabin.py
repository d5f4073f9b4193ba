"""Import of the official AdaBin ResNet-20 checkpoint (``model.th`` / ``state_dict.npz``).

Always run: a synthetic state dict written by the test (keys and shapes from spec 1.6),
a hand-written PyTorch-format pickle for the torch-free reader, refusal of foreign globals.
With ../shared present: bit-identity of model.th and state_dict.npz, the reference probe
(stem within 1e-5, the two binarized activation levels, 64/64 argmax) and, with -m slow,
the lossless CIFAR-10 top-1 (official PyTorch: 87.97 %).
"""

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive.models import get_model, official_adabin, preprocess_input

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "adabin_resnet20_cifar10"
LOSSLESS = SHARED / "data" / "cifar10-test-original" / "cifar10_test.npz"


def needs(path):
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is absent (no ../shared checkout)")


def official_shapes():
    """Key -> shape of the official resnet20_1w1a state dict, written from spec 1.6."""
    shapes = {"conv1.weight": (16, 3, 3, 3)}

    def bn(prefix, c):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (c,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    def maxout(prefix, c):
        shapes[f"{prefix}.neg_scale"] = (c,)
        shapes[f"{prefix}.pos_scale"] = (c,)

    bn("bn1", 16)
    maxout("nonlinear1", 16)
    c_in = 16
    for stage, c in enumerate((16, 32, 64), start=1):
        for block in range(3):
            for i in (1, 2):
                prefix = f"layer{stage}.{block}"
                shapes[f"{prefix}.conv{i}.weight"] = (c, c_in if i == 1 else c, 3, 3)
                shapes[f"{prefix}.conv{i}.binary_a.alpha_a"] = ()
                shapes[f"{prefix}.conv{i}.binary_a.beta_a"] = ()
                bn(f"{prefix}.bn{i}", c)
                maxout(f"{prefix}.nonlinear{i}", c)
            c_in = c
    bn("bn2", 64)
    shapes["linear.weight"] = (10, 64)
    shapes["linear.bias"] = (10,)
    return {f"module.{key}": shape for key, shape in shapes.items()}


def random_state_dict(seed=0):
    rng = np.random.default_rng(seed)
    state = {}
    for key, shape in official_shapes().items():
        value = rng.normal(size=shape)
        if key.endswith(("running_var", "alpha_a")):
            value = np.abs(value) + 0.1
        state[key] = np.asarray(value, dtype=np.float32)
    return state


def test_state_dict_layout_has_195_tensors():
    assert len(official_shapes()) == 195


def test_synthetic_npz_lands_transposed(tmp_path):
    state = random_state_dict()
    path = tmp_path / "state_dict.npz"
    np.savez(path, **state)
    model = get_model("adabin_resnet20", weights=path)
    pt = {key[len("module."):]: value for key, value in state.items()}

    stem = model.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(stem[2, 0, 1, 5], pt["conv1.weight"][5, 1, 2, 0])
    conv = model.get_layer("stage2_block1_conv1")
    kernel = np.asarray(conv.kernel)
    assert kernel.shape == (3, 3, 16, 32)
    np.testing.assert_array_equal(kernel[0, 2, 7, 31], pt["layer2.0.conv1.weight"][31, 7, 0, 2])
    assert conv.input_quantizer.alpha.numpy() == pt["layer2.0.conv1.binary_a.alpha_a"]
    assert conv.input_quantizer.beta.numpy() == pt["layer2.0.conv1.binary_a.beta_a"]
    bn = model.get_layer("stage3_block3_bn2")
    np.testing.assert_array_equal(bn.moving_variance.numpy(), pt["layer3.2.bn2.running_var"])
    np.testing.assert_array_equal(bn.beta.numpy(), pt["layer3.2.bn2.bias"])
    act = model.get_layer("stage1_block2_act1")
    np.testing.assert_array_equal(act.neg_scale.numpy(), pt["layer1.1.nonlinear1.neg_scale"])
    logits = model.get_layer("logits")
    np.testing.assert_array_equal(logits.kernel.numpy()[63, 9], pt["linear.weight"][9, 63])
    np.testing.assert_array_equal(logits.bias.numpy(), pt["linear.bias"])


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_mismatched_state_dict_is_a_clear_error(tmp_path, change):
    state = random_state_dict()
    if change == "missing":
        del state["module.layer1.0.nonlinear2.pos_scale"]
    elif change == "extra":
        state["module.layer4.0.conv1.weight"] = np.zeros((1,), np.float32)
    else:
        state["module.linear.weight"] = np.zeros((10, 32), np.float32)
    path = tmp_path / "bad.npz"
    np.savez(path, **state)
    with pytest.raises(ValueError, match="layer1.0.nonlinear2|layer4.0.conv1|linear.weight"):
        get_model("adabin_resnet20", weights=path)


def test_include_top_false_ignores_head_tensors(tmp_path):
    state = random_state_dict()
    path = tmp_path / "state_dict.npz"
    np.savez(path, **state)
    model = get_model("adabin_resnet20", weights=path, include_top=False)
    assert model.output_shape == (None, 8, 8, 64)
    np.testing.assert_array_equal(
        model.get_layer("stage3_block3_act2").pos_scale.numpy(),
        state["module.layer3.2.nonlinear2.pos_scale"],
    )


def test_other_weights_are_a_clear_error(tmp_path):
    text = tmp_path / "weights.txt"
    text.write_text("not weights")
    with pytest.raises(ValueError, match="weights must be"):
        get_model("adabin_resnet20", weights=text)
    with pytest.raises(ValueError, match="does not exist"):
        get_model("adabin_resnet20", weights=tmp_path / "absent.th")
    path = tmp_path / "state_dict.npz"
    np.savez(path, **random_state_dict())
    with pytest.raises(ValueError, match="method='adabin'"):
        get_model("adabin_resnet20", weights=path, method="float")
    with pytest.raises(ValueError, match="zero padding"):  # +1 padding is another function
        get_model("adabin_resnet20", weights=path, pad_values=1.0)


# A PyTorch zip checkpoint written by hand (protocol-2 opcodes), as torch.save lays it out:
# {"state_dict": OrderedDict(w=<2x3 float32>, wt=<3x2 transposed view>, n=<int64 scalar>)}.
def _unicode(text):
    return b"V" + text.encode("raw_unicode_escape") + b"\n"


def _tensor(key, storage, numel, offset, size, stride):
    tup = lambda items: b"(" + b"".join(items) + b"t"  # noqa: E731
    ints = lambda values: tup([b"I%d\n" % v for v in values])  # noqa: E731
    pid = tup([_unicode("storage"), storage, _unicode(key), _unicode("cpu"), b"I%d\n" % numel])
    return (
        b"ctorch._utils\n_rebuild_tensor_v2\n"
        + tup([pid + b"Q", b"I%d\n" % offset, ints(size), ints(stride), b"I00\n",
               b"ccollections\nOrderedDict\n)R"])
        + b"R"
    )


def write_fake_torch_checkpoint(path, pickled):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        archive.writestr("archive/data/0", np.arange(6, dtype="<f4").tobytes())
        archive.writestr("archive/data/1", np.asarray([150930], dtype="<i8").tobytes())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


def test_torch_free_reader_rebuilds_tensors(tmp_path):
    floats, longs = b"ctorch\nFloatStorage\n", b"ctorch\nLongStorage\n"
    state = (
        b"ccollections\nOrderedDict\n)R("
        + _unicode("w") + _tensor("0", floats, 6, 0, (2, 3), (3, 1))
        + _unicode("wt") + _tensor("0", floats, 6, 0, (3, 2), (1, 3))
        + _unicode("n") + _tensor("1", longs, 1, 0, (), ()) + b"u"
    )
    pickled = b"\x80\x02}(" + _unicode("state_dict") + state + b"u."
    path = tmp_path / "fake.th"
    write_fake_torch_checkpoint(path, pickled)
    state_dict = official_adabin.read_state_dict(path, use_torch=False)
    expected = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(state_dict["w"], expected)
    np.testing.assert_array_equal(state_dict["wt"], expected.T)
    count = state_dict["n"]
    assert count.dtype == np.int64 and count.shape == () and count == 150930


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_foreign_globals_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    write_fake_torch_checkpoint(path, pickle.dumps({"state_dict": _Exploit(marker)}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle global"):
        official_adabin.read_state_dict(path, use_torch=False)
    assert not marker.exists()


# ---- against the real checkpoint and the reference outputs --------------------------------


@needs(REFERENCE / "model.th")
def test_th_reader_matches_npz_bit_for_bit():
    from_th = official_adabin.read_state_dict(REFERENCE / "model.th", use_torch=False)
    from_npz = official_adabin.read_state_dict(REFERENCE / "state_dict.npz")
    assert len(from_th) == 195 and set(from_th) == set(from_npz)
    for key, value in from_th.items():
        assert value.shape == from_npz[key].shape, key
        if key.endswith("num_batches_tracked"):
            assert value.dtype == np.int64 and value == 150930 == from_npz[key], key
        else:
            assert value.dtype == np.float32, key
            assert value.tobytes() == from_npz[key].tobytes(), key


@pytest.fixture(scope="module")
def official_model():
    tf.keras.backend.clear_session()
    return get_model("adabin_resnet20", weights=REFERENCE / "model.th")


@pytest.fixture(scope="module")
def probe():
    return np.load(REFERENCE / "probe.npz")


@needs(REFERENCE / "probe.npz")
def test_preprocessing_matches_probe_inputs(probe):
    np.testing.assert_allclose(
        preprocess_input(probe["images_uint8"], "adabin_resnet20"), probe["inputs_nhwc"],
        rtol=0, atol=1e-6,
    )


@needs(REFERENCE / "probe.npz")
def test_probe_stem_binarized_activation_and_argmax(official_model, probe):
    inputs = probe["inputs_nhwc"]
    stem = tf.keras.Model(official_model.input, official_model.get_layer("stem_act").output)
    stem_out = stem(inputs).numpy()
    np.testing.assert_allclose(stem_out, probe["stem_out"], rtol=0, atol=1e-5)

    quantizer = official_model.get_layer("stage1_block1_conv1").input_quantizer
    binact = quantizer(stem_out[:8]).numpy()
    assert binact.shape == probe["first8_layer1_0_conv1_binact_out"].shape
    np.testing.assert_array_equal(np.unique(binact), np.float32([-0.43116722, 1.3375711]))
    np.testing.assert_array_equal(binact, probe["first8_layer1_0_conv1_binact_out"])

    logits = official_model(inputs).numpy()
    np.testing.assert_array_equal(logits.argmax(axis=1), probe["logits"].argmax(axis=1))


@needs(REFERENCE / "probe.npz")
def test_decomposed_form_reproduces_probe_predictions(probe):
    tf.keras.backend.clear_session()
    model = get_model("adabin_resnet20", weights=REFERENCE / "model.th", decomposed=True)
    logits = model(probe["inputs_nhwc"]).numpy()
    np.testing.assert_array_equal(logits.argmax(axis=1), probe["logits"].argmax(axis=1))


@pytest.mark.slow  # 10,000 images (~40 s of CPU); the probe tests above check the logits
@needs(LOSSLESS)
@needs(REFERENCE / "model.th")
def test_lossless_cifar10_top1(official_model):
    with np.load(LOSSLESS) as data:
        images, labels = data["images"], data["labels"]
    correct = 0
    for start in range(0, len(images), 500):
        x = preprocess_input(images[start:start + 500], "adabin_resnet20")
        correct += int((official_model(x).numpy().argmax(1) == labels[start:start + 500]).sum())
    assert abs(100.0 * correct / len(images) - 87.97) <= 0.15, correct
