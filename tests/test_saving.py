"""Save/load round-trips (.keras with safe_mode, .h5, SavedModel) give identical predictions."""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa


@pytest.fixture(scope="module")
def trained(every_method_model):
    tf.keras.backend.clear_session()
    model = every_method_model()
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 8, 8, 32)).astype(np.float32)
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, rng.integers(0, 10, 16), epochs=1, verbose=0)
    return model, x


@pytest.mark.parametrize("filename", ["model.keras", "model.h5", "saved_model"])
def test_round_trip_predictions_identical(tmp_path, trained, filename):
    model, x = trained
    path = str(tmp_path / filename)
    model.save(path)
    loaded = lqa.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    if filename != "saved_model":
        assert type(loaded.get_layer("adabin_conv")) is lqa.layers.AdaBinConv2D
        q = loaded.get_layer("dysign_conv").kernel_quantizer
        assert isinstance(q, lqa.quantizers.SwitchableQuantizer) and q.active.numpy() == 1.0


def test_keras_format_is_safe_mode_clean(tmp_path, trained):
    """No Lambda layers: plain Keras loading with safe_mode=True and only our custom objects works."""
    model, x = trained
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = tf.keras.models.load_model(path, custom_objects=lqa.custom_objects(), safe_mode=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_every_quantizer_config_round_trips():
    for quantizer in [lqa.quantizers.AdaBinWeightQuantizer(k=3.0, t=0.5),
                      lqa.quantizers.AdaBinActivationQuantizer(alpha_init=0.5, beta_init=0.1),
                      lqa.quantizers.RSign(), lqa.quantizers.DySign(reduction=8, hidden_activation=None),
                      lqa.quantizers.ReActNetWeightQuantizer(),
                      lqa.quantizers.SwitchableQuantizer("ste_sign", active=True)]:
        assert quantizer.precision == 1
        clone = type(quantizer).from_config(quantizer.get_config())
        assert clone.get_config() == quantizer.get_config()


def test_custom_objects_lists_every_public_class():
    objects = lqa.custom_objects()
    for name in ["AdaBinWeightQuantizer", "AdaBinActivationQuantizer", "RSign", "DySign",
                 "ReActNetWeightQuantizer", "SwitchableQuantizer", "Maxout", "RPReLU", "DyPReLU",
                 "AdaBinConv2D", "PaddedQuantConv2D", "OptionAShortcut", "TorchPadding2D", "HyperFunction",
                 "HardTanh", "ChannelSlice", "BorderCorrectedQuantConv2D", "EDESchedule",
                 "SteSign", "QuantConv2D"]:
        assert name in objects, name


def test_every_callback_config_round_trips():
    for callback in [lqa.callbacks.EDESchedule(10, t_min=1e-2),
                     lqa.callbacks.BinaryWeightsSwitch(at_epoch=3),
                     lqa.callbacks.FiniteCheckpoint("ckpt/epoch_{epoch}.weights.h5"),
                     lqa.callbacks.FiniteBackupAndRestore("backup")]:
        serialized = tf.keras.saving.serialize_keras_object(callback)
        assert serialized["registered_name"] == f"larq_adaptive>{type(callback).__name__}"
        clone = tf.keras.saving.deserialize_keras_object(serialized)
        assert type(clone) is type(callback) and clone.get_config() == callback.get_config()
