"""``import larq_adaptive``: the public API the docs use, and Keras 2 as ``tf.keras`` on every
supported TensorFlow. Everything runs in fresh processes, as a user's script would."""

import subprocess
import sys

import pytest

from larq_adaptive.keras2 import tensorflow_version

PUBLIC = ("callbacks", "custom_objects", "data", "export", "introspect", "layers", "load_model",
          "models", "optimizers", "plot", "preprocessing", "quantizers", "read_metadata",
          "save_model", "summary", "training")


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)


def test_every_documented_name_is_reachable_from_the_package(subprocess_env):
    code = f"""
import larq_adaptive as lqa
assert sorted(lqa.__all__) == sorted({PUBLIC!r}), lqa.__all__
assert set(lqa.__all__) <= set(dir(lqa))
for name in lqa.__all__:
    getattr(lqa, name)
assert callable(lqa.summary) and callable(lqa.load_model) and callable(lqa.custom_objects)
lqa.export.to_tflite, lqa.export.binary_weights, lqa.models.get_model, lqa.models.available_models
lqa.plot.curves_figure, lqa.plot.binary_sets_figure, lqa.training.get_recipe, lqa.training.run_stages
lqa.layers.HardTanh, lqa.layers.ChannelSlice, lqa.layers.BorderCorrectedQuantConv2D
lqa.layers.TorchBatchNormalization, lqa.optimizers.TorchSGD
try:
    lqa.no_such_thing
except AttributeError as error:
    assert "no_such_thing" in str(error)
else:
    raise SystemExit("a missing attribute did not raise")
print("API_OK")
"""
    result = _run(code, subprocess_env)
    assert "API_OK" in result.stdout, result.stderr[-2000:]


def test_import_registers_every_object_without_the_zoo(subprocess_env):
    code = """
import sys
import larq_adaptive as lqa
import tensorflow as tf
names = set(lqa.custom_objects())
for name in ("HardTanh", "ChannelSlice", "BorderCorrectedQuantConv2D", "TorchPadding2D",
             "HyperFunction", "EDESchedule", "SwitchableQuantizer", "AdaBinConv2D"):
    assert name in names, name
    assert tf.keras.saving.get_registered_object("larq_adaptive>" + name) is not None, name
assert not any(m.startswith("larq_adaptive.models") for m in sys.modules)
print("REGISTERED_OK")
"""
    result = _run(code, subprocess_env)
    assert "REGISTERED_OK" in result.stdout, result.stderr[-2000:]


def test_tf_keras_is_keras_2_even_with_a_stray_legacy_variable(subprocess_env):
    """TF 2.15 breaks when TF_USE_LEGACY_KERAS is set; TF >= 2.16 needs it: the package
    arranges either, so tf.keras is Keras 2 after `import larq_adaptive` on every stack."""
    code = """
import larq_adaptive, larq
import tensorflow as tf
from larq_adaptive.keras2 import tf_keras_is_keras2
assert tf_keras_is_keras2(), tf.keras.layers.Layer.__module__
layer = larq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign")
assert isinstance(layer, tf.keras.layers.Layer)
print("KERAS2_OK")
"""
    for value in (None, "1"):
        env = dict(subprocess_env)
        env.pop("TF_USE_LEGACY_KERAS", None)
        if value is not None:
            env["TF_USE_LEGACY_KERAS"] = value
        result = _run(code, env)
        assert "KERAS2_OK" in result.stdout, (value, result.stderr[-2000:])


def test_tensorflow_imported_first(subprocess_env):
    """TF 2.15: works. TF >= 2.16 without the variable: tf.keras is Keras 3 and the import
    fails with one clear ImportError that says what to do."""
    env = dict(subprocess_env)
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = _run("import tensorflow\nimport larq_adaptive\nprint('IMPORTED')", env)
    if tensorflow_version() < (2, 16):
        assert "IMPORTED" in result.stdout, result.stderr[-2000:]
    else:
        assert result.returncode != 0
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: TensorFlow was imported before larq_adaptive")
        assert "import larq_adaptive before tensorflow" in last


@pytest.mark.parametrize("version", ["2.15.1", "2.19.1"])
def test_tensorflow_version_parsing(monkeypatch, version):
    from larq_adaptive import keras2

    monkeypatch.setattr(keras2, "_installed", lambda dist: version if dist == "tensorflow" else None)
    assert keras2.tensorflow_version() == tuple(int(v) for v in version.split(".")[:2])


def test_set_random_seed_is_deterministic_and_takes_float_bounds():
    """tf-keras 2.16-2.18 draw layer seeds with randint(1, 1e9) (a float bound Python 3.12
    refuses); our seeding gives Keras a generator that takes it, with the same results."""
    import random

    import tensorflow as tf

    from larq_adaptive.keras2 import _IntBoundsRandom, set_random_seed

    assert _IntBoundsRandom(5).randint(1, 1e9) == random.Random(5).randint(1, int(1e9))

    def fresh_kernel():
        set_random_seed(3)
        layer = tf.keras.layers.Dense(4)
        layer.build((None, 5))
        return layer.kernel.numpy()

    first, second = fresh_kernel(), fresh_kernel()
    assert (first == second).all() and first.std() > 0
