"""Shared fixtures: a fresh Keras session per test, the shared data folder, small models with
every method, and a tiny registered model for the training command.

Subprocess tests that need the same small models import this module by path
(``sys.path.insert(0, TESTS); import conftest``): it is the one place they are defined.
"""

import os
import re
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive as lqa  # noqa: E402  (before TensorFlow: makes tf.keras Keras 2)
from larq_adaptive.keras2 import set_random_seed  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = Path(os.environ.get("LQA_SHARED_DIR") or REPO.parent / "shared")
TINY = "tiny_train_test_net"


# Benchmarks run by tests store their results here, never over benchmarks/results/.
BENCHMARK_RESULTS = Path(tempfile.gettempdir()) / f"lqa-test-benchmark-results-{os.getpid()}"


def child_env():
    """Environment of a test's subprocess: quiet TensorFlow, CPU only, tests importable,
    benchmark results kept out of the repository."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1",
            "PYTHONPATH": str(TESTS), "LQA_BENCHMARK_RESULTS": str(BENCHMARK_RESULTS)}


# TensorFlow >= 2.16 writes native (absl/glog-format) log lines at import time that no
# environment variable silences; a command's own stderr is what is left without them.
_NATIVE_LOG = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]|WARNING: All log "
                         r"messages before absl::InitializeLog\(\) is called)")


def op_types(function, *args):
    """The op types of ``function``'s graph, traced by ``tf.function`` for ``args``."""
    return {op.type for op in tf.function(function).get_concrete_function(*args).graph
            .get_operations()}


def command_stderr_lines(stderr):
    """The non-empty stderr lines of a command, TensorFlow's native log lines left out."""
    return [line for line in stderr.splitlines() if line.strip() and not _NATIVE_LOG.match(line)]


@pytest.fixture
def subprocess_env():
    """:func:`child_env` (a fresh dict per test)."""
    return child_env()


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    tf.keras.backend.clear_session()
    yield
    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} (the project's shared data) is not present")
    return SHARED


# --------------------------------------------------------------------------- small models


def every_method_model(channels=32, size=8, num_classes=10):
    """AdaBin conv + Maxout, DySign/ReActNet (switchable) conv + DyPReLU, RSign conv + RPReLU."""
    inp = tf.keras.Input((size, size, channels))
    x = lqa.layers.AdaBinConv2D(channels, name="adabin_conv")(inp)
    x = tf.keras.layers.BatchNormalization(name="bn1")(x)
    x = lqa.layers.Maxout(name="maxout")(x)
    x = lqa.layers.PaddedQuantConv2D(
        channels, 3, strides=2, name="dysign_conv", use_bias=False,
        input_quantizer=lqa.quantizers.DySign(reduction=4),
        kernel_quantizer=lqa.quantizers.SwitchableQuantizer(
            lqa.quantizers.ReActNetWeightQuantizer(), active=True),
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn2")(x)
    x = lqa.layers.DyPReLU(reduction=4, name="dyprelu")(x)
    x = lqa.layers.PaddedQuantConv2D(
        channels, 3, name="rsign_conv", use_bias=False,
        input_quantizer=lqa.quantizers.RSign(),
        kernel_quantizer=lqa.quantizers.ReActNetWeightQuantizer(),
    )(x)
    x = tf.keras.layers.BatchNormalization(name="bn3")(x)
    x = lqa.layers.RPReLU(name="rprelu")(x)
    x = lqa.layers.OptionAShortcut(2 * channels, 2, name="shortcut")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    out = tf.keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)
    return tf.keras.Model(inp, out)


def tiny_model(*, input_shape=None, input_tensor=None, weights=None, include_top=True,
               num_classes=10, binary_weights=True, pad_values=0.0):
    """A registered-builder-shaped tiny network: FP stem, one RSign/ReActNet conv + RPReLU."""
    from larq_adaptive.models import blocks
    from larq_adaptive.models.methods import get_method

    method = get_method("reactnet", "reactnet", binary_weights=binary_weights,
                        pad_values=pad_values)
    inputs = blocks.image_input(input_shape, input_tensor, (8, 8, 3))
    x = blocks.batch_norm(blocks.float_conv(inputs, 8, 3, name="stem_conv"), "stem_bn")
    x = blocks.batch_norm(blocks.conv(x, 8, 3, 1, "bconv", method), "bconv_bn")
    x = lqa.layers.RPReLU(name="act")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = blocks.dense(x, num_classes, method.kernel_initializer)
    return blocks.finish(inputs, x, input_tensor, "tiny", method, weights)


def bconv_options(flatbuffer):
    """The custom options of every LceBconv2d of a TFLite flatbuffer (a flexbuffer map:
    ``padding`` 0 = SAME, 1 = VALID; ``pad_values``; ``stride_height``, ...)."""
    from flatbuffers import flexbuffers
    from larq_compute_engine.mlir.python import tflite_schema as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    options = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        code = model.OperatorCodes(op.OpcodeIndex()).CustomCode()
        if code and code.decode() == "LceBconv2d":
            options.append(flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy())))
    return options


def assert_no_border_maps(flatbuffer, filters):
    """LCE border corrections are a few C_out vectors, never a (1, H, W, C_out) map constant
    (``filters``: the widest binary conv's C_out)."""
    from larq_adaptive import export

    maps = [t.shape for t in export.constant_tensors(flatbuffer)
            if t.type == "FLOAT32" and len(t.shape) == 4 and t.shape[0] == 1]
    assert all(np.prod(shape) <= 9 * filters for shape in maps), maps


def npz_shard(folder, n, classes=10, seed=0, size=8):
    """``folder/shard.npz`` of ``n`` random uint8 ``size`` x ``size`` RGB images with labels
    ``i % classes`` (the .npz data format of train.py); returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "shard.npz", images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
             labels=np.arange(n) % classes)
    return folder


def register_tiny_model():
    """Register :func:`tiny_model` as ``TINY`` (method "float": every recipe accepts it)."""
    from larq_adaptive.models import registry

    if TINY not in registry.available_models():
        registry.register_model(TINY, input_shape=(8, 8, 3), num_classes=10, family="reactnet",
                                method="float", recipe="dwr_cifar")(tiny_model)
    return TINY


@pytest.fixture
def tiny_registered_model():
    """``TINY`` in the model registry for one test, removed afterwards."""
    from larq_adaptive.models import registry

    name = register_tiny_model()
    yield name
    registry._MODELS.pop(name, None)


@pytest.fixture(scope="session")
def build_model():
    """``build(name, **kwargs)``: a registered model from a clean session with seed 0."""
    from larq_adaptive.models import get_model

    def build(name, **kwargs):
        tf.keras.backend.clear_session()
        set_random_seed(0)
        return get_model(name, **kwargs)

    return build


@pytest.fixture(scope="session", name="every_method_model")
def _every_method_model_factory():
    """:func:`every_method_model` (a factory: call it to build a fresh model)."""
    return every_method_model
