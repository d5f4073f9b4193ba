"""The model registry: ``available_models()``, ``get_model(name, **kwargs)``, ``model_entry``,
and ``preprocess_input(images, name)``.

Words, one meaning each: a model's **family** is the paper its architecture comes from
(``"adabin"``, ``"reactnet"``, ``"dybnn"``, ``"dwr"``); its **method** is how its convolutions
binarize (a row of :mod:`larq_adaptive.models.methods`, ``"float"`` for the real-valued twins);
its **recipe** is the default training recipe (:mod:`larq_adaptive.training.recipes`); its
**preprocessing** names the input normalisation (:mod:`larq_adaptive.preprocessing`); its
**provenance** says how closely it follows released code (:data:`PROVENANCES`).
"""

import dataclasses
import functools

from larq_adaptive.preprocessing import normalize

__all__ = [
    "PROVENANCES",
    "ModelEntry",
    "PaperResult",
    "available_models",
    "get_model",
    "model_entry",
    "preprocess_input",
    "register_model",
    "register_with_float_twin",
]


PROVENANCES = {
    "official": "exactly the architecture of the paper's official code (same layers and "
                "parameters; official weights would load)",
    "adapted": "the method's official building blocks on an architecture or in a form its "
               "official code does not have (the builder docstring says what differs)",
    "reconstructed": "no official code: built from the paper's description (the builder "
                     "docstring says what was assumed)",
}


@dataclasses.dataclass(frozen=True)
class PaperResult:
    """The top-1 accuracy its authors published for a model (1-bit weights and activations)."""

    top1: float  # percent
    dataset: str  # "CIFAR-10" | "ImageNet"
    source: str  # where it is published


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows of a model, as data."""

    name: str
    builder: object
    input_shape: tuple  # native input size (H, W, C)
    num_classes: int
    family: str  # paper of the architecture: "adabin" | "reactnet" | "dybnn" | "dwr"
    method: str  # default binarization method of the builder, "float" for the twins
    recipe: str  # default train.py recipe
    preprocessing: str = "imagenet"  # x/255 then ImageNet mean/std, as every official recipe
    float_twin: bool = False  # the method="float" twin of a binary model
    provenance: str = None  # a key of PROVENANCES (the twin: its binary model's architecture)
    paper: PaperResult = None  # the published top-1 of this architecture (None: none published)

    @property
    def binary(self):
        return self.method != "float"


_MODELS = {}


def register_model(name, *, input_shape, num_classes, family, method, recipe,
                   preprocessing="imagenet", float_twin=False, provenance=None, paper=None):
    """Decorator registering a keyword-only builder under ``name``."""

    def decorator(builder):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        if provenance is not None and provenance not in PROVENANCES:
            raise ValueError(f"provenance must be one of {sorted(PROVENANCES)}, got {provenance!r}")
        _MODELS[name] = ModelEntry(
            name, builder, tuple(input_shape), num_classes, family, method, recipe,
            preprocessing, float_twin, provenance, paper,
        )
        return builder

    return decorator


def register_with_float_twin(name, *, method, recipe, paper=None, **entry):
    """Register ``builder`` as ``name`` and its ``method="float"`` twin as ``float_<name>``
    (same family; recipe ``<recipe>_float``: the binary recipe minus what only binary training
    needs, see :func:`larq_adaptive.training.recipes.float_recipe`)."""

    def decorator(builder):
        register_model(name, method=method, recipe=recipe, paper=paper, **entry)(builder)

        @functools.wraps(builder)
        def float_builder(**kwargs):
            if kwargs.setdefault("method", "float") != "float":
                raise ValueError(f"float_{name} is the method='float' twin of {name}")
            return builder(**kwargs)

        float_builder.__name__ = f"float_{builder.__name__}"
        float_builder.__qualname__ = float_builder.__name__
        float_builder.__doc__ = f"Real-valued twin of :func:`{builder.__name__}` (``method='float'``)."
        register_model(f"float_{name}", method="float", recipe=f"{recipe}_float",
                       float_twin=True, **entry)(float_builder)
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
    """uint8 or float NHWC images in 0-255 -> the float32 input ``model_name`` expects
    (its registered preprocessing). Works on numpy arrays and tensors."""
    return normalize(images, model_entry(model_name).preprocessing)
