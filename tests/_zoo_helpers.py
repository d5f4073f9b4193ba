"""Helpers shared by the model-zoo tests."""

import larq as lq
import tensorflow as tf

from larq_adaptive.models import get_model


def build(name, **kwargs):
    """A registered model built from a clean Keras session with a fixed seed."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    return get_model(name, **kwargs)


def binary_convs(model):
    """The convolutions whose input is binarized."""
    return [
        layer for layer in model.layers
        if isinstance(layer, lq.layers.QuantConv2D) and layer.input_quantizer is not None
    ]
