"""``train.py --strategy multiworker``: two worker processes on 127.0.0.1 (``TF_CONFIG``) train
the tiny network and end with the same weights as one process with two replicas
(``--strategy mirrored`` on two logical CPUs, same global batch); only the chief writes."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY

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


def _npz(folder, n, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    np.savez(folder / "shard.npz", images=rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8),
             labels=np.arange(n) % 10)
    return folder


def _weights(path):
    with np.load(path, allow_pickle=False) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


def test_two_workers_on_localhost_match_one_process_with_two_replicas(tmp_path, subprocess_env):
    train, val = _npz(tmp_path / "train", 32, 0), _npz(tmp_path / "val", 16, 1)
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
