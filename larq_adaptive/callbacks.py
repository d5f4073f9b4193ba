"""Keras callbacks that drive the methods' schedules inside ``model.fit``."""

import math

import tensorflow as tf

from larq_adaptive.introspect import iter_quantizers
from larq_adaptive.quantizers import AdaBinWeightQuantizer, SwitchableQuantizer
from larq_adaptive.serialization import register

__all__ = [
    "BinaryWeightsSwitch",
    "EDESchedule",
    "FiniteBackupAndRestore",
    "FiniteCheckpoint",
    "ede_constants",
    "set_binary_weights",
]


class _FromConfig:
    """``from_config`` for callbacks (Keras callbacks have none), so that a registered
    callback round-trips through ``tf.keras.saving.serialize_keras_object``."""

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def ede_constants(epoch, total_epochs, t_min=1e-3, t_max=10.0):
    r"""AdaBin's progressive EDE constants for ``epoch`` (0-based) of ``total_epochs``:

    \[ t = 10^{\log_{10} t_{min} + (\log_{10} t_{max} - \log_{10} t_{min})\,e/E}, \qquad
       k = \max(1/t, 1) \]
    """
    log_min, log_max = math.log10(t_min), math.log10(t_max)
    t = 10.0 ** (log_min + (log_max - log_min) * epoch / total_epochs)
    return (1.0 / t if t < 1.0 else 1.0), t


@register
class EDESchedule(_FromConfig, tf.keras.callbacks.Callback):
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

    def get_config(self):
        return {"total_epochs": self.total_epochs, "t_min": self.t_min, "t_max": self.t_max}


def _finite(logs):
    loss = (logs or {}).get("loss")
    return loss is None or math.isfinite(float(loss))


def set_binary_weights(model, active):
    """Set the ``active`` flag of every :class:`SwitchableQuantizer` of ``model``."""
    for quantizer in iter_quantizers(model, SwitchableQuantizer):
        quantizer.active.assign(float(active))


@register
class BinaryWeightsSwitch(_FromConfig, tf.keras.callbacks.Callback):
    """Two-step training inside ``model.fit``: sets the ``active`` flag of every
    :class:`SwitchableQuantizer` (a ``tf.Variable``, so the traced train function sees it)
    to 0 before epoch ``at_epoch`` and to 1 from it on.

    ``at_epoch=0`` (default) makes a whole ``fit`` binary (stage 2 of a two-step run);
    ``at_epoch=None`` keeps the kernels real-valued (stage 1). One ``fit`` with
    ``at_epoch=N`` runs both steps back to back (same optimizer state and LR schedule).
    """

    def __init__(self, at_epoch=0):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        set_binary_weights(self.model, self.at_epoch is not None and epoch >= self.at_epoch)

    def get_config(self):
        return {"at_epoch": self.at_epoch}


@register
class FiniteBackupAndRestore(_FromConfig, tf.keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that does not back up an epoch whose loss is NaN/inf, so a
    re-run after ``TerminateOnNaN`` restarts from the last good epoch (the backup is kept
    when training ends on a NaN)."""

    def get_config(self):
        return {"backup_dir": self.backup_dir, "save_freq": self.save_freq,
                "delete_checkpoint": self.delete_checkpoint}

    def on_train_begin(self, logs=None):
        self.saw_nan = False
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            super().on_epoch_end(epoch, logs)
        else:
            self.saw_nan = True

    def on_train_end(self, logs=None):
        if not self.saw_nan:
            super().on_train_end(logs)


@register
class FiniteCheckpoint(_FromConfig, tf.keras.callbacks.Callback):
    """Saves ``model``'s weights (default: the fitted model's) to ``filepath.format(epoch=
    epoch + 1)`` after every epoch whose loss is finite (``ModelCheckpoint`` would also save
    the NaN weights of the epoch ``TerminateOnNaN`` stopped)."""

    def __init__(self, filepath, model=None):
        super().__init__()
        self.filepath = str(filepath)
        self.target = model
        self.last_saved = None

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        path = self.filepath.format(epoch=epoch + 1)
        (self.target or self.model).save_weights(path)
        self.last_saved = path

    def get_config(self):
        return {"filepath": self.filepath}
