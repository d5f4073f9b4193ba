"""Is the input pipeline ever the bottleneck? Images/s and peak RSS of the training input
pipeline alone against the model's own training-step rate, on this machine.

    python benchmarks/input_pipeline.py [--cifar-jpeg DIR] [--synthetic-dir DIR]
                                        [--synthetic-count 3000] [--json out.json] [--smoke]

Scenarios, each in its own subprocess (peak RSS = ``ru_maxrss`` of that process alone, so
one scenario cannot hide another's memory):

- ``check``: the fast corrupt-file check of a class-folder dataset
  (:func:`larq_adaptive.data.list_image_folder`) on the JPEG CIFAR-10 train set (50,000
  files), page cache warm, then cold (each file's pages evicted with ``posix_fadvise``).
- ``cifar-input``: :func:`larq_adaptive.training.pipeline.make_dataset` with ``training=True``
  and adabin_resnet20's recipe (CIFAR augmentation: pad 4, random 32x32 crop, flip) on the JPEG
  CIFAR-10 class folders, batch 128; ``cifar-npz-input``: the same on the lossless ``.npz``
  shards (arrays in RAM), for comparison.
- ``cifar-model``: adabin_resnet20 training steps (as ``model.fit``) at batch 128 (SGD, as its recipe).
- ``imagenet-input``: the same pipeline with reactnet_resnet18's recipe (random resized crop
  224, flip) on a synthetic folder of 224-500 px JPEGs (generated once into
  ``--synthetic-dir``), batch 64; ``imagenet-model``: reactnet_resnet18 training steps
  at batch 64 (Adam).

Input rates are measured after one warm-up batch over ``--batches`` batches; model rates
after two warm-up steps over ``--steps`` steps. The 1-minute load average is printed with
each row: the machine may be shared. ``--smoke``: tiny generated folders, batch 2, one
step, every scenario in one process (the CI check that the script runs; its RSS means
nothing).
"""

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("LQA_SHARED_DIR") or HERE.parent.parent / "shared")
CIFAR_JPEG_TAR = SHARED / "data" / "cifar10-jpeg" / "train.tar.gz"
CIFAR_NPZ = SHARED / "data" / "cifar10-train-original"


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_jpegs(folder, count, sizes, classes=10, seed=0):
    """``count`` random JPEGs of sizes drawn from ``sizes`` in ``classes`` folders: smooth
    colour fields plus pixel noise, quality 92 (at ImageNet-like sizes about 60-70 KB each,
    between a smooth image and ImageNet's ~110 KB average)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    for i in range(count):
        h, w = rng.choice(sizes), rng.choice(sizes)
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3)).astype(np.float32)
        image = tf.image.resize(small[None], (h, w))[0].numpy() + rng.normal(0, 20, (h, w, 3))
        target = Path(folder) / f"class_{i % classes}" / f"{i:06d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        encoded = tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8), quality=92)
        target.write_bytes(encoded.numpy())


# ------------------------------------------------------------------ one scenario (child)


def input_rate(model_name, source, batch_size, batches):
    from larq_adaptive.models import model_entry
    from larq_adaptive.training import pipeline
    from larq_adaptive.training.recipes import get_recipe

    entry = model_entry(model_name)
    dataset = pipeline.make_dataset(
        source, entry.input_shape[:2], batch_size, training=True,
        preprocessing=entry.preprocessing, augmentation=get_recipe(entry.recipe).augmentation,
        repeat=True,
    )
    iterator = iter(dataset)
    next(iterator)  # warm-up: tracing, first decodes
    start = time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
    images.numpy()
    return batches * batch_size / (time.perf_counter() - start)


def model_rate(model_name, batch_size, steps, optimizer):
    import numpy as np
    import tensorflow as tf

    from _fit_step import fit_step  # this directory
    from larq_adaptive.models import get_model, model_entry

    entry = model_entry(model_name)
    model = get_model(model_name, input_shape=entry.input_shape, num_classes=10, weights=None)
    model.compile(optimizer, tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, *entry.input_shape)).astype(np.float32)
    y = rng.integers(0, 10, batch_size)
    step = fit_step(model, x, y)
    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def folder_check(folder):
    from larq_adaptive import data

    start = time.perf_counter()
    files, _, _, _ = data.list_image_folder(folder)
    warm = time.perf_counter() - start
    for file in files:
        fd = os.open(file, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    start = time.perf_counter()
    data.list_image_folder(folder)
    return len(files), warm, time.perf_counter() - start


def run_scenario(name, options):
    import larq_adaptive  # noqa: F401  (first: Keras 2)
    import tensorflow as tf

    from larq_adaptive.training import pipeline

    row = {"scenario": name}
    if name == "check":
        files, warm, cold = folder_check(options["cifar_jpeg"])
        row.update(files=files, warm_s=round(warm, 2), cold_s=round(cold, 2),
                   warm_us_per_file=round(warm / files * 1e6, 1),
                   cold_us_per_file=round(cold / files * 1e6, 1))
    elif name.endswith("-input"):
        from larq_adaptive import data

        if name == "cifar-npz-input":  # the training arrays only (no validation copy)
            images, labels = data.load_npz_dir(options["cifar_npz"])
            source = pipeline.Source("arrays", images, labels, int(labels.max()) + 1)
        else:
            folder = options["cifar_jpeg" if name == "cifar-input" else "synthetic"]
            files, labels, names, _ = data.list_image_folder(folder)
            source = pipeline.Source("files", files, labels, len(names))
        model = options["imagenet_model" if name == "imagenet-input" else "cifar_model"]
        batch = options["imagenet_batch" if name == "imagenet-input" else "cifar_batch"]
        if source.kind == "files":
            row["mean_file_kb"] = round(sum(os.path.getsize(f) for f in source.x)
                                        / len(source) / 1024, 1)
        row.update(model=model, images=len(source), batch=batch,
                   images_per_s=round(input_rate(model, source, batch, options["batches"]), 1))
    else:
        imagenet = name == "imagenet-model"
        model = options["imagenet_model" if imagenet else "cifar_model"]
        batch = options["imagenet_batch" if imagenet else "cifar_batch"]
        optimizer = tf.keras.optimizers.Adam(1e-3) if imagenet else tf.keras.optimizers.SGD(
            0.1, momentum=0.9)
        row.update(model=model, batch=batch,
                   images_per_s=round(model_rate(model, batch, options["steps"], optimizer), 1))
    row["peak_rss_mb"] = round(peak_rss_mb())
    row["load_1min"] = round(os.getloadavg()[0], 2)
    return row


# ------------------------------------------------------------------------ driver (parent)


def prepare(args, workdir):
    """The options every scenario gets; extracts / generates the folders it needs."""
    options = {"batches": args.batches, "steps": args.steps, "cifar_model": "adabin_resnet20",
               "imagenet_model": args.imagenet_model, "cifar_batch": 128, "imagenet_batch": 64}
    if args.smoke:
        options.update(batches=2, steps=1, cifar_batch=2, imagenet_batch=2,
                       cifar_model="adabin_resnet20", imagenet_model="adabin_resnet20")
        small, large = Path(workdir) / "small", Path(workdir) / "large"
        write_jpegs(small, 8, [32], classes=2)
        write_jpegs(large, 8, [40, 64], classes=2, seed=1)
        options.update(cifar_jpeg=str(small), synthetic=str(large), cifar_npz=None)
        return options, ["check", "cifar-input", "imagenet-input", "cifar-model"]
    cifar = Path(args.cifar_jpeg) if args.cifar_jpeg else Path(workdir) / "cifar10-jpeg" / "train"
    if not cifar.is_dir():
        print(f"extracting {CIFAR_JPEG_TAR} to {cifar.parent}", flush=True)
        with tarfile.open(CIFAR_JPEG_TAR) as archive:
            archive.extractall(cifar.parent, filter="data")
    synthetic = Path(args.synthetic_dir)
    if not synthetic.is_dir() or sum(1 for _ in synthetic.rglob("*.jpg")) < args.synthetic_count:
        print(f"writing {args.synthetic_count} synthetic JPEGs to {synthetic}", flush=True)
        write_jpegs(synthetic, args.synthetic_count, [256, 333, 375, 400, 500])
    options.update(cifar_jpeg=str(cifar), synthetic=str(synthetic), cifar_npz=str(CIFAR_NPZ))
    scenarios = ["check", "cifar-input", "cifar-npz-input", "cifar-model", "imagenet-input",
                 "imagenet-model"]
    return options, [s for s in scenarios if s != "cifar-npz-input" or CIFAR_NPZ.is_dir()]


def table(rows):
    lines = ["| scenario | model | batch | images/s | peak RSS (MB) | load (1 min) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        if row["scenario"] == "check":
            continue
        lines.append(f"| {row['scenario']} | {row['model']} | {row['batch']} | "
                     f"{row['images_per_s']:.0f} | {row['peak_rss_mb']} | {row['load_1min']} |")
    check = next((r for r in rows if r["scenario"] == "check"), None)
    if check:
        lines.append(f"\ncorrupt-file check of {check['files']} files: {check['warm_s']} s warm "
                     f"({check['warm_us_per_file']} us/file), {check['cold_s']} s cold "
                     f"({check['cold_us_per_file']} us/file); peak RSS {check['peak_rss_mb']} MB")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar-jpeg", help="extracted JPEG CIFAR-10 train/ class folders "
                        f"(default: extract {CIFAR_JPEG_TAR} to a temporary folder)")
    parser.add_argument("--synthetic-dir", default=os.path.join(tempfile.gettempdir(),
                                                                "lqa_synthetic_224_jpeg"))
    parser.add_argument("--synthetic-count", type=int, default=3000)
    parser.add_argument("--imagenet-model", default="reactnet_resnet18")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", help="write the rows to this file")
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI)")
    parser.add_argument("--scenario", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.scenario:  # child: one scenario, one JSON line
        print("ROW " + json.dumps(run_scenario(args.scenario, json.loads(args.options))))
        return 0
    print(f"{os.cpu_count()} CPU(s), load average {os.getloadavg()} at start", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        options, scenarios = prepare(args, workdir)
        rows = []
        for name in scenarios:
            if args.smoke:  # one process: a CI check that every scenario runs
                rows.append(run_scenario(name, options))
                print(json.dumps(rows[-1]), flush=True)
                continue
            result = subprocess.run(
                [sys.executable, __file__, "--scenario", name, "--options", json.dumps(options)],
                capture_output=True, text=True,
            )
            found = [line for line in result.stdout.splitlines() if line.startswith("ROW ")]
            if result.returncode or not found:
                print(f"scenario {name} failed:\n{result.stderr[-3000:]}", file=sys.stderr)
                return 1
            rows.append(json.loads(found[-1][4:]))
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    print(f"load average {os.getloadavg()} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
