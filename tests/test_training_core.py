"""model.fit trains every quantizer/layer variable, also under MirroredStrategy, mixed_float16
and mixed_bfloat16."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa


def fit_and_check(model, steps=6):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * 8, 8, 8, 32)).astype(np.float32)
    y = rng.integers(0, 10, size=steps * 8)
    model.compile(tf.keras.optimizers.Adam(1e-2),
                  tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.name: w.numpy().copy() for w in model.trainable_weights}
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    unchanged = [w.name for w in model.trainable_weights if np.array_equal(before[w.name], w.numpy())]
    assert not unchanged, f"variables not trained: {unchanged}"
    return before


def test_fit_changes_every_trainable_variable(every_method_model):
    model = every_method_model()
    before = fit_and_check(model)
    names = " ".join(before)
    for expected in ("alpha", "beta", "pos_scale", "neg_scale", "threshold/fc1/kernel",
                     "threshold/fc2/kernel", "shift/fc2/kernel", "bias_in", "bias_out", "r_sign/bias"):
        assert expected in names, expected


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains(every_method_model, policy):
    tf.keras.mixed_precision.set_global_policy(policy)
    model = every_method_model()
    assert model.get_layer("adabin_conv").compute_dtype == policy.split("_")[1]
    assert model.output.dtype == tf.float32
    fit_and_check(model)


def test_mirrored_strategy_on_two_logical_cpus(subprocess_env):
    script = textwrap.dedent(
        """
        import sys
        import larq_adaptive
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from conftest import every_method_model
        from test_training_core import fit_and_check
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        with strategy.scope():
            model = every_method_model()
        fit_and_check(model)
        print("MIRRORED_OK")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=subprocess_env, timeout=600)
    assert "MIRRORED_OK" in result.stdout, result.stderr[-3000:]


def test_sublayers_follow_their_parents_dtype_policy():
    """A float32 rebuild under a global mixed policy (what export does) stays float32 inside."""
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    inp = tf.keras.Input((8, 8, 32))
    x = lqa.layers.PaddedQuantConv2D(32, 3, input_quantizer=lqa.quantizers.DySign(),
                                     use_bias=False, dtype="float32")(inp)
    x = lqa.layers.DyPReLU(dtype="float32")(x)
    x = lqa.layers.RPReLU(dtype="float32")(x)
    model = tf.keras.Model(inp, x)
    assert model.output.dtype == tf.float32
    assert model.predict(np.ones((1, 8, 8, 32), np.float32), verbose=0).dtype == np.float32
