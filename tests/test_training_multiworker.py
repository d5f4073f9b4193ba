"""``train.py --strategy multiworker``: two worker processes on 127.0.0.1 (``TF_CONFIG``) train
the tiny network and end with the same weights as one process with two replicas
(``--strategy mirrored`` on two logical CPUs, same global batch); only the chief writes."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY, command_stderr_lines, npz_shard

WORKER = """
import os, sys
import numpy as np
import larq_adaptive
import tensorflow as tf
if os.environ.get("LOGICAL_CPUS"):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(os.environ["LOGICAL_CPUS"]))
from conftest import register_tiny_model
register_tiny_model()
from larq_adaptive.training.cli import main


class DumpWeights(tf.keras.callbacks.Callback):  # every process's final weights, for the test
    def on_train_end(self, logs=None):
        np.savez(os.environ["WEIGHTS_FILE"], *self.model.get_weights())


sys.exit(main(sys.argv[1:], extra_callbacks=[DumpWeights()]))
"""


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _weights(path):
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_two_workers_on_localhost_match_one_process_with_two_replicas(tmp_path, subprocess_env):
    train, val = npz_shard(tmp_path / "train", 32, seed=0), npz_shard(tmp_path / "val", 16, seed=1)
    flags = ["--model", TINY, "--data-dir", str(train), "--val-data-dir", str(val),
             "--recipe", "dwr_cifar", "--epochs", "2", "--steps-per-epoch", "2",
             "--batch-size", "8", "--verbose", "0", "--lr", "0.05"]
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = {**subprocess_env, "WEIGHTS_FILE": str(tmp_path / f"worker{index}.npz"),
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, *flags, "--strategy", "multiworker",
             "--output-dir", str(tmp_path / "run")],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (stdout, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    assert "MultiWorkerMirroredStrategy, 2 replica(s)" in outputs[0][0]

    reference = subprocess.run(
        [sys.executable, "-c", WORKER, *flags, "--strategy", "mirrored",
         "--output-dir", str(tmp_path / "single")],
        env={**subprocess_env, "LOGICAL_CPUS": "2",
             "WEIGHTS_FILE": str(tmp_path / "single.npz")},
        capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert "MirroredStrategy, 2 replica(s)" in reference.stdout

    chief, other, single = (_weights(tmp_path / f"{n}.npz") for n in ("worker0", "worker1", "single"))
    assert len(chief) == len(single) > 10
    for a, b in zip(chief, other):  # identical on every worker
        np.testing.assert_array_equal(a, b)
    worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))
                for a, b in zip(chief, single))
    assert worst == 0.0, worst  # the same global batches, pixel for pixel
    print(f"two workers vs one process with two replicas: max relative difference {worst:.2e}")

    run = tmp_path / "run"  # only the chief wrote the run; the worker's folder is gone
    for name in ("config.json", "summary.txt", "state.json", "model.keras", "results.json"):
        assert (run / name).is_file(), name
    rows = (run / "stage_1" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 epochs, written once
    written = re.search(r"non-chief worker: writing to (\S+)\)", outputs[1][0])
    assert written and not os.path.exists(written.group(1))
    assert "non-chief" not in outputs[0][0]


def _start_workers(flags, out, tmp_path, env, tag):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    return [subprocess.Popen(
        [sys.executable, "-c", WORKER, *flags, "--strategy", "multiworker", "--output-dir",
         str(out)],
        env={**env, "WEIGHTS_FILE": str(tmp_path / f"{tag}{index}.npz"),
             "TF_CONFIG": json.dumps({"cluster": cluster,
                                      "task": {"type": "worker", "index": index}})},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for index in range(2)]


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_and_restarting_every_worker_resumes_exactly(
        tmp_path, subprocess_env):
    train, val = npz_shard(tmp_path / "train", 32, seed=0), npz_shard(tmp_path / "val", 16, seed=1)
    flags = ["--model", TINY, "--data-dir", str(train), "--val-data-dir", str(val),
             "--recipe", "dwr_cifar", "--epochs", "12", "--steps-per-epoch", "20",
             "--batch-size", "8", "--verbose", "0"]
    out = tmp_path / "run"
    chief, worker = _start_workers(flags, out, tmp_path, subprocess_env, "first")
    log = out / "stage_1" / "log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and chief.poll() is None and (
            not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.1)
    worker.kill()
    worker.communicate()
    _, stderr = chief.communicate(timeout=120)  # the chief's collectives fail: it stops
    lines = [line for line in command_stderr_lines(stderr)
             if not line.startswith("WARNING:tensorflow:")]  # e.g. slow-callback notes
    assert chief.returncode == 1 and len(lines) == 1, stderr[-2000:]
    assert "restart every worker" in lines[0] and "Traceback" not in stderr
    done = len(log.read_text().splitlines()) - 1
    assert 2 <= done < 12
    for process in _start_workers(flags, out, tmp_path, subprocess_env, "again"):
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
    assert [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]] == list(range(12))
    reference = subprocess.run(
        [sys.executable, "-c", WORKER, *flags, "--strategy", "mirrored", "--output-dir",
         str(tmp_path / "single")],
        env={**subprocess_env, "LOGICAL_CPUS": "2", "WEIGHTS_FILE": str(tmp_path / "single.npz")},
        capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr[-2000:]
    for a, b in zip(_weights(tmp_path / "again0.npz"), _weights(tmp_path / "single.npz")):
        np.testing.assert_array_equal(a, b)
    print(f"worker killed after {done} epochs; the restarted run ends bit-identical")
