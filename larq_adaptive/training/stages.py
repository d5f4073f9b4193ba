"""Multi-stage training around ``model.fit``: coupled weight decay, per-stage optimizer,
learning-rate schedule, switches, logs, checkpoints and resume.

Each stage of a recipe is one ``fit`` with a fresh optimizer (the LR schedule restarts)
and its own ``stage_k/`` folder: ``log.csv``, TensorBoard ``logs/``, ``checkpoints/``
(the weights of the last ``keep_checkpoints`` finished epochs and of the best one),
``summary.txt`` (what the stage trains: real-valued
kernels in stage 1 of two-step training), ``backup/`` (``BackupAndRestore``: a re-run after a
crash or ``kill -9`` continues at the interrupted epoch, after SIGTERM/SIGINT at the
interrupted step) and ``final.weights.h5``.
``state.json`` in the run folder records the finished stages.
"""

import json
import math
from pathlib import Path

import tensorflow as tf

from larq_adaptive import callbacks as lqa_callbacks
from larq_adaptive.introspect import iter_layers, iter_quantizers
from larq_adaptive.layers import RPReLU
from larq_adaptive.optimizers import TorchAdam, TorchSGD
from larq_adaptive.quantizers import DySign, RSign
from larq_adaptive.saving import replace_atomically
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
    """The official trainers' ``torch.optim`` optimizers: ``"sgd"`` = :class:`TorchSGD`
    (momentum 0.9, PyTorch's momentum convention, exact across learning-rate changes),
    ``"adam"`` = Keras Adam (0.9, 0.999, eps 1e-8: PyTorch's values)."""
    if name == "sgd":
        return TorchSGD(lr, momentum=0.9)
    if name == "adam":  # torch.optim.Adam's epsilon placement (Keras' differs)
        return TorchAdam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    raise ValueError(f"unknown optimizer {name!r}")


def _read_state(run_dir):
    path = Path(run_dir) / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"finished_stages": []}


def _write_state(run_dir, state):
    replace_atomically(lambda tmp: Path(tmp).write_text(json.dumps(state, indent=2)),
                       Path(run_dir) / "state.json")


def stage_callbacks(stage, stage_dir, plan, student, guard, extra=(), write_dir=None):
    """The callbacks of one stage (order matters: switches before the first batch; the guard
    and the signal stop before backup and checkpoints, which skip bad epochs). Logs and
    checkpoints go to ``write_dir`` (default ``stage_dir``); the backup is read from
    ``stage_dir`` (Keras writes a non-chief worker's backup to a temporary folder itself)."""
    write_dir = write_dir or stage_dir
    schedule, base_lr, epochs = plan["schedule"], plan["lr"], stage.epochs
    callbacks = [
        lqa_callbacks.BinaryWeightsSwitch(0 if stage.binary_weights else None),
        tf.keras.callbacks.LearningRateScheduler(
            lambda epoch: learning_rate(schedule, base_lr, epoch, epochs)
        ),
    ]
    if plan["ede"]:
        callbacks.append(lqa_callbacks.EDESchedule(epochs))
    mid_epoch = plan.get("mid_epoch_backup", False)
    backup = lqa_callbacks.FiniteBackupAndRestore(str(stage_dir / "backup"), mid_epoch=mid_epoch)
    callbacks += [
        tf.keras.callbacks.TerminateOnNaN(),
        guard,
        lqa_callbacks.StopOnSignal(before_exit=backup.save_now if mid_epoch else None),
        backup,
        lqa_callbacks.FiniteCheckpoint(
            write_dir / "checkpoints" / "epoch_{epoch:03d}.weights.h5", model=student,
            keep=plan.get("keep_checkpoints", 0),
        ),
        tf.keras.callbacks.CSVLogger(str(write_dir / "log.csv"), append=True),
        tf.keras.callbacks.TensorBoard(str(write_dir / "logs"), profile_batch=0, write_graph=False),
        *extra,
    ]
    return callbacks


def _last_checkpoint(stage_dir):
    files = sorted((stage_dir / "checkpoints").glob("epoch_*.weights.h5"))
    return files[-1] if files else None


def run_stages(model, student, stages, plan, run_dir, strategy, train_data, val_data,
               log=print, extra_callbacks=(), write_dir=None):
    """Fit ``model`` (the student or a :class:`Distiller` around it) stage after stage.

    ``plan``: dict with ``optimizer``, ``lr``, ``schedule``, ``ede``, ``loss`` (Keras loss),
    ``weight_decay`` (:class:`CoupledWeightDecay` or None), ``steps_per_epoch``,
    ``validation_freq``, ``verbose`` and optionally ``keep_checkpoints`` (0: every epoch),
    ``mid_epoch_backup`` (SIGTERM/SIGINT back up the interrupted epoch too, see
    :class:`~larq_adaptive.callbacks.FiniteBackupAndRestore`; not multi-worker) and
    ``describe`` (called with the stage folder
    once the stage's binary-weight switches are set, e.g. to write its summary). Finished stages (``state.json``) are skipped and their
    final weights loaded. ``train_data``: a dataset, or a function of the number of steps
    already done (a resumed stage's backup) returning the dataset that starts there. Returns
    the list of per-stage ``History.history`` dicts (plus
    ``"epoch"``: the 1-based epoch numbers run in this call; None for a skipped stage).

    ``write_dir`` (default ``run_dir``): where this process writes. A non-chief worker of a
    multi-worker run reads the chief's ``run_dir`` (finished stages, backup) and writes into
    a temporary folder, so that only the chief writes the run.
    """
    run_dir = Path(run_dir)
    write_dir = Path(write_dir or run_dir)
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
        stage_out = write_dir / f"stage_{index}"
        (stage_out / "checkpoints").mkdir(parents=True, exist_ok=True)
        guard = lqa_callbacks.FiniteGuard(student)
        lqa_callbacks.set_binary_weights(student, stage.binary_weights)
        if plan.get("describe"):
            plan["describe"](stage_out)
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
        data = train_data
        if callable(train_data):
            epoch, step = lqa_callbacks.FiniteBackupAndRestore.resume_position(
                stage_dir / "backup", plan["steps_per_epoch"])
            if epoch or step:
                log(f"stage {index}: continuing from its backup at epoch {epoch + 1}, "
                    f"step {step + 1} of {plan['steps_per_epoch']}")
            data = train_data(epoch * plan["steps_per_epoch"] + step)
        history = model.fit(
            data,
            epochs=stage.epochs,
            steps_per_epoch=plan["steps_per_epoch"],
            validation_data=val_data,
            validation_freq=plan["validation_freq"],
            callbacks=stage_callbacks(stage, stage_dir, plan, student, guard, extra_callbacks,
                                      stage_out),
            verbose=plan["verbose"],
        )
        losses = history.history.get("loss", [])
        if guard.bad_epoch or (losses and not math.isfinite(losses[-1])):
            checkpoint = _last_checkpoint(stage_out)
            raise NaNLoss(
                f"{guard.reason or f'loss {losses[-1]}'} in epoch {guard.bad_epoch or len(losses)}"
                f" of stage {index} ({stage.name}); training stopped. "
                f"Last good checkpoint: {checkpoint or 'none (first epoch)'}",
                checkpoint,
            )
        replace_atomically(student.save_weights, stage_out / "final.weights.h5")
        state["finished_stages"].append(stage.name)
        _write_state(write_dir, state)
        histories.append({"epoch": [e + 1 for e in history.epoch], **history.history})
    return histories
