"""A run never ends as a silent NaN model, never fills the disk, never leaves a half-written
file, and stops cleanly on SIGTERM/SIGINT so that the same command continues it."""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa

from larq_adaptive.saving import PARTIAL, replace_atomically
from larq_adaptive.training.cli import main

from conftest import TINY, child_env, command_stderr_lines, npz_shard, tiny_model

pytestmark = pytest.mark.usefixtures("tiny_registered_model")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return npz_shard(root / "train", 32, seed=0), npz_shard(root / "val", 16, seed=1)


def _argv(data, out, *extra, epochs=3, steps=2):
    return ["--model", TINY, "--data-dir", str(data[0]), "--val-data-dir", str(data[1]),
            "--output-dir", str(out), "--epochs", str(epochs), "--steps-per-epoch", str(steps),
            "--batch-size", "8", "--verbose", "0", "--recipe", "dwr_cifar", *extra]


def _logged(out):
    with open(out / "stage_1" / "log.csv") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _checkpoints(out):
    return sorted(p.name for p in (out / "stage_1" / "checkpoints").glob("epoch_*"))


# ------------------------------------------------------------------------- NaN and inf


class _PoisonMovingVariance(tf.keras.callbacks.Callback):
    """NaN into a BN moving variance: the training forward pass (batch statistics) stays
    finite; validation (moving statistics) and the weights do not."""

    def __init__(self, at_epoch, when="epoch_begin"):
        super().__init__()
        self.at_epoch, self.when, self.epoch = at_epoch, when, 0

    def _poison(self):
        variance = self.model.get_layer("stem_bn").moving_variance
        variance.assign(tf.fill(variance.shape, float("nan")))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        if self.when == "epoch_begin" and epoch == self.at_epoch:
            self._poison()

    def on_train_batch_end(self, batch, logs=None):
        if self.when == "last_batch" and self.epoch == self.at_epoch and batch == 1:
            self._poison()


def _assert_stopped_at_epoch_2(out, capsys, words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in epoch 2 of stage 1" in err[0], err
    assert all(word in err[0] for word in words), err
    assert "epoch_001.weights.h5" in err[0]
    assert _checkpoints(out) == ["epoch_001.weights.h5"]
    model = tiny_model()
    model.load_weights(str(out / "stage_1" / "checkpoints" / "epoch_001.weights.h5"))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not (out / "model.keras").exists() and not (out / "results.json").exists()


def test_nan_validation_loss_stops_with_exit_1(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(data, out), extra_callbacks=[_PoisonMovingVariance(1)]) == 1
    assert np.isfinite(_logged(out)[0]["val_loss"])
    _assert_stopped_at_epoch_2(out, capsys, ["val_loss nan", "non-finite weights", "stem_bn"])


def test_nan_weights_with_a_finite_loss_stop_too(data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv(data, out, "--validation-freq", "0")
    assert main(argv, extra_callbacks=[_PoisonMovingVariance(1, "last_batch")]) == 1
    _assert_stopped_at_epoch_2(out, capsys, ["non-finite weights", "moving_variance"])
    assert "loss nan" not in capsys.readouterr().err


# ------------------------------------------------------------------------- checkpoints


def test_keep_checkpoints_keeps_the_last_n_and_the_best(data, tmp_path):
    out = tmp_path / "run"
    assert main(_argv(data, out, "--keep-checkpoints", "2", "--lr", "0.5", epochs=6)) == 0
    logged = _logged(out)
    best = max(range(6), key=lambda e: (logged[e]["val_accuracy"], -e)) + 1
    record = json.loads((out / "stage_1" / "checkpoints" / "best.json").read_text())
    assert record == {"epoch": best, "monitor": "val_accuracy",
                      "value": pytest.approx(logged[best - 1]["val_accuracy"])}
    expected = {f"epoch_{e:03d}.weights.h5" for e in (5, 6, best)}
    assert set(_checkpoints(out)) == expected
    results = json.loads((out / "results.json").read_text())
    assert results["best_epoch"]["epoch"] == best


def test_keep_checkpoints_0_keeps_every_epoch(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_argv(data, out, "--keep-checkpoints", "0", epochs=4)) == 0
    assert _checkpoints(out) == [f"epoch_{e:03d}.weights.h5" for e in range(1, 5)]
    assert main(_argv(data, tmp_path / "bad", "--keep-checkpoints", "-1")) == 2
    assert "--keep-checkpoints must be >= 0" in capsys.readouterr().err


def test_a_crash_while_writing_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"complete": true}')

    def crash(temporary):
        with open(temporary, "w") as handle:
            handle.write('{"compl')
        raise OSError("disk full")

    with pytest.raises(OSError):
        replace_atomically(crash, target)
    assert json.loads(target.read_text()) == {"complete": True}
    assert (tmp_path / f"{PARTIAL}results.json").exists()


class _Crash(Exception):
    pass


class _CrashAfterFirstEpoch(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise _Crash()


def test_resume_ignores_and_removes_a_half_written_checkpoint(data, tmp_path):
    out = tmp_path / "run"
    argv = _argv(data, out, "--keep-checkpoints", "0", epochs=3)
    with pytest.raises(_Crash):
        main(argv, extra_callbacks=[_CrashAfterFirstEpoch()])
    stale = out / "stage_1" / "checkpoints" / f"{PARTIAL}epoch_002.weights.h5"
    stale.write_bytes(b"\x89HDF truncated by a crash")
    assert main(argv) == 0
    assert not stale.exists()
    assert _checkpoints(out) == [f"epoch_{e:03d}.weights.h5" for e in (1, 2, 3)]
    assert [int(row["epoch"]) for row in _logged(out)] == [0, 1, 2]


# ----------------------------------------------------------------------------- signals


RUN_MAIN = """
import sys
import larq_adaptive
from conftest import register_tiny_model
register_tiny_model()
from larq_adaptive.training.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _signal_argv(data, out):
    return _argv(data, out, "--keep-checkpoints", "0", epochs=12, steps=40)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    """The final weights of the signal tests' run without interruption."""
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = subprocess.run([sys.executable, "-c", RUN_MAIN, *_signal_argv(data, out)],
                            env=child_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return lqa.load_model(out / "model.keras").get_weights()


@pytest.mark.parametrize("name,status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_stops_within_a_step_and_the_same_command_continues(
        data, tmp_path, subprocess_env, uninterrupted, name, status):
    out = tmp_path / "run"
    argv = _signal_argv(data, out)
    process = subprocess.Popen([sys.executable, "-c", RUN_MAIN, *argv], env=subprocess_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "stage_1" / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and (
            not log.exists() or len(log.read_text().splitlines()) < 3):  # 2 epochs done
        time.sleep(0.1)
    sent = time.time()
    process.send_signal(getattr(signal, name))
    _, stderr = process.communicate(timeout=120)
    stop_seconds = time.time() - sent
    assert process.returncode == status, stderr[-2000:]
    # TensorFlow may warn that callbacks are slow next to these millisecond batches
    lines = [line for line in command_stderr_lines(stderr)
             if not line.startswith("WARNING:tensorflow:Callback method")]
    assert len(lines) == 1 and f"stopped by {name}" in lines[0] and "Traceback" not in stderr
    assert stop_seconds < 10, stop_seconds
    done = [int(row["epoch"]) for row in _logged(out)]
    assert done == list(range(len(done))) and 2 <= len(done) < 12
    assert _checkpoints(out) == [f"epoch_{e:03d}.weights.h5" for e in range(1, len(done) + 1)]
    assert not (out / "model.keras").exists()
    stopped = re.search(r"in epoch (\d+) \(batch (\d+)\)", lines[0])
    epoch, batch = int(stopped.group(1)), int(stopped.group(2))
    assert epoch == len(done) + 1
    # the same command continues at the interrupted step (a signal in an epoch's last step:
    # at the next epoch, after its end-of-epoch work); every epoch logged once
    result = subprocess.run([sys.executable, "-c", RUN_MAIN, *argv], env=subprocess_env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    if batch < 40:
        assert f"continuing from its backup at epoch {epoch}, step {batch + 1} of 40" in \
            result.stdout, result.stdout[-2000:]
    assert [int(row["epoch"]) for row in _logged(out)] == list(range(12))
    # the resumed run sees the same batches (position-indexed data): the same weights
    resumed = lqa.load_model(out / "model.keras").get_weights()
    worst = max(float(np.max(np.abs(a - b))) for a, b in zip(resumed, uninterrupted))
    assert worst == 0.0, worst
    print(f"{name}: stopped {stop_seconds:.2f} s after the signal, in epoch {epoch} after "
          f"step {batch}; "
          f"resumed run vs uninterrupted: max |difference| {worst}")
