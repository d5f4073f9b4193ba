"""Train-step time on CPU, in one process: the adaptive ResNet-20s against the same
network with larq's plain quantizers, or (``--policy``) every method under a mixed-precision
policy against float32.

    python benchmarks/train_step.py [--batch-size 128] [--rounds 7] [--steps 5] [--json out.json]
                                    [--inter-op-threads N] [--threads N]
                                    [--policy mixed_bfloat16 [--models NAME ...]]

Default: adabin_resnet20, reactnet_resnet20, dybnn_resnet20, each against *the same network*
with larq's plain ``ste_sign`` as input and kernel quantizer (``<name>+ste_sign``, "the same network with ste_sign": every
binary conv's AdaBin/RSign/DySign/ReActNet quantizers replaced, activations, BN and shortcuts
unchanged), so the ratio is the cost of the adaptive quantizers. A reference row,
``reactnet_resnet20(method="ste_sign")`` (larq's ``ste_sign`` on inputs and kernels, HardTanh:
the plain baseline of ``benchmarks/fixed_budget.py``), shows the cost of the whole method,
quantizers and activations together.

``--policy mixed_bfloat16`` (or ``mixed_float16``): one binary model per method
(adabin_resnet20, reactnet_resnet20, dybnn_resnet20, dwr_reactnet_resnet20), the two
convolution-heavy DWR CIFAR models (dwr_vgg_small, dwr_resnet18_cifar) and the float twin
float_adabin_resnet20 (a float twin: what the convolutions alone gain), each built under the policy and under float32;
the ratio is float32 step time / policy step time (> 1: the policy is faster), of the
medians and of the lower quartiles of the per-step times. The table counts the steps of at
least 1.5x the lower quartile per policy ("stalled steps"). Steps run as ``model.fit`` runs
them (``_fit_step.py``: ``train_on_batch`` waits for tf.data's autotuning thread). The CPU's
bfloat16 flags are printed: without AVX512-BF16 or AMX TensorFlow emulates bfloat16.

Each model is compiled (SGD momentum 0.9 + coupled weight decay, as the recipes) and warmed
up; then ``rounds`` rounds each time ``steps`` training steps per model (the model's train
function on one iterator, as ``model.fit``), models interleaved so that load changes on a
shared machine hit them alike. Every step is timed.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive  # noqa: E402,F401  (first: makes tf.keras Keras 2 on TF >= 2.16)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from larq_adaptive.keras2 import set_random_seed  # noqa: E402
from larq_adaptive.layers import PaddedQuantConv2D  # noqa: E402
from larq_adaptive.models import get_model  # noqa: E402
from larq_adaptive.training import CoupledWeightDecay  # noqa: E402
from larq_adaptive.training.runtime import bfloat16_cpu_line  # noqa: E402
from _fit_step import fit_step  # noqa: E402  (this directory)
import _results  # noqa: E402  (this directory)

ADAPTIVE = {"adabin_resnet20": "all", "reactnet_resnet20": "reactnet", "dybnn_resnet20": "reactnet"}
PLAIN = "+ste_sign"
REFERENCE = "plain_ste_sign_resnet20"
MODELS = [*ADAPTIVE, *(name + PLAIN for name in ADAPTIVE), REFERENCE]
POLICY_MODELS = {"adabin_resnet20": "all", "reactnet_resnet20": "reactnet",
                 "dybnn_resnet20": "reactnet", "dwr_reactnet_resnet20": "all",
                 "dwr_vgg_small": "all", "dwr_resnet18_cifar": "all",
                 "float_adabin_resnet20": "all"}


def with_ste_sign(model):
    """The same network with larq's plain ``ste_sign`` quantizers in every binary conv."""

    def clone(layer):
        if isinstance(layer, PaddedQuantConv2D) and layer.input_quantizer is not None:
            config = {**layer.get_config(), "input_quantizer": "ste_sign",
                      "kernel_quantizer": "ste_sign"}
            config.pop("decomposed", None)
            return PaddedQuantConv2D.from_config(config)
        return layer.__class__.from_config(layer.get_config())

    return tf.keras.models.clone_model(model, clone_function=clone)


def make(name):
    """(model, weight-decay group) for a benchmark row name (``name@policy``: built under
    that global policy)."""
    name, _, policy = name.partition("@")
    if policy:
        tf.keras.mixed_precision.set_global_policy(policy)
        try:
            return get_model(name), POLICY_MODELS[name]
        finally:
            tf.keras.mixed_precision.set_global_policy("float32")
    if name == REFERENCE:
        return get_model("reactnet_resnet20", method="ste_sign"), "all"
    if name.endswith(PLAIN):
        base = name[: -len(PLAIN)]
        return with_ste_sign(get_model(base)), ADAPTIVE[base]
    return get_model(name), ADAPTIVE[name]


def build(name, batch_size):
    model, decay = make(name)
    CoupledWeightDecay(model, decay).coefficient.assign(1e-4)
    model.compile(
        tf.keras.optimizers.SGD(0.01, momentum=0.9),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    step = fit_step(model, x, y)
    for _ in range(3):  # trace + warm up
        step()
    return step


def lower_quartile(samples):
    """The first quartile, interpolated between samples (never below the fastest step)."""
    return statistics.quantiles(samples, n=4, method="inclusive")[0] if len(samples) > 1 \
        else samples[0]


def time_steps(names, args):
    """Seconds of every training step of each model, in interleaved rounds."""
    steps = {name: build(name, args.batch_size) for name in names}
    times = {name: [] for name in names}
    for _ in range(args.rounds):
        for name, step in steps.items():
            for _ in range(args.steps):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return times


def stalled(samples):
    """How many steps took at least 1.5x the lower quartile (stalls, see the module doc)."""
    return sum(s >= 1.5 * lower_quartile(samples) for s in samples)


def compare_policies(args):
    models = args.models or list(POLICY_MODELS)
    names = [f"{name}@{policy}" for name in models for policy in ("float32", args.policy)]
    times = time_steps(names, args)
    print(f"| model | float32 step (ms) | {args.policy} step (ms) | speed-up (medians) | "
          "speed-up (lower quartiles) | stalled steps |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name in models:
        full, reduced = times[f"{name}@float32"], times[f"{name}@{args.policy}"]
        speedup = statistics.median(full) / statistics.median(reduced)
        quartile = lower_quartile(full) / lower_quartile(reduced)
        results[name] = {"float32_ms": round(1e3 * statistics.median(full), 1),
                         f"{args.policy}_ms": round(1e3 * statistics.median(reduced), 1),
                         "speedup": round(speedup, 3), "speedup_lower_quartile": round(quartile, 3),
                         "stalled_steps": {"float32": stalled(full), args.policy: stalled(reduced),
                                           "of": len(full)},
                         "samples_ms": {"float32": [round(1e3 * v, 1) for v in full],
                                        args.policy: [round(1e3 * v, 1) for v in reduced]}}
        print(f"| {name} | {1e3 * statistics.median(full):.1f} | "
              f"{1e3 * statistics.median(reduced):.1f} | {speedup:.2f}x | {quartile:.2f}x | "
              f"{stalled(full)} / {stalled(reduced)} of {len(full)} |")
    return results


def compare_quantizers(args):
    times = time_steps(MODELS, args)
    print("| model | median step (ms) | lower quartile (ms) | vs same network + ste_sign "
          "(medians / lower quartiles) | vs plain ste_sign ResNet-20 (medians) | stalled steps |")
    print("|---|---|---|---|---|---|")
    results = {}
    reference = statistics.median(times[REFERENCE])
    for name, samples in times.items():
        median, quartile = statistics.median(samples), lower_quartile(samples)
        plain = times.get(name + PLAIN)
        ratios = (median / statistics.median(plain), quartile / lower_quartile(plain)) if plain else None
        results[name] = {"median_ms": round(1e3 * median, 1),
                         "lower_quartile_ms": round(1e3 * quartile, 1),
                         "ratio_to_ste_sign_twin": round(ratios[0], 3) if ratios else None,
                         "ratio_to_ste_sign_twin_lower_quartile":
                             round(ratios[1], 3) if ratios else None,
                         "ratio_to_reference": round(median / reference, 3),
                         "stalled_steps": stalled(samples),
                         "samples_ms": [round(1e3 * s, 1) for s in samples]}
        twin = f"{ratios[0]:.2f}x / {ratios[1]:.2f}x" if ratios else "-"
        print(f"| {name} | {1e3 * median:.1f} | {1e3 * quartile:.1f} | {twin} | "
              f"{median / reference:.2f}x | {stalled(samples)} of {len(samples)} |")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--inter-op-threads", type=int, default=0,
                        help="TensorFlow inter-op threads (0: TensorFlow's default, one per core)")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra-op threads (0: TensorFlow's default)")
    parser.add_argument("--policy", choices=("mixed_bfloat16", "mixed_float16"),
                        help="compare every method under this policy with float32")
    parser.add_argument("--models", nargs="+", choices=tuple(POLICY_MODELS), metavar="NAME",
                        help=f"with --policy: only these (default: {' '.join(POLICY_MODELS)})")
    args = parser.parse_args(argv)
    env = _results.environment(__file__, argv)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    set_random_seed(0)
    print(f"batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps, "
          f"{os.cpu_count()} CPU(s), intra-op threads {args.threads or 'default'}, "
          f"inter-op threads {args.inter_op_threads or 'default'}, TensorFlow {tf.__version__}")
    print(bfloat16_cpu_line())
    results = compare_policies(args) if args.policy else compare_quantizers(args)
    record = {"batch_size": args.batch_size, "rounds": args.rounds, "steps": args.steps,
              "inter_op_threads": args.inter_op_threads, "threads": args.threads,
              "policy": args.policy, "cpu": bfloat16_cpu_line(), "tensorflow": tf.__version__,
              "results": results}
    _results.write(f"train_step_{args.policy}" if args.policy else "train_step", record, env)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
