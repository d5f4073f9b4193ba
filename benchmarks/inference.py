"""Deployment benchmark: LCE file size and latency of our binary models beside larq-zoo's.

    python benchmarks/inference.py [--models adabin_resnet20 reactnet_resnet18:pad1 ...]
                                   [--threads 1 2] [--runs 20] [--warmup 3] [--out results.jsonl]

A model is a registered name, ``NAME:pad1`` for the same builder with ``pad_values=1.0``, or
``larq_zoo.BiRealNet`` / ``larq_zoo.QuickNet`` (untrained weights: neither size nor latency
depends on them). One run measures, per model:

- the TFLite file size after ``larq_adaptive.export.to_tflite``, how many binary convs became
  ``LceBconv2d`` and the share of the 1-bit MACs (``lqa.summary``) that run in them;
- the largest float constant shaped like a feature map, ``(1, h, w, c)`` (border
  corrections must stay a few ``C_out`` vectors, not ``(1, H, W, C_out)``);
- the single-image latency in LCE's interpreter for each ``--threads`` value: ``--warmup``
  untimed runs, then ``--runs`` rounds in which every (model, threads) pair runs once, in an
  order rotated each round (models interleaved, so that a busy spell of the shared machine
  hits every model alike). Reported: median, quartiles, min and max, and the ratio to
  Bi-Real Net's median, plus the median of the per-round ratios.

Read the latencies as ratios. On x86 the LCE interpreter runs its *reference* binary
kernels, not the optimised ARM kernels LCE is built for (LCE#420, LCE#803): these numbers say
nothing about a phone or a Raspberry Pi. The load average of the machine is printed with
the results, and a last line per model says whether every binary conv became
``LceBconv2d`` (exit 0 in both cases: the table is the result). The result goes to
``benchmarks/results/inference.json`` (``inference_sizes.json`` with ``--runs 0``).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive as lqa  # noqa: E402  (first: makes tf.keras Keras 2 on TF >= 2.16)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from larq_adaptive import export  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

BIREAL, QUICKNET = "larq_zoo.BiRealNet", "larq_zoo.QuickNet"
DEFAULT_MODELS = ("adabin_resnet20", "reactnet_resnet18", "reactnet_resnet18:pad1", BIREAL,
                  QUICKNET)
PAD1 = ":pad1"


def build(name, weights=None):
    """The Keras model of a ``--models`` entry (``weights``: a file ``get_model`` reads)."""
    if name.startswith("larq_zoo."):
        import larq_zoo

        cls = {"QuickNet": larq_zoo.sota.QuickNet, "BiRealNet": larq_zoo.literature.BiRealNet}
        return cls[name.split(".", 1)[1]](weights=None)
    from larq_adaptive.models import get_model

    if name.endswith(PAD1):
        return get_model(name[: -len(PAD1)], pad_values=1.0, weights=weights)
    return get_model(name, weights=weights)


def binary_macs(model, report):
    """(1-bit MACs of the model per lqa.summary, MACs of the convs that became LceBconv2d)."""
    profile = lqa.summary(model, print_fn=lambda *args, **kwargs: None)
    total = profile.op_count("mac", 1)
    became = {name for name, ok in report.convs if ok}
    in_bconv = sum(
        int(np.prod(layer.kernel.shape)) * int(np.prod(layer.output_shape[1:3]))
        for layer in export.binary_conv_layers(model)
        if layer.name in became
    )
    return total, in_bconv


def largest_map_constant(flatbuffer):
    """Elements of the largest float32 constant shaped like a feature map, ``(1, h, w, c)``:
    where a border correction would be stored (a depthwise kernel also has this shape)."""
    return max(
        (int(np.prod(t.shape)) for t in export.constant_tensors(flatbuffer)
         if t.type == "FLOAT32" and len(t.shape) == 4 and t.shape[0] == 1),
        default=0,
    )


def convert(name, weights=None):
    tf.keras.backend.clear_session()
    model = build(name, weights)
    start = time.perf_counter()
    report = export.to_tflite(model)
    total, in_bconv = binary_macs(model, report)
    return report, {
        "model": name,
        "weights": "trained (" + os.path.basename(weights) + ")" if weights else "untrained",
        "binary_convs": len(report.convs),
        "lce_bconv2d": report.histogram[export.BCONV_OP],
        "binary_macs_M": total / 1e6,
        "binary_macs_in_bconv_pct": 100.0 * in_bconv / total if total else float("nan"),
        "float_convs_left": report.histogram["CONV_2D"],
        "tflite_MiB": report.size / 2**20,
        "largest_map_constant": largest_map_constant(report.flatbuffer),
        "gather_ops": report.histogram["GATHER"],
        "convert_s": time.perf_counter() - start,
        "input_shape": list(model.input_shape[1:]),
    }


def time_interleaved(interpreters, images, runs, warmup):
    """{key: [seconds]}: ``warmup`` untimed runs each, then ``runs`` rounds of one timed run
    per key, the order rotated by one key each round."""
    keys = list(interpreters)
    for key in keys:
        for _ in range(warmup):
            interpreters[key].predict(images[key])
    times = {key: [] for key in keys}
    for round_index in range(runs):
        shift = round_index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            start = time.perf_counter()
            interpreters[key].predict(images[key])
            times[key].append(time.perf_counter() - start)
    return times


def statistics(seconds):
    ms = 1e3 * np.asarray(seconds)
    q25, median, q75 = np.percentile(ms, [25, 50, 75])
    return {"median_ms": median, "q25_ms": q25, "q75_ms": q75, "min_ms": ms.min(),
            "max_ms": ms.max(), "runs": len(ms)}


def latency_rows(flatbuffers, shapes, threads, runs, warmup):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreters, images = {}, {}
    for name, flatbuffer in flatbuffers.items():
        image = np.random.default_rng(0).normal(size=(1, *shapes[name])).astype(np.float32)
        for count in threads:
            interpreters[name, count] = Interpreter(flatbuffer, num_threads=count)
            images[name, count] = image
    load_before = os.getloadavg()
    times = time_interleaved(interpreters, images, runs, warmup)
    load_after = os.getloadavg()
    rows = []
    for name, count in interpreters:
        row = {"model": name, "threads": count, **statistics(times[name, count])}
        if (BIREAL, count) in times:
            mine, bireal = np.asarray(times[name, count]), np.asarray(times[BIREAL, count])
            row["ratio_of_medians"] = np.median(mine) / np.median(bireal)
            paired = mine / bireal
            row["paired_ratio_median"] = float(np.median(paired))
            row["paired_ratio_q25"], row["paired_ratio_q75"] = np.percentile(paired, [25, 75])
        rows.append(row)
    return rows, (load_before, load_after)


SIZE_COLUMNS = (
    ("model", "model", "{}"),
    ("binary_convs", "binary convs", "{}"),
    ("lce_bconv2d", "LceBconv2d", "{}"),
    ("binary_macs_in_bconv_pct", "1-bit MACs in LceBconv2d", "{:.1f} %"),
    ("float_convs_left", "float CONV_2D", "{}"),
    ("largest_map_constant", "largest (1,h,w,c) float constant", "{}"),
    ("tflite_MiB", "file (MiB)", "{:.3f}"),
    ("size_vs_bireal", "x Bi-Real", "{:.3f}"),
)
LATENCY_COLUMNS = (
    ("model", "model", "{}"),
    ("threads", "threads", "{}"),
    ("median_ms", "median (ms)", "{:.1f}"),
    ("q25_ms", "IQR (ms)", "{:.1f}"),
    ("min_ms", "min-max (ms)", "{:.1f}"),
    ("ratio_of_medians", "median / Bi-Real median", "{:.2f}"),
    ("paired_ratio_median", "per-round ratio: median [IQR]", "{:.2f}"),
)


def _cell(row, key, fmt):
    if key == "q25_ms":
        return f"{row['q25_ms']:.1f}-{row['q75_ms']:.1f}"
    if key == "min_ms":
        return f"{row['min_ms']:.1f}-{row['max_ms']:.1f}"
    if key == "paired_ratio_median" and key in row:
        return (f"{row[key]:.2f} [{row['paired_ratio_q25']:.2f}-"
                f"{row['paired_ratio_q75']:.2f}]")
    return fmt.format(row[key]) if key in row else "-"


def markdown(rows, columns):
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |",
             "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row, key, fmt) for key, _, fmt in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def coverage_lines(size_rows):
    """``OK|INCOMPLETE model: n/m binary convs are LceBconv2d`` per converted model."""
    return [f"{'OK' if row['binary_convs'] and row['lce_bconv2d'] == row['binary_convs'] else 'INCOMPLETE'} "
            f"{row['model']}: {row['lce_bconv2d']}/{row['binary_convs']} binary convs are LceBconv2d"
            for row in size_rows]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=20, help="timed rounds (0: sizes only)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs per model first")
    parser.add_argument("--weights", nargs="+", default=[], metavar="MODEL=PATH",
                        help="trained weights of a --models entry (e.g. adabin_resnet20=model.th): "
                             "the file size then is the size with trained weights")
    parser.add_argument("--out", help="append one JSON line per result to this file")
    args = parser.parse_args(argv)
    env = _results.environment(__file__, argv)
    if args.runs < 0 or args.warmup < 0 or min(args.threads) < 1:
        parser.error("--threads must be >= 1, --runs and --warmup >= 0")
    weights = dict(item.split("=", 1) for item in args.weights if "=" in item)
    if len(weights) != len(args.weights) or not set(weights) <= set(args.models):
        parser.error("--weights takes MODEL=PATH for models given in --models")
    if any(name.startswith("larq_zoo.") for name in weights):
        parser.error("--weights: larq-zoo models are converted untrained (weights=None)")
    missing = [path for path in weights.values() if not os.path.isfile(path)]
    if missing:
        parser.error(f"--weights: no file {missing[0]}")

    size_rows, flatbuffers, shapes = [], {}, {}
    for name in args.models:
        report, row = convert(name, weights.get(name))
        size_rows.append(row)
        flatbuffers[name], shapes[name] = report.flatbuffer, row["input_shape"]
        print(json.dumps(row), flush=True)
    bireal = {row["model"]: row for row in size_rows}.get(BIREAL)
    for row in size_rows:
        if bireal:
            row["size_vs_bireal"] = row["tflite_MiB"] / bireal["tflite_MiB"]

    latency, (load_before, load_after) = [], (os.getloadavg(), os.getloadavg())
    if args.runs:
        latency, (load_before, load_after) = latency_rows(
            flatbuffers, shapes, args.threads, args.runs, args.warmup
        )
    environment = {
        "tensorflow": tf.__version__, "larq_compute_engine": _version("larq_compute_engine"),
        "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
        "runs": args.runs, "warmup": args.warmup,
    }
    # --runs 0 (sizes only) is stored apart, so that it never replaces a timed run
    _results.write("inference" if args.runs else "inference_sizes",
                   {"sizes": size_rows, "latency": latency, "environment": environment}, env)
    if args.out:
        with open(args.out, "a") as f:
            for row in size_rows + latency + [environment]:
                f.write(json.dumps(row, default=float) + "\n")
    print()
    print(markdown(size_rows, SIZE_COLUMNS))
    print()
    if latency:
        print(markdown(latency, LATENCY_COLUMNS))
        print()
    timing = (f"{args.runs} timed rounds after {args.warmup} warm-up runs, models interleaved"
              if args.runs else "sizes only (--runs 0)")
    print(f"{timing}; LCE {environment['larq_compute_engine']} x86 interpreter (reference binary "
          f"kernels, not ARM's); {os.cpu_count()} CPUs, load average (1, 5, 15 min) "
          f"{_load(load_before)} before, {_load(load_after)} after")
    print()
    print("\n".join(coverage_lines(size_rows)))
    return 0


def _load(values):
    return ", ".join(f"{v:.2f}" for v in values)


def _version(package):
    from importlib.metadata import version

    return version(package)


if __name__ == "__main__":
    sys.exit(main())
