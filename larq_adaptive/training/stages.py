"""Multi-stage training around ``model.fit``: coupled weight decay, per-stage optimizer,
learning-rate schedule, switches, logs, checkpoints and resume.

Each stage of a recipe is one ``fit`` with a fresh optimizer (the LR schedule restarts)
and its own ``stage_k/`` folder: ``log.csv``, TensorBoard ``logs/``, ``checkpoints/``
(one weights file per finished epoch), ``backup/`` (``BackupAndRestore``: a re-run after a
crash or ``kill -9`` continues at the interrupted epoch) and ``final.weights.h5``.
``state.json`` in the run folder records the finished stages.
"""

import json
import math
from pathlib import Path

import tensorflow as tf

from larq_adaptive import callbacks as lqa_callbacks
from larq_adaptive.introspect import iter_layers, iter_quantizers
from larq_adaptive.layers import RPReLU
from larq_adaptive.optimizers_adam import TorchAdam
from larq_adaptive.quantizers import DySign, RSign
from larq_adaptive.training.distillation import loss_dtype
from larq_adaptive.training.recipes import learning_rate

__all__ = ["CoupledWeightDecay", "NaNLoss", "decayed_variables", "make_optimizer", "run_stages"]


class NaNLoss(RuntimeError):
    """Training stopped on a NaN/inf loss; ``checkpoint`` is the last good weights file."""

    def __init__(self, message, checkpoint=None):
        super().__init__(message)
        self.checkpoint = checkpoint


def decayed_variables(model, rule):
    """The variables the official code decays (its optimizer parameter groups).

    ``"all"`` (AdaBin, DWR CIFAR): every trainable variable (BN, alpha/beta, Maxout too).
    ``"reactnet"``: 4-D kernels and the RSign/DySign/RPReLU/DyPReLU shifts (4-D in PyTorch),
    not PReLU slopes, BN, FC or hyper-function FCs.
    """
    if rule == "all":
        return list(model.trainable_variables)
    if rule != "reactnet":
        raise ValueError(f"unknown weight-decay rule {rule!r}")
    chosen = [v for v in model.trainable_variables if len(v.shape) == 4]
    for quantizer in iter_quantizers(model, (RSign, DySign)):
        chosen.append(quantizer.bias)
    for layer in iter_layers(model):
        if isinstance(layer, RPReLU):
            chosen += [layer.bias_in, layer.bias_out]
    unique = {id(v): v for v in chosen if v.trainable}
    return list(unique.values())


class CoupledWeightDecay:
    """PyTorch-style coupled L2 (``weight_decay`` added to the gradient = a loss
    ``wd / 2 * sum(theta^2)``) as a model loss; ``coefficient`` is a ``tf.Variable`` so
    each stage sets its own value (two-step: 1e-5, then 0) without re-tracing."""

    def __init__(self, model, rule):
        self.variables = decayed_variables(model, rule)
        self.dtype = loss_dtype(*(v.dtype for v in self.variables))
        self.coefficient = tf.Variable(0.0, trainable=False, name="weight_decay", dtype=self.dtype)
        model.add_loss(self.loss)

    def loss(self):
        total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v, self.dtype))) for v in self.variables])
        return 0.5 * self.coefficient * total


def make_optimizer(name, lr):
    """SGD (momentum 0.9) or Adam (0.9, 0.999, eps 1e-8: PyTorch's), plain Keras optimizers."""
    if name == "sgd":
        return tf.keras.optimizers.SGD(lr, momentum=0.9)
    if name == "adam":  # torch.optim.Adam's epsilon placement (Keras' differs)
        return TorchAdam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    raise ValueError(f"unknown optimizer {name!r}")


def _read_state(run_dir):
    path = Path(run_dir) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"finished_stages": []}


def _write_state(run_dir, state):
    (Path(run_dir) / "state.json").write_text(json.dumps(state, indent=2))


def stage_callbacks(stage, stage_dir, plan, student, extra=()):
    """The callbacks of one stage (order matters: switches before the first batch, backup and
    checkpoints skip NaN epochs)."""
    schedule, base_lr, epochs = plan["schedule"], plan["lr"], stage.epochs
    callbacks = [
        lqa_callbacks.BinaryWeightsSwitch(0 if stage.binary_weights else None),
        tf.keras.callbacks.LearningRateScheduler(
            lambda epoch: learning_rate(schedule, base_lr, epoch, epochs)
        ),
    ]
    if plan["ede"]:
        callbacks.append(lqa_callbacks.EDESchedule(epochs))
    callbacks += [
        tf.keras.callbacks.TerminateOnNaN(),
        lqa_callbacks.FiniteBackupAndRestore(str(stage_dir / "backup")),
        lqa_callbacks.FiniteCheckpoint(
            stage_dir / "checkpoints" / "epoch_{epoch:03d}.weights.h5", model=student
        ),
        tf.keras.callbacks.CSVLogger(str(stage_dir / "log.csv"), append=True),
        tf.keras.callbacks.TensorBoard(str(stage_dir / "logs"), profile_batch=0, write_graph=False),
        *extra,
    ]
    return callbacks


def _last_checkpoint(stage_dir):
    files = sorted((stage_dir / "checkpoints").glob("epoch_*.weights.h5"))
    return files[-1] if files else None


def run_stages(model, student, stages, plan, run_dir, strategy, train_data, val_data,
               log=print, extra_callbacks=()):
    """Fit ``model`` (the student or a :class:`Distiller` around it) stage after stage.

    ``plan``: dict with ``optimizer``, ``lr``, ``schedule``, ``ede``, ``loss`` (Keras loss),
    ``weight_decay`` (:class:`CoupledWeightDecay` or None), ``steps_per_epoch``,
    ``validation_freq``, ``verbose``. Finished stages (``state.json``) are skipped and their
    final weights loaded. Returns the list of per-stage ``History.history`` dicts.
    """
    run_dir = Path(run_dir)
    state = _read_state(run_dir)
    histories = []
    for index, stage in enumerate(stages, start=1):
        stage_dir = run_dir / f"stage_{index}"
        final = stage_dir / "final.weights.h5"
        if stage.name in state["finished_stages"] and final.exists():
            log(f"stage {index}/{len(stages)} ({stage.name}) already finished: loading {final}")
            student.load_weights(str(final))
            histories.append(None)
            continue
        (stage_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        log(f"stage {index}/{len(stages)}: {stage.name}, {stage.epochs} epochs, "
            f"{'binary' if stage.binary_weights else 'real-valued'} weights, "
            f"weight decay {stage.weight_decay:g}")
        with strategy.scope():
            if plan["weight_decay"] is not None:
                plan["weight_decay"].coefficient.assign(stage.weight_decay)
            model.compile(
                optimizer=make_optimizer(plan["optimizer"], plan["lr"]),
                loss=plan["loss"],
                metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            )
        history = model.fit(
            train_data,
            epochs=stage.epochs,
            steps_per_epoch=plan["steps_per_epoch"],
            validation_data=val_data,
            validation_freq=plan["validation_freq"],
            callbacks=stage_callbacks(stage, stage_dir, plan, student, extra_callbacks),
            verbose=plan["verbose"],
        )
        losses = history.history.get("loss", [])
        if losses and not math.isfinite(losses[-1]):
            checkpoint = _last_checkpoint(stage_dir)
            raise NaNLoss(
                f"loss became {losses[-1]} in stage {index} ({stage.name}); training stopped. "
                f"Last good checkpoint: {checkpoint or 'none (first epoch)'}",
                checkpoint,
            )
        student.save_weights(str(final))
        state["finished_stages"].append(stage.name)
        _write_state(run_dir, state)
        histories.append(history.history)
    return histories
