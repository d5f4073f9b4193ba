"""Walking a Keras model: every layer (nested models included) and the quantizers they hold."""

import tensorflow as tf


def iter_layers(model):
    """Every layer of ``model`` depth-first, descending into nested models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, tf.keras.Model):
            yield from iter_layers(layer)


def iter_quantizers(model, cls):
    """Every ``input_quantizer``/``kernel_quantizer`` of ``model`` that is an instance of ``cls``
    (looking inside ``SwitchableQuantizer`` wrappers too)."""
    for layer in iter_layers(model):
        for attr in ("input_quantizer", "kernel_quantizer"):
            quantizer = getattr(layer, attr, None)
            while quantizer is not None:
                if isinstance(quantizer, cls):
                    yield quantizer
                    break
                quantizer = getattr(quantizer, "quantizer", None)
