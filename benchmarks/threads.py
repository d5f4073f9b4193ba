"""Training step time of ``model.fit`` (input pipeline included) under TensorFlow's thread
settings: TensorFlow's default (train.py's default) against fewer threads.

    python benchmarks/threads.py [--model adabin_resnet20] [--rounds 3] [--steps 12]
                                 [--batch-size 128] [--json out.json]

TensorFlow fixes its thread pools when it starts, so each setting runs in its own process;
the processes take turns (``rounds`` times each setting, interleaved, so that load changes on
a shared machine hit them alike). Each process trains ``steps`` steps of ``model.fit`` on
random CIFAR-sized uint8 images through train.py's own pipeline (crop and flip, normalise,
prefetch) and reports the median time of the steps after the first two. Ratios are to
TensorFlow's default (< 1: faster).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

SETTINGS = {  # name -> (intra-op threads, inter-op threads); 0: TensorFlow's default
    "tensorflow default": (0, 0),
    "inter-op 1": (0, 1),
    "intra-op 1, inter-op 1": (1, 1),
    "intra-op 1, inter-op 2": (1, 2),
}

CHILD = r"""
import os, statistics, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import larq_adaptive
import numpy as np
import tensorflow as tf
intra, inter, model_name, steps, batch = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                          int(sys.argv[4]), int(sys.argv[5]))
tf.config.threading.set_intra_op_parallelism_threads(intra)
tf.config.threading.set_inter_op_parallelism_threads(inter)
from larq_adaptive.models import get_model, model_entry
from larq_adaptive.training import pipeline
rng = np.random.default_rng(0)
source = pipeline.Source("arrays", rng.integers(0, 256, (4 * batch, 32, 32, 3), np.uint8),
                         rng.integers(0, 10, 4 * batch), 10)
data = pipeline.make_dataset(source, (32, 32), batch, training=True, repeat=True)
model = get_model(model_name)
model.compile(tf.keras.optimizers.SGD(0.01, momentum=0.9),
              tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
stamps = []
class Clock(tf.keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        stamps.append(time.perf_counter())
model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Clock()])
print("MEDIAN_STEP", statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:])))
"""


def run_setting(intra, inter, args):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(intra), str(inter), args.model, str(args.steps),
         str(args.batch_size)],
        capture_output=True, text=True, check=True)
    line = [l for l in result.stdout.splitlines() if l.startswith("MEDIAN_STEP")][-1]
    return float(line.split()[1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adabin_resnet20")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    times = {name: [] for name in SETTINGS}
    for _ in range(args.rounds):
        for name, (intra, inter) in SETTINGS.items():
            times[name].append(run_setting(intra, inter, args))
    medians = {name: statistics.median(samples) for name, samples in times.items()}
    base = medians["tensorflow default"]
    print(f"{args.model}, batch {args.batch_size}, {os.cpu_count()} CPU(s), {args.rounds} "
          f"rounds x {args.steps} steps of model.fit per setting")
    print("| threads | median step (ms) | vs TensorFlow's default |")
    print("|---|---|---|")
    for name, median in medians.items():
        print(f"| {name} | {1e3 * median:.1f} | {median / base:.2f}x |")
    results = {name: {"median_ms": round(1e3 * medians[name], 1),
                      "ratio_to_tf_default": round(medians[name] / base, 3),
                      "samples_ms": [round(1e3 * s, 1) for s in times[name]]}
               for name in SETTINGS}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": args.model, "batch_size": args.batch_size,
                       "cpus": os.cpu_count(), "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
