"""Where a train step's time goes, by op group, in float32 and under a mixed-precision policy,
from the TensorFlow profiler: how fast the ops outside convolutions would have to get for a
target speed-up.

    python benchmarks/op_time.py [--policy mixed_bfloat16] [--models NAME ...] [--steps 5]
                                 [--batch-size 128] [--inter-op-threads 1] [--target 1.5]
                                 [--json out.json]

Each model of ``benchmarks/train_step.py --policy`` (the same builds, compiled and warmed up
the same way) runs ``steps`` training steps per policy, each profiled on its own;
the fastest is shown (step times vary on the shared VM). By default ops run
one at a time (one inter-op thread; each op still uses every core through the intra-op
pool), so a step's time is the sum of its ops' times: the ``ops / step`` column (the summed
op time over the measured step time) says how much of the step the profile covers. Each op
kernel the profiler records goes into one of three groups: convolutions (``Conv2D`` and its
two backprops, oneDNN's ``_MklNative*`` included), batch normalization (forward and
gradient), and everything else (element-wise ops, reductions, pads and slices, the
optimizer; also the 1x1 depthwise convolutions that compute per-channel maps, see
``larq_adaptive.channelwise``). Columns, per step:

- each group's time in float32 and under the policy, and its speed-up;
- ``ops speed-up``: float32's summed op time over the policy's;
- ``at break-even``: the speed-up the ops would have if every op outside convolutions and
  batch normalization ran exactly as fast as in float32 (``(C32 + B32 + O32) /
  (Cp + Bp + O32)``, ``p`` the policy): what the convolutions and BN give alone;
- ``other speed-up needed``: how much faster than in float32 the other ops would have to run
  under the policy for the ops to reach ``--target`` (``O32 / (T32 / target - Cp - Bp)``,
  ``T32`` float32's total; "never" when convolutions and BN alone take longer than that).

With ``--inter-op-threads 0`` (TensorFlow's default) ops overlap, and the op times, summed
over threads, include the time overlapping ops wait for each other. The largest "other" op
types follow per model. ``benchmarks/train_step.py`` gives the wall-time ratios at default
threading; this script says where they come from.
"""

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive  # noqa: E402,F401  (first: makes tf.keras Keras 2 on TF >= 2.16)
import tensorflow as tf  # noqa: E402
from tensorflow.tsl.profiler.protobuf import xplane_pb2  # noqa: E402  (TF 2.15-2.19)

from larq_adaptive.training.runtime import bfloat16_cpu_line  # noqa: E402
from train_step import POLICY_MODELS, build  # noqa: E402  (this directory)

GROUPS = ("conv", "batch_norm", "other")


def group_of(op_type):
    if "Conv2D" in op_type:
        return "conv"
    if "BatchNorm" in op_type:
        return "batch_norm"
    return "other"


def op_times(logdir):
    """Milliseconds by op type in one profile: the kernel events of the host plane, whose
    names are ``op_name:OpType`` (executor events have ``::``, eager calls a leading space)."""
    paths = list(Path(logdir).rglob("*.xplane.pb"))
    if len(paths) != 1:
        raise SystemExit(f"op_time.py: expected one profile in {logdir}, found {len(paths)}")
    (path,) = paths
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    times = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                op_type = name.rpartition(":")[2]
                if ":" in name and "::" not in name and op_type and not op_type.startswith(" "):
                    times[op_type] += event.duration_ps / 1e9
    return times


def profile(name, batch_size, steps):
    """(ms by op type, ms) of the fastest of ``steps`` steps, each profiled on its own: the
    undisturbed step (step times vary on the shared VM of docs/training.md)."""
    step = build(name, batch_size)
    profiles = []
    for _ in range(steps):
        with tempfile.TemporaryDirectory() as logdir:
            tf.profiler.experimental.start(logdir)
            try:
                start = time.perf_counter()
                step()
                wall = 1e3 * (time.perf_counter() - start)
            finally:
                tf.profiler.experimental.stop()
            profiles.append((op_times(logdir), wall))
    times, wall = min(profiles, key=lambda profile: profile[1])
    if not any(group_of(op) == "conv" for op in times):
        raise SystemExit(f"op_time.py: the profile of {name} has no convolution kernels "
                         "(this TensorFlow's profiler names ops differently)")
    return times, wall


def ratio(numerator, denominator):
    return numerator / denominator if denominator > 0 else float("inf")


def needed_speedup(full, reduced, target):
    """How much faster the other ops must get under the policy for ``target``: None when
    convolutions and batch normalization alone exceed the target's time."""
    budget = sum(full.values()) / target - reduced["conv"] - reduced["batch_norm"]
    return full["other"] / budget if budget > 0 else None


def compare(args):
    models = args.models or list(POLICY_MODELS)
    policies = ("float32", args.policy)
    short = args.policy.replace("mixed_", "")
    print(f"| model | conv (ms) | conv speed-up | batch norm (ms) | other (ms) | other speed-up "
          f"| ops speed-up | at break-even | other speed-up needed for {args.target}x "
          f"| ops / step |  [float32 -> {short}, op ms per step]")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    for name in models:
        profiles = {policy: profile(f"{name}@{policy}", args.batch_size, args.steps)
                    for policy in policies}
        times = {policy: profiles[policy][0] for policy in policies}
        walls = {policy: profiles[policy][1] for policy in policies}  # of that step
        group = {policy: {g: sum(v for op, v in times[policy].items() if group_of(op) == g)
                          for g in GROUPS} for policy in policies}
        full, reduced = group["float32"], group[args.policy]
        total_full, total_reduced = sum(full.values()), sum(reduced.values())
        coverage = [total_full / walls["float32"], total_reduced / walls[args.policy]]
        break_even = total_full / (reduced["conv"] + reduced["batch_norm"] + full["other"])
        needed = needed_speedup(full, reduced, args.target)
        top = [op for op, _ in times["float32"].most_common() if group_of(op) == "other"][:6]
        results[name] = {
            "float32_ms": {g: round(v, 1) for g, v in full.items()},
            f"{args.policy}_ms": {g: round(v, 1) for g, v in reduced.items()},
            "speedup": {g: round(ratio(full[g], reduced[g]), 3) for g in GROUPS},
            "ops_speedup": round(total_full / total_reduced, 3),
            "at_break_even": round(break_even, 3),
            "target": args.target,
            "other_speedup_needed": None if needed is None else round(needed, 3),
            "step_ms": {p: round(walls[p], 1) for p in policies},
            "ops_over_step": [round(c, 3) for c in coverage],
            "top_other_ops_ms": {op: [round(times[p].get(op, 0.0), 1) for p in policies]
                                 for op in top},
        }
        print(f"| {name} | {full['conv']:.0f} -> {reduced['conv']:.0f} | "
              f"{ratio(full['conv'], reduced['conv']):.2f}x | "
              f"{full['batch_norm']:.0f} -> {reduced['batch_norm']:.0f} | "
              f"{full['other']:.0f} -> {reduced['other']:.0f} | "
              f"{ratio(full['other'], reduced['other']):.2f}x | "
              f"{total_full / total_reduced:.2f}x | {break_even:.2f}x | "
              f"{'never' if needed is None else f'{needed:.2f}x'} | "
              f"{coverage[0]:.0%} / {coverage[1]:.0%} |", flush=True)
    print(f"\nlargest other ops (ms per step, float32 -> {short}):")
    for name, row in results.items():
        ops = ", ".join(f"{op} {a:.0f} -> {b:.0f}" for op, (a, b) in row["top_other_ops_ms"].items())
        print(f"- {name}: {ops}")
    return results


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", choices=("mixed_bfloat16", "mixed_float16"),
                        default="mixed_bfloat16")
    parser.add_argument("--models", nargs="+", choices=tuple(POLICY_MODELS), metavar="NAME")
    parser.add_argument("--steps", type=positive_int, default=5,
                        help="profiled steps per model and policy (the fastest is shown)")
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--target", type=float, default=1.5,
                        help="the speed-up the 'needed' column is for (default 1.5)")
    parser.add_argument("--inter-op-threads", type=int, default=1,
                        help="1 (default): ops one at a time; 0: TensorFlow's default")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    cpu = bfloat16_cpu_line()
    print(f"batch {args.batch_size}, the fastest of {args.steps} profiled steps per model and "
          f"policy, inter-op threads {args.inter_op_threads or 'default'}, "
          f"TensorFlow {tf.__version__}\n{cpu}")
    results = compare(args)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"policy": args.policy, "batch_size": args.batch_size, "steps": args.steps,
             "inter_op_threads": args.inter_op_threads,
             "tensorflow": tf.__version__, "cpu": cpu, "results": results}, indent=1))


if __name__ == "__main__":
    main()
