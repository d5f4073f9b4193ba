"""``weights=`` of every builder: None or a Keras weights file saved by this library.

(``adabin_resnet20`` also takes the official PyTorch checkpoint, see
:mod:`larq_adaptive.models.official_adabin`.) Nothing here unpickles: ``.h5``/``.keras``
weights files and TensorFlow checkpoints hold tensors only.
"""

import os

KERAS_WEIGHT_SUFFIXES = (".h5", ".hdf5", ".keras")


def load_weights(model, weights):
    """``weights``: None, or a Keras weights file saved by this library (``.h5``/``.keras``
    from ``save_weights``/``save``, or a TensorFlow checkpoint prefix). Anything else, or a file
    that does not fit the model, is a ValueError."""
    if weights is None:
        return model
    if not isinstance(weights, (str, os.PathLike)):
        raise ValueError(f"weights must be None or a path, got {weights!r}")
    path = os.fspath(weights)
    checkpoint = os.path.exists(path + ".index")
    if not (os.path.exists(path) or checkpoint):
        raise ValueError(f"weights file {path!r} does not exist")
    if not (path.endswith(KERAS_WEIGHT_SUFFIXES) or checkpoint):
        raise ValueError(
            f"{path!r} is not a Keras weights file (.h5, .keras or a TensorFlow checkpoint); "
            f"official PyTorch checkpoints are accepted by adabin_resnet20 only"
        )
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise ValueError(f"cannot load {path!r} into {model.name}: {error}") from error
    return model
