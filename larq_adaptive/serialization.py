"""Keras/larq serialization of the package's objects: every custom layer, quantizer and
constraint is registered here once, so that saved models reload with ``import larq_adaptive``."""

import larq as lq
import tensorflow as tf

_REGISTERED = {}


def register(cls):
    """Register ``cls`` with larq (plain class name: needed for `.h5` full-model loading
    and quantizer strings) and with Keras under the ``larq_adaptive`` package (`.keras`
    files), and remember it for :func:`larq_adaptive.custom_objects`."""
    if cls.__name__ in _REGISTERED:
        raise ValueError(f"{cls.__name__} is registered twice")
    lq.utils.register_keras_custom_object(cls)
    tf.keras.saving.register_keras_serializable(package="larq_adaptive")(cls)
    _REGISTERED[cls.__name__] = cls
    return cls


def registered_objects():
    """A copy of the name -> class mapping of everything registered so far."""
    return dict(_REGISTERED)


def build_sublayer(layer, input_shape):
    """Build a sub-layer inside its own name scope, so its variables get unique names
    (``parent/sublayer/kernel``) as when Keras builds it on first call: `.h5` files key
    weights by name."""
    with tf.name_scope(layer.name):
        layer.build(input_shape)
