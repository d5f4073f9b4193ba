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


def check_registered_with_float_twin(name, family, imagenet):
    """``name`` and ``float_<name>`` are registered with the right family, input, classes and a
    recipe that fits (one-step for the twin: it has no binary kernels to switch)."""
    from larq_adaptive.models import available_models, model_entry
    from larq_adaptive.training.recipes import get_recipe

    for registered, expected_family in ((name, family), (f"float_{name}", "float")):
        assert registered in available_models()
        entry = model_entry(registered)
        assert entry.family == expected_family
        assert entry.input_shape == ((224, 224, 3) if imagenet else (32, 32, 3))
        assert entry.num_classes == (1000 if imagenet else 10)
        recipe = get_recipe(entry.recipe)
        assert recipe.fits(entry.family)
        if registered.startswith("float_"):
            assert not recipe.two_step
