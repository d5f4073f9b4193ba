"""Model registry: ``available_models()``, ``get_model(name, **kwargs)``, ``preprocess_input``."""

import dataclasses
import functools

import numpy as np
import tensorflow as tf

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: object
    input_shape: tuple  # native input size (H, W, C)
    num_classes: int
    family: str  # "adabin" | "reactnet" | "dybnn" | "dwr" | "float"
    recipe: str  # default train.py recipe name
    normalization: str = "imagenet"  # x/255 then ImageNet mean/std, as every official recipe


_MODELS = {}


def register_model(name, *, input_shape, num_classes, family, recipe, normalization="imagenet"):
    """Decorator registering a keyword-only builder under ``name``."""

    def decorator(builder):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = ModelEntry(
            name, builder, tuple(input_shape), num_classes, family, recipe, normalization
        )
        return builder

    return decorator


def register_with_float_twin(name, *, family, recipe, float_recipe=None, **entry):
    """Register ``builder`` as ``name`` and its ``method="float"`` twin as ``float_<name>``
    (registry family ``"float"``; recipe ``float_recipe``, default ``recipe``)."""

    def decorator(builder):
        register_model(name, family=family, recipe=recipe, **entry)(builder)

        @functools.wraps(builder)
        def float_builder(**kwargs):
            if kwargs.setdefault("method", "float") != "float":
                raise ValueError(f"float_{name} is the method='float' twin of {name}")
            return builder(**kwargs)

        float_builder.__name__ = f"float_{builder.__name__}"
        float_builder.__qualname__ = float_builder.__name__
        float_builder.__doc__ = f"Real-valued twin of :func:`{builder.__name__}` (``method='float'``)."
        register_model(f"float_{name}", family="float", recipe=float_recipe or recipe, **entry)(
            float_builder
        )
        return builder

    return decorator


def available_models():
    """Sorted names of every registered model."""
    return sorted(_MODELS)


def model_entry(name):
    """The :class:`ModelEntry` of ``name``; ValueError listing the choices if unknown."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def get_model(name, **kwargs):
    """Build the registered model ``name`` with the builder's keyword arguments."""
    return model_entry(name).builder(**kwargs)


def preprocess_input(images, model_name):
    """uint8 or float NHWC images in 0-255 -> the float32 input ``model_name`` expects.

    Every official recipe here scales to [0, 1] and normalises with the ImageNet mean/std
    (also on CIFAR; spec pitfall 13). Works on numpy arrays and tensors.
    """
    entry = model_entry(model_name)
    if entry.normalization != "imagenet":
        raise ValueError(f"unknown normalization {entry.normalization!r}")
    x = tf.cast(images, tf.float32) / 255.0
    x = (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    return x.numpy() if isinstance(images, np.ndarray) else x
