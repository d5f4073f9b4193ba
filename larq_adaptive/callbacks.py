"""Keras callbacks that drive the methods' schedules inside ``model.fit``."""

import math

import tensorflow as tf

from larq_adaptive.introspect import iter_quantizers
from larq_adaptive.quantizers import AdaBinWeightQuantizer

__all__ = ["EDESchedule", "ede_constants"]


def ede_constants(epoch, total_epochs, t_min=1e-3, t_max=10.0):
    r"""AdaBin's progressive EDE constants for ``epoch`` (0-based) of ``total_epochs``:

    \[ t = 10^{\log_{10} t_{min} + (\log_{10} t_{max} - \log_{10} t_{min})\,e/E}, \qquad
       k = \max(1/t, 1) \]
    """
    log_min, log_max = math.log10(t_min), math.log10(t_max)
    t = 10.0 ** (log_min + (log_max - log_min) * epoch / total_epochs)
    return (1.0 / t if t < 1.0 else 1.0), t


class EDESchedule(tf.keras.callbacks.Callback):
    """Sets (k, t) of every :class:`AdaBinWeightQuantizer` at the start of each epoch
    (constant within the epoch), following the official ``Log_UP`` schedule: t grows
    log-linearly from ``t_min`` to ``t_max`` over ``total_epochs``; k = max(1/t, 1)."""

    def __init__(self, total_epochs, t_min=1e-3, t_max=10.0):
        super().__init__()
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        self.total_epochs = int(total_epochs)
        self.t_min = float(t_min)
        self.t_max = float(t_max)

    def on_epoch_begin(self, epoch, logs=None):
        k, t = ede_constants(epoch, self.total_epochs, self.t_min, self.t_max)
        for quantizer in iter_quantizers(self.model, AdaBinWeightQuantizer):
            quantizer.k.assign(k)
            quantizer.t.assign(t)
