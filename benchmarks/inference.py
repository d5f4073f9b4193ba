"""Deployment benchmark: LCE export of the binary models beside larq-zoo baselines.

    python benchmarks/inference.py [--models adabin_resnet20 reactnet_a ...] [--threads 2]
                                   [--runs 1] [--out results.jsonl]

Per model: the TFLite file size after ``larq_adaptive.export.to_tflite``, the share of the
model's 1-bit MACs (``lqa.summary``) that run in ``LceBconv2d`` ops (goal 100 %), and the
single-image latency (one timed run after one warm-up; ``--runs N`` keeps the fastest of
N) of the LCE interpreter against the float twin (same graph, full-precision convs) in
TensorFlow's plain TFLite interpreter.

Caveat: on x86 the LCE interpreter runs *reference* binary kernels, not the optimised ARM
ones LCE is built for (LCE#420, LCE#803), so these latencies say nothing about ARM speed.
On a machine shared with other jobs, multi-threaded runs wait for busy cores (XNNPACK's
2-thread float ResNet-20 measured 18-837 ms over 6 runs where 1 thread took 1-2 ms).
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

OURS = ("adabin_resnet20", "reactnet_resnet18", "reactnet_a", "dybnn_reactnet_a")
BASELINES = ("larq_zoo.QuickNet", "larq_zoo.BiRealNet")


def _strip_quantizers(config):
    for key in ("input_quantizer", "kernel_quantizer", "depthwise_quantizer"):
        if key in config:
            config[key] = None
    return config


def build(name):
    """(binary model, float twin). Ours: the registry's ``float_<name>`` twin; larq-zoo:
    the same model with every quantizer removed."""
    if name.startswith("larq_zoo."):
        import larq_zoo

        cls = {"QuickNet": larq_zoo.sota.QuickNet, "BiRealNet": larq_zoo.literature.BiRealNet}
        model = cls[name.split(".", 1)[1]](weights=None)
        twin = tf.keras.models.clone_model(
            model,
            clone_function=lambda layer: type(layer).from_config(
                _strip_quantizers(layer.get_config())
            ),
        )
        return model, twin
    from larq_adaptive.models import available_models, get_model

    twin_name = f"float_{name}"
    twin = get_model(twin_name) if twin_name in available_models() else None
    return get_model(name), twin


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


def _time(run, image, runs):
    """Seconds of the fastest of ``runs`` timed runs, after one warm-up run."""
    run(image)  # warm-up (allocations, caches)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(image)
        times.append(time.perf_counter() - start)
    return min(times)


def lce_latency(flatbuffer, image, threads, runs=1):
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=threads)
    return _time(interpreter.predict, image, runs)


def tflite_latency(model, image, threads, runs=1):
    converter = tf.lite.TFLiteConverter.from_keras_model(export.deployable(model))
    interpreter = tf.lite.Interpreter(model_content=converter.convert(), num_threads=threads)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()

    def run(x):
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])

    return _time(run, image, runs)


def measure(name, threads, runs=1):
    tf.keras.backend.clear_session()
    model, twin = build(name)
    start = time.perf_counter()
    report = export.to_tflite(model)
    convert_s = time.perf_counter() - start
    total, in_bconv = binary_macs(model, report)
    image = np.random.default_rng(0).normal(size=(1, *model.input_shape[1:])).astype(np.float32)
    row = {
        "model": name,
        "binary_convs": len(report.convs),
        "lce_bconv2d": report.histogram[export.BCONV_OP],
        "binary_macs_M": total / 1e6,
        "binary_macs_in_bconv_pct": 100.0 * in_bconv / total if total else float("nan"),
        "tflite_MB": report.size / 2**20,
        "convert_s": convert_s,
        "threads": threads,
        "runs": runs,
        "lce_latency_ms": 1e3 * lce_latency(report.flatbuffer, image, threads, runs),
        "float_twin_latency_ms": (
            1e3 * tflite_latency(twin, image, threads, runs) if twin is not None
            else float("nan")
        ),
        "float_convs_left": report.histogram["CONV_2D"],
    }
    return row


COLUMNS = (
    ("model", "model", "{}"),
    ("binary_convs", "binary convs", "{}"),
    ("lce_bconv2d", "LceBconv2d", "{}"),
    ("binary_macs_M", "1-bit MACs (M)", "{:.1f}"),
    ("binary_macs_in_bconv_pct", "in LceBconv2d", "{:.1f} %"),
    ("float_convs_left", "float CONV_2D", "{}"),
    ("tflite_MB", "file (MiB)", "{:.2f}"),
    ("lce_latency_ms", "LCE x86 (ms)", "{:.0f}"),
    ("float_twin_latency_ms", "float twin TFLite (ms)", "{:.0f}"),
)


def markdown(rows):
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(OURS + BASELINES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="timed runs; the fastest is kept")
    parser.add_argument("--out", help="append one JSON line per model to this file")
    args = parser.parse_args(argv)
    rows = []
    for name in args.models:
        row = measure(name, args.threads, args.runs)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
