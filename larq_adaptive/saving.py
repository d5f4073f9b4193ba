"""Loading models that use larq-adaptive objects.

Loading is a security boundary: ``.keras`` files are loaded with Keras ``safe_mode=True``
(no ``Lambda`` layers or arbitrary code), and nothing here unpickles user files.
"""

import larq  # noqa: F401  (registers larq's own objects)
import tensorflow as tf

from larq_adaptive.serialization import registered_objects


def custom_objects():
    """Every object needed to load a model saved with larq-adaptive (and larq) layers."""
    larq_objects = {
        name: obj
        for name, obj in tf.keras.utils.get_custom_objects().items()
        if getattr(obj, "__module__", "").startswith("larq.")
    }
    return {**larq_objects, **registered_objects()}


def load_model(path, compile=True):
    """Load a ``.keras``, ``.h5`` or SavedModel file, with ``safe_mode`` for ``.keras``."""
    path = str(path)
    kwargs = {"custom_objects": custom_objects(), "compile": compile}
    if path.endswith(".keras"):
        kwargs["safe_mode"] = True
    return tf.keras.models.load_model(path, **kwargs)
