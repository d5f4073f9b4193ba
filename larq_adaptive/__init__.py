"""larq-adaptive: adaptive and dynamic binarization methods for larq / Keras 2.

    import larq_adaptive as lqa
    lqa.quantizers.AdaBinWeightQuantizer, lqa.layers.RPReLU, lqa.callbacks.EDESchedule,
    lqa.summary(model), lqa.load_model(path), lqa.custom_objects()
"""

import os as _os
from importlib.metadata import PackageNotFoundError as _NotFound
from importlib.metadata import version as _version


def _tf_minor():
    for dist in ("tensorflow", "tensorflow-cpu"):
        try:
            return tuple(int(x) for x in _version(dist).split(".")[:2])
        except (_NotFound, ValueError):
            pass
    return (0, 0)


# TF >= 2.16 ships Keras 3; larq needs Keras 2 (tf-keras). On 2.15 this variable breaks tf.keras.
if _tf_minor() >= (2, 16):
    _os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from larq_adaptive import callbacks, layers, quantizers  # noqa: E402
from larq_adaptive.saving import custom_objects, load_model  # noqa: E402
from larq_adaptive.summary import summary  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "callbacks",
    "custom_objects",
    "layers",
    "load_model",
    "quantizers",
    "summary",
]
