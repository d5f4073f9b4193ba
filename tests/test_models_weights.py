"""`weights=` of every builder: None, a Keras weights file saved by this library, or ValueError."""

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive.models import get_model


def test_keras_weights_round_trip_and_bad_files(tmp_path):
    model = get_model("reactnet_resnet20")
    path = tmp_path / "w.weights.h5"
    model.save_weights(str(path))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype(np.float32)
    tf.keras.backend.clear_session()
    loaded = get_model("reactnet_resnet20", weights=str(path))
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))

    torch_file = tmp_path / "model.th"
    torch_file.write_bytes(b"not a keras file")
    with pytest.raises(ValueError, match="not a Keras weights file"):
        get_model("reactnet_resnet20", weights=str(torch_file))
    with pytest.raises(ValueError, match="does not exist"):
        get_model("dwr_resnet20", weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="cannot load"):  # weights of another architecture
        get_model("dwr_resnet20", weights=str(path))
