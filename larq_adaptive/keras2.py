"""Make ``tf.keras`` Keras 2, which larq needs, on every supported TensorFlow.

- TensorFlow 2.15 ships Keras 2 as ``tf.keras``; ``TF_USE_LEGACY_KERAS`` must stay unset
  there (TF 2.15 then looks for ``tf_keras`` and ``tf.keras`` breaks), so it is removed.
- TensorFlow 2.16-2.19 ship Keras 3; Keras 2 is the ``tf-keras`` package, which
  ``tf.keras`` resolves to when ``TF_USE_LEGACY_KERAS=1`` is set *before TensorFlow is first
  imported*. ``import larq_adaptive`` sets it (unless the caller set it already).

If TensorFlow was imported before this package with Keras 3 as ``tf.keras``, nothing can
change it any more: :func:`ensure_keras2` raises one clear ``ImportError``.
"""

import os
import random
import sys
from importlib.metadata import PackageNotFoundError, version

__all__ = ["ensure_keras2", "set_random_seed", "tensorflow_version", "tf_keras_is_keras2"]

_VARIABLE = "TF_USE_LEGACY_KERAS"


def _installed(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def tensorflow_version():
    """(major, minor) of the installed TensorFlow distribution, (0, 0) if none is found."""
    for distribution in ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"):
        found = _installed(distribution)
        if found:
            try:
                return tuple(int(part) for part in found.split(".")[:2])
            except ValueError:
                continue
    return (0, 0)


def tf_keras_is_keras2():
    """True if the imported TensorFlow's ``tf.keras`` is Keras 2 (``keras`` 2.x or
    ``tf_keras``): its layers live in ``*.engine``, Keras 3's in ``keras.src.layers``."""
    from tensorflow import keras  # TensorFlow is already imported

    return ".engine." in keras.layers.Layer.__module__


def ensure_keras2():
    """Arrange (or check) that ``tf.keras`` is Keras 2; ImportError saying what to do if not."""
    tf_version = tensorflow_version()
    if "tensorflow" not in sys.modules:
        if tf_version >= (2, 16):
            if _installed("tf-keras") is None:
                raise ImportError(
                    f"larq-adaptive needs Keras 2: with TensorFlow {tf_version[0]}.{tf_version[1]} "
                    f"install the matching tf-keras (pip install 'tf-keras~={tf_version[0]}."
                    f"{tf_version[1]}.0'), or reinstall with pip install larq-adaptive"
                )
            os.environ.setdefault(_VARIABLE, "1")
        elif tf_version > (0, 0):
            os.environ.pop(_VARIABLE, None)
        return
    if not tf_keras_is_keras2():
        raise ImportError(
            "TensorFlow was imported before larq_adaptive with Keras 3 as tf.keras, but larq "
            "needs Keras 2: import larq_adaptive before tensorflow, or set "
            f"{_VARIABLE}=1 in the environment (with tf-keras installed) before starting Python"
        )


class _IntBoundsRandom(random.Random):
    """``random.Random`` whose ``randint`` accepts integral float bounds: tf-keras 2.16-2.18
    draw layer seeds with ``randint(1, 1e9)``, which Python 3.12 rejects (tf-keras 2.19 passes
    ``int(1e9)``)."""

    def randint(self, a, b):
        return super().randint(int(a), int(b))


def set_random_seed(seed):
    """``tf.keras.utils.set_random_seed(seed)`` (Python, NumPy and TensorFlow seeds) that also
    works with tf-keras 2.16-2.18 on Python 3.12: the seed generator Keras keeps for layer
    initializers gets integer bounds. The same draws as Keras' own generator."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    package = tf.keras.layers.Layer.__module__.split(".src.")[0]  # keras or tf_keras
    holder = getattr(sys.modules.get(f"{package}.src.backend"), "_SEED_GENERATOR", None)
    if type(getattr(holder, "generator", None)) is random.Random:
        holder.generator = _IntBoundsRandom(seed)
