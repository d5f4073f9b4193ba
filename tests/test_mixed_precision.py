"""bfloat16 / float16 mixed precision: every method trains, the 16-bit math stays on the fast
path (16-bit convolutions, no full-size casts), the numerically delicate parts stay float32,
and the train.py flag, export and loading work after bfloat16 training."""

import collections
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.models import get_model
from larq_adaptive.training import runtime

from conftest import REPO, child_env, npz_shard

# One binary model per method (DWR: its IR-Net-style ReActNet ResNet-20).
METHOD_MODELS = ["adabin_resnet20", "reactnet_resnet20", "dybnn_resnet20", "dwr_reactnet_resnet20"]


def _bf16(values):
    """float64 -> the nearest bfloat16 -> float64 (the oracle's inputs)."""
    return tf.cast(tf.cast(values, tf.bfloat16), tf.float64).numpy()


# dybnn_resnet20's stage-1 hyper-functions have one hidden unit (16 channels // 16), a ReLU
# that is dead at initialisation for about half of them (the pooled inputs are all positive),
# in float32 as in bfloat16; with a linear hidden layer every variable gets a gradient.
BUILDER_KWARGS = {"dybnn_resnet20": {"hidden_activation": None}}


# The layers of every method train under bfloat16 in the fast suite (test_training_core.py:
# a network of every layer); DWR's IR-Net
# units (SteSign kernels, ApproxSign inputs, HardTanh) only in its model.
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.slow)
                                  if name != "dwr_reactnet_resnet20" else name
                                  for name in METHOD_MODELS])
def test_registered_models_train_every_variable_under_bfloat16(name):
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = get_model(name, **BUILDER_KWARGS.get(name, {}))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=24)
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in model.trainable_weights]
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert all(w.dtype == tf.float32 for w in model.trainable_weights)
    unchanged = [w.name for w, b in zip(model.trainable_weights, before)
                 if np.array_equal(b, w.numpy())]
    assert not unchanged, f"variables not trained under bfloat16: {unchanged}"


def _train_step_ops(model, batch=4):
    """Every op of ``model``'s traced train step (nested functions included)."""
    model.compile(tf.keras.optimizers.SGD(0.01),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    spec = (tf.TensorSpec((batch, *model.input_shape[1:])), tf.TensorSpec((batch,), tf.int64))
    graph = tf.function(model.train_step).get_concrete_function(spec).graph

    def ops(g):
        found = list(g.get_operations())
        for function in getattr(g, "_functions", {}).values():
            if hasattr(function, "graph"):
                found += ops(function.graph)
        return found

    return ops(graph)


@pytest.mark.parametrize("name", METHOD_MODELS)
def test_binary_models_stay_on_the_bfloat16_path(name):
    """Every convolution (forward and both backward ops) runs in bfloat16, and no activation
    is cast to another float dtype and back: the only full-size casts are the input's and the
    last feature map's into the float32 head (and its gradient's back), as in the float twin
    (what the float twin gains from bfloat16, the binary model can too)."""
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    batch = 4
    model = get_model(name)
    # the head (pool, BN, logits) computes in float32 (TF 2.15's bfloat16 mean is off by 3 ulp)
    assert {model.get_layer(layer).compute_dtype
            for layer in ("head_pool", "head_bn", "logits")} == {"float32"}
    ops = _train_step_ops(model, batch)
    convs = collections.Counter(op.get_attr("T").name for op in ops
                                if op.type.startswith(("Conv2D", "DepthwiseConv2d")))
    assert set(convs) == {"bfloat16"}, convs
    assert sum(convs.values()) >= 3 * 8  # forward, input and filter gradients of each conv
    def activation_sized(op):
        shape = op.outputs[0].shape
        return shape.rank == 4 and shape[0] == batch

    # a cast from bool (a 0/1 gradient mask, e.g. HardTanh's) converts no activation values
    activation_casts = [(op.get_attr("SrcT").name, op.get_attr("DstT").name, op.name)
                        for op in ops if op.type == "Cast" and activation_sized(op)
                        and op.get_attr("SrcT").is_floating]
    # the input image; the last feature map into the float32 head, and its gradient back
    assert [cast[:2] for cast in activation_casts] == [
        ("float32", "bfloat16"), ("bfloat16", "float32"), ("float32", "bfloat16")
    ], activation_casts
    assert all("head_pool" in cast[2] for cast in activation_casts[1:]), activation_casts
    # binarizing activations is 16-bit; kernels (small) are binarized in float32
    signs = collections.Counter((activation_sized(op), op.outputs[0].dtype.name)
                                for op in ops if op.type == "Sign")
    assert signs[(True, "bfloat16")] > 0 and signs[(True, "float32")] == 0, signs


def test_adabin_weight_statistics_are_float32_under_bfloat16():
    """Oracle: numpy float64 on the bfloat16 kernel the quantizer receives. A near-constant
    filter (two neighbouring bfloat16 values, half each) is where bfloat16 statistics fail:
    computed in bfloat16 its mean rounds onto one of the values and its standard deviation
    is 41 % too large."""
    rng = np.random.default_rng(0)
    near_constant = rng.permutation([1.0078125] * 18 + [1.015625] * 18).reshape(3, 3, 4, 1)
    kernel = np.concatenate([rng.normal(0.0, 0.05, (3, 3, 4, 1)), near_constant], axis=-1)
    w = _bf16(kernel)
    center = w.mean(axis=(0, 1, 2), keepdims=True)
    distance = w.std(axis=(0, 1, 2), keepdims=True)
    expected = distance * np.where(w - center >= 0, 1.0, -1.0) + center
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as inside a model
    quantizer = lqa.quantizers.AdaBinWeightQuantizer()
    quantizer.build(kernel.shape)
    got = quantizer(tf.constant(w, tf.bfloat16))
    assert got.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(got, tf.float64).numpy(), expected, rtol=2 ** -8)
    naive = float(tf.math.reduce_std(tf.constant(w, tf.bfloat16), axis=[0, 1, 2])[1])
    assert abs(naive / distance.ravel()[1] - 1) > 0.25  # what computing in bfloat16 gives


def test_adabin_activation_scalar_gradients_are_float32_under_bfloat16():
    """d alpha, d beta of the hand-derived backward (float64 numpy on the same bfloat16 inputs)
    come back in float32, summed from per-channel partial sums."""
    rng = np.random.default_rng(1)
    x = _bf16(rng.normal(0.0, 1.0, (8, 6, 6, 16)))
    dy = _bf16(rng.normal(0.0, 1.0, x.shape))
    alpha, beta = 0.8, 0.1
    u = (x - beta) / alpha
    slope = np.maximum(0.0, 2.0 - 2.0 * np.abs(u))
    signs = np.where(u >= 0, 1.0, -1.0)
    expected_alpha = np.sum(dy * (signs + beta - u * slope))
    expected_beta = np.sum(dy * (alpha - slope))
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")  # as inside a model
    quantizer = lqa.quantizers.AdaBinActivationQuantizer(alpha_init=alpha, beta_init=beta)
    quantizer.build(x.shape)
    inputs = tf.constant(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        out = quantizer(inputs)
        assert out.dtype == tf.bfloat16
        loss = tf.reduce_sum(tf.cast(out, tf.float32) * tf.constant(dy, tf.float32))
    d_alpha, d_beta = tape.gradient(loss, [quantizer.alpha, quantizer.beta])
    assert d_alpha.dtype == tf.float32 and d_beta.dtype == tf.float32
    scale = np.sum(np.abs(dy))  # the size of the terms that cancel in the sums
    assert abs(float(d_alpha) - expected_alpha) < 4e-3 * scale
    assert abs(float(d_beta) - expected_beta) < 4e-3 * scale


def test_adabin_activation_levels_and_sign_decisions_under_bfloat16():
    """The bfloat16 forward (one fused affine map of ``min(sign(u), 0)``): larq's sign of
    ``u = (x - beta) / alpha`` as the element-wise bfloat16 ops round it (``x == beta`` is +1),
    the two levels as the docstring rounds them (within one bfloat16 step of
    ``alpha (+-1 + beta)``), NaN kept; and ``dx = dy max(0, 2 - 2|u|)`` exactly."""
    rng = np.random.default_rng(2)
    alpha, beta = 0.8, 0.1
    a, b = _bf16(alpha), _bf16(beta)
    x = _bf16(rng.normal(0.0, 1.0, (4, 6, 6, 16)))
    x.reshape(-1)[:4] = [b, np.nan, b + 0.5, 0.0]
    dy = _bf16(rng.normal(0.0, 1.0, x.shape))
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    quantizer = lqa.quantizers.AdaBinActivationQuantizer(alpha_init=alpha, beta_init=beta)
    quantizer.build(x.shape)
    inputs = tf.constant(x, tf.bfloat16)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        out = quantizer(inputs)
    dx = tape.gradient(out, inputs, output_gradients=tf.constant(dy, tf.bfloat16))
    out, dx = tf.cast(out, tf.float32).numpy(), tf.cast(dx, tf.float32).numpy()

    f32 = np.float32  # each op: float32 arithmetic on bfloat16 values, rounded once
    with np.errstate(invalid="ignore"):
        u = _bf16(f32(_bf16(f32(x) - f32(b))) / f32(a))
        upper = _bf16(f32(a) * f32(_bf16(f32(1.0) + f32(b))))  # the bias
        lower = _bf16(f32(upper) - f32(2.0 * a))  # bias - 2 alpha
        expected = np.where(u >= 0, upper, lower)
        expected[np.isnan(u)] = np.nan
        np.testing.assert_array_equal(out, expected)
        slope = _bf16(np.maximum(f32(0.0), f32(2.0) - f32(2.0) * np.abs(f32(u))))
        finite = ~np.isnan(u)  # at NaN: 0 in a tf.function (fused ReLU), NaN eagerly
        np.testing.assert_array_equal(dx[finite], _bf16(f32(dy) * f32(slope))[finite])
    assert out.reshape(-1)[0] == upper and np.isnan(out.reshape(-1)[1])
    for level, exact in ((upper, alpha * (1 + beta)), (lower, alpha * (beta - 1))):
        assert abs(level - exact) <= 2.0**-7 * abs(exact)


def test_bfloat16_note_follows_the_cpu_flags(tmp_path):
    with_flags = tmp_path / "with"
    with_flags.write_text("processor : 0\nflags : fpu avx2 avx512f avx512_bf16\n")
    without = tmp_path / "without"
    without.write_text("processor : 0\nflags : fpu avx2 fma\n")
    assert runtime.bfloat16_cpu_flags(with_flags) == ["avx512_bf16"]
    assert runtime.bfloat16_cpu_flags(without) == []
    assert runtime.bfloat16_cpu_flags(tmp_path / "missing") is None
    assert runtime.bfloat16_cpu_line(with_flags) == "CPU bfloat16 flags: avx512_bf16"
    assert "none of avx512_bf16, amx_bf16: bfloat16 is emulated" in runtime.bfloat16_cpu_line(
        without)
    assert "unknown" in runtime.bfloat16_cpu_line(tmp_path / "missing")
    if not tf.config.list_physical_devices("GPU"):
        assert runtime.bfloat16_note(with_flags) is None
        assert "none of avx512_bf16, amx_bf16" in runtime.bfloat16_note(without)
        assert "cannot tell" in runtime.bfloat16_note(tmp_path / "missing")


LOAD_AND_PREDICT = """
import sys
import numpy as np
import larq_adaptive as lqa
model = lqa.load_model(sys.argv[1])
x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
logits = model.predict(x, verbose=0)
print("LOADED", model.get_layer("stage1_block1_conv1").compute_dtype, np.isfinite(logits).all())
"""


@pytest.mark.slow  # the fast suite runs the same with the tiny model (test_training_cli.py)
def test_train_py_bfloat16_run_saves_loads_and_exports(tmp_path):
    """As a user runs it: train.py --mixed-precision bfloat16 on an AdaBin ResNet-20, export
    with every binary conv an LceBconv2d, and model.keras loaded in a fresh process."""
    data = npz_shard(tmp_path / "data", 32, size=32)
    out, tflite = tmp_path / "run", tmp_path / "model.tflite"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--model", "adabin_resnet20",
         "--mixed-precision", "bfloat16", "--data-dir", str(data), "--val-data-dir", str(data),
         "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "8", "--verbose", "0",
         "--output-dir", str(out), "--export-tflite", str(tflite)],
        capture_output=True, text=True, env=child_env(), timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "18/18 binary convs are LceBconv2d" in result.stdout, result.stdout[-3000:]
    for loss in json.loads((out / "results.json").read_text())["histories"][0]["loss"]:
        assert np.isfinite(loss)
    loaded = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(out / "model.keras")],
                            capture_output=True, text=True, env=child_env(), timeout=600)
    assert "LOADED bfloat16 True" in loaded.stdout, loaded.stderr[-3000:]
