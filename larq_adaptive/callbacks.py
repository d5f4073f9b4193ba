"""Keras callbacks that drive the methods' schedules inside ``model.fit``, and the ones that
keep a long run safe: :class:`FiniteGuard` (NaN/inf losses and weights),
:class:`FiniteCheckpoint` (bounded, atomic per-epoch checkpoints),
:class:`FiniteBackupAndRestore` and :class:`StopOnSignal` (SIGTERM/SIGINT)."""

import json
import math
import re
import signal
import threading
from pathlib import Path

import tensorflow as tf

from larq_adaptive.introspect import iter_quantizers
from larq_adaptive.quantizers import AdaBinWeightQuantizer, SwitchableQuantizer
from larq_adaptive.saving import PARTIAL, replace_atomically
from larq_adaptive.serialization import register

__all__ = [
    "BinaryWeightsSwitch",
    "EDESchedule",
    "FiniteBackupAndRestore",
    "FiniteCheckpoint",
    "FiniteGuard",
    "Stopped",
    "StopOnSignal",
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



NONFINITE_WEIGHTS = "nonfinite_weights"  # set in an epoch's logs by FiniteGuard


def _finite(logs):
    """True if the epoch's training and validation losses are finite and :class:`FiniteGuard`
    found its weights finite."""
    logs = logs or {}
    if logs.get(NONFINITE_WEIGHTS):
        return False
    return all(math.isfinite(float(logs[key])) for key in ("loss", "val_loss")
               if logs.get(key) is not None)


@register
class FiniteGuard(_FromConfig, tf.keras.callbacks.Callback):
    """Stops training after an epoch whose training or validation loss, or any weight of
    ``model`` (default: the fitted model; BN moving statistics included), is NaN or inf.

    ``TerminateOnNaN`` only sees training-batch losses. This runs at every epoch end, before
    the checkpoint callbacks: it marks a bad epoch in its logs so that
    :class:`FiniteCheckpoint` and :class:`FiniteBackupAndRestore` skip it, and records
    ``bad_epoch`` (1-based) and ``reason`` for the caller.
    """

    def __init__(self, model=None):
        super().__init__()
        self.target = model
        self.bad_epoch = None
        self.reason = None

    def on_train_begin(self, logs=None):
        self.bad_epoch, self.reason = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        problems = [f"{key} {float(logs[key])}" for key in ("loss", "val_loss")
                    if logs.get(key) is not None and not math.isfinite(float(logs[key]))]
        broken = [v.name for v in (self.target or self.model).weights
                  if v.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(v)))]
        if broken:
            logs[NONFINITE_WEIGHTS] = 1.0
            problems.append(f"non-finite weights ({', '.join(broken[:3])}"
                            f"{', ...' if len(broken) > 3 else ''})")
        if problems:
            self.bad_epoch, self.reason = epoch + 1, " and ".join(problems)
            self.model.stop_training = True

    def get_config(self):
        return {}


class Stopped(Exception):
    """Raised out of ``model.fit`` by :class:`StopOnSignal`; ``signal_name`` says which."""

    def __init__(self, signal_name, epoch, batch):
        super().__init__(f"stopped by {signal_name} in epoch {epoch + 1} (batch {batch + 1})")
        self.signal_name, self.epoch, self.batch = signal_name, epoch, batch


@register
class StopOnSignal(_FromConfig, tf.keras.callbacks.Callback):
    """Ends ``model.fit`` within one training step of a SIGTERM (preemption) or SIGINT
    (Ctrl-C): the handlers only set a flag; the next batch end calls ``before_exit`` (e.g.
    :meth:`FiniteBackupAndRestore.save_now`: a mid-epoch backup) and raises
    :class:`Stopped`. The unfinished epoch is neither logged nor checkpointed. Without
    ``before_exit``, or in an epoch's last batch (whose epoch end, validation and checkpoint
    a mid-epoch backup would skip), a re-run resumes from the last finished epoch, as after
    ``kill -9``. Handlers are installed for the ``fit`` (main thread only) and the previous
    ones restored afterwards."""

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self, before_exit=None):
        super().__init__()
        self.before_exit = before_exit
        self.received = None
        self._previous = {}
        self._epoch = 0

    def _handler(self, signum, frame):
        self.received = signal.Signals(signum).name

    def on_train_begin(self, logs=None):
        self.received = None
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handler)

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.received:
            self._restore()
            steps = (self.params or {}).get("steps")
            if self.before_exit is not None and steps and batch + 1 < steps:
                self.before_exit()
            raise Stopped(self.received, self._epoch, batch)

    def on_train_end(self, logs=None):
        self._restore()

    def _restore(self):
        for number, previous in self._previous.items():
            signal.signal(number, previous)
        self._previous = {}

    def get_config(self):
        return {}


@register
class FiniteBackupAndRestore(_FromConfig, tf.keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that does not back up an epoch whose loss is NaN/inf, so a
    re-run after ``TerminateOnNaN`` restarts from the last good epoch (the backup is kept
    when training ends on a NaN).

    ``mid_epoch=True``: it also records the batch, so that :meth:`save_now` (e.g. on
    SIGTERM, see :class:`StopOnSignal`) backs up in the middle of an epoch and a re-run
    continues at the next step (Keras' step-based ``save_freq`` machinery; no periodic
    saves, only at epoch ends and on request). Not for multi-worker runs: a backup is a
    collective operation, and a signal reaches one worker. :meth:`resume_position` reads
    where a backup continues."""

    NEVER = 2 ** 62  # a step-based save_freq that never triggers a periodic save

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True, mid_epoch=False):
        super().__init__(backup_dir, save_freq=self.NEVER if mid_epoch else save_freq,
                         delete_checkpoint=delete_checkpoint)
        self.mid_epoch = bool(mid_epoch)

    def get_config(self):
        return {"backup_dir": self.backup_dir, "delete_checkpoint": self.delete_checkpoint,
                "mid_epoch": self.mid_epoch,
                "save_freq": "epoch" if self.mid_epoch else self.save_freq}

    def on_train_begin(self, logs=None):
        self.saw_nan = False
        super().on_train_begin(logs)
        state, steps = self._training_state, (self.params or {}).get("steps")
        if self.mid_epoch and steps and int(state._ckpt_saved_epoch.numpy()) >= 0 and int(
                state._ckpt_saved_batch.numpy()) < 0:  # an epoch-end backup without a batch
            state._ckpt_saved_batch.assign(steps - 1)  # Keras: continue at the next epoch

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            self.saw_nan = True
        elif self.mid_epoch:  # the recorded batch is the epoch's last: resumes at epoch + 1
            self._backup(epoch)
        else:
            super().on_epoch_end(epoch, logs)

    def save_now(self):
        """Back up the state after the batch that just ended (``mid_epoch=True``)."""
        if not self.mid_epoch:
            raise ValueError("save_now needs FiniteBackupAndRestore(mid_epoch=True)")
        self._backup(self._current_epoch)

    @staticmethod
    def resume_position(backup_dir, steps_per_epoch):
        """``(epoch, step)`` (0-based) where a re-run continues from the backup in
        ``backup_dir`` ((0, 0) if none), read from the checkpoint itself: known before
        ``fit`` (e.g. to start the input pipeline there)."""
        for folder in (Path(backup_dir) / "chief", Path(backup_dir)):
            latest = folder.is_dir() and tf.train.latest_checkpoint(str(folder))
            if latest:
                reader = tf.train.load_checkpoint(latest)
                saved = {}
                for key in reader.get_variable_to_shape_map():
                    for name in ("ckpt_saved_epoch", "ckpt_saved_batch"):
                        if key.startswith(name + "/"):
                            saved[name] = int(reader.get_tensor(key))
                epoch, batch = saved.get("ckpt_saved_epoch", -1), saved.get("ckpt_saved_batch", -1)
                if epoch < 0:
                    return 0, 0
                if batch < 0 or batch >= steps_per_epoch - 1:  # an epoch-end backup
                    return epoch + 1, 0
                return epoch, batch + 1
        return 0, 0

    def on_train_end(self, logs=None):
        if not self.saw_nan:
            super().on_train_end(logs)


@register
class FiniteCheckpoint(_FromConfig, tf.keras.callbacks.Callback):
    """Saves ``model``'s weights (default: the fitted model's) to ``filepath.format(epoch=
    epoch + 1)`` after every epoch whose losses and weights are finite (``ModelCheckpoint``
    would also save the NaN weights of the epoch ``TerminateOnNaN`` stopped).

    Each file is written as ``partial-<file>`` and renamed in one step, so a crash during the
    write never leaves a truncated checkpoint. ``keep``: the number of most recent epochs
    kept (0: all), plus the best epoch by ``monitor`` (``val_accuracy``; its epoch and value
    are in ``best.json`` beside the checkpoints), so the disk use of a long run is bounded.
    """

    def __init__(self, filepath, model=None, keep=0, monitor="val_accuracy"):
        super().__init__()
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        self.filepath = str(filepath)
        self.target = model
        self.keep = int(keep)
        self.monitor = monitor
        self.last_saved = None
        self._folder = Path(self.filepath).parent

    def _epochs(self):
        """{epoch: path} of the checkpoints in the folder."""
        found = {}
        for path in self._folder.glob("*"):
            match = re.fullmatch(self._name_regex(), path.name)
            if match:
                found[int(match.group("epoch"))] = path
        return found

    def _name_regex(self):
        head, _, rest = Path(self.filepath).name.partition("{epoch")
        tail = rest.partition("}")[2]
        return re.escape(head) + r"(?P<epoch>\d+)" + re.escape(tail)

    def _best(self):
        path = self._folder / "best.json"
        return json.loads(path.read_text()) if path.exists() else None

    def on_train_begin(self, logs=None):
        self._folder.mkdir(parents=True, exist_ok=True)
        for stale in self._folder.glob(PARTIAL + "*"):  # a crash during a write
            stale.unlink()

    def on_epoch_end(self, epoch, logs=None):
        if not _finite(logs):
            return
        path = self.filepath.format(epoch=epoch + 1)
        target = self.target or self.model
        replace_atomically(target.save_weights, path)
        self.last_saved = path
        value, best = (logs or {}).get(self.monitor), self._best()
        if value is not None and math.isfinite(float(value)) and (
                best is None or float(value) > best["value"]):
            record = json.dumps({"epoch": epoch + 1, "monitor": self.monitor,
                                 "value": float(value)})
            replace_atomically(lambda tmp: Path(tmp).write_text(record),
                                self._folder / "best.json")
            best = self._best()
        if self.keep:
            files = self._epochs()
            kept = set(sorted(files)[-self.keep:]) | ({best["epoch"]} if best else set())
            for old, file in files.items():
                if old not in kept:
                    file.unlink()

    def get_config(self):
        return {"filepath": self.filepath, "keep": self.keep, "monitor": self.monitor}
