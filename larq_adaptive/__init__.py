"""larq-adaptive: adaptive and dynamic binarization methods for larq / Keras 2.

    import larq_adaptive as lqa
    lqa.quantizers.AdaBinWeightQuantizer, lqa.layers.RPReLU, lqa.callbacks.EDESchedule,
    lqa.optimizers.TorchSGD,
    lqa.summary(model), lqa.load_model(path), lqa.save_model(model, path, **record),
    lqa.read_metadata(path), lqa.custom_objects(),
    lqa.models.get_model(name), lqa.export.to_tflite(model, path), lqa.plot.curves_figure(run),
    lqa.training.get_recipe(name)

Importing the package makes ``tf.keras`` Keras 2 (:mod:`larq_adaptive.keras2`) and registers
every saveable object of the package (layers, quantizers, callbacks) with Keras and larq, so
any model built with it reloads in a fresh process after ``import larq_adaptive`` alone. The
heavier modules (``models``, ``export``, ``plot``, ``training``) are imported on first use.
"""

import importlib as _importlib

from larq_adaptive.keras2 import ensure_keras2 as _ensure_keras2

_ensure_keras2()

from larq_adaptive import (  # noqa: E402
    callbacks,
    introspect,
    layers,
    optimizers,
    preprocessing,
    quantizers,
)
from larq_adaptive.profiling import summary  # noqa: E402
from larq_adaptive.saving import (  # noqa: E402
    custom_objects,
    load_model,
    read_metadata,
    save_model,
)

__version__ = "0.2.0"

_LAZY_MODULES = ("data", "export", "models", "plot", "training")

__all__ = [
    "callbacks",
    "custom_objects",
    "data",
    "export",
    "introspect",
    "layers",
    "load_model",
    "models",
    "optimizers",
    "plot",
    "preprocessing",
    "quantizers",
    "read_metadata",
    "save_model",
    "summary",
    "training",
]


def __getattr__(name):
    if name in _LAZY_MODULES:
        module = _importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
