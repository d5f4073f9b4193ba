"""Top-1 of the imported official AdaBin ResNet-20 checkpoint on CIFAR-10.

    python benchmarks/official_adabin_cifar10.py [--shared ../shared] [--weights model.th]
                                                 [--decomposed] [--lossless-only]

Evaluates ``get_model("adabin_resnet20", weights=<official model.th>)`` on
1. the lossless CIFAR-10 test set (``data/cifar10-test-original/cifar10_test.npz``, 10,000
   images, original order): the official PyTorch code gives 87.97 % (8,797);
2. the JPEG copy (``data/cifar10-jpeg/test.tar.gz``, class folders, extracted to a temporary
   directory): 78.15 % (7,815).

The result goes to ``benchmarks/results/official_adabin_cifar10[_decomposed].json``
(docs/benchmarks.md). Differences of a few images from the official figures come from sign
flips of values very close to a threshold (the network is chaotic in float rounding).

JPEGs are decoded with PIL (``Image.open(f).convert("RGB")``) as the reference run did; the
script checks that this reproduces the probe batch's ``images_uint8`` bit for bit and reports
how many probe pixels ``tf.io.decode_jpeg`` would change. Inputs go through
``larq_adaptive.models.preprocess_input`` (x/255, ImageNet mean/std).
"""

import argparse
import io
import os
import sys
import tarfile
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive  # noqa: E402,F401  (first: makes tf.keras Keras 2 on TF >= 2.16)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from larq_adaptive.models import get_model, preprocess_input  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

MODEL = "adabin_resnet20"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck")
REFERENCE = {"lossless": 87.97, "jpeg": 78.15}
OFFICIAL_PROTOCOL = 9984  # 78 batches of 128


def default_shared():
    return Path(__file__).resolve().parents[2] / "shared"


def decode_pil(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)


def decode_tf(data):
    return tf.io.decode_jpeg(data, channels=3).numpy()


def read_jpeg_folder(root, decode=decode_pil):
    """(images, labels, relative paths) of ``root/<class>/*.jpg``, classes and files sorted."""
    images, labels, files = [], [], []
    for label, name in enumerate(CLASSES):
        for path in sorted((Path(root) / name).glob("*.jpg")):
            images.append(decode(path.read_bytes()))
            labels.append(label)
            files.append(f"{name}/{path.name}")
    return np.stack(images), np.asarray(labels), files


def correct_predictions(model, images, labels, batch_size=250):
    """Boolean array: is the top-1 prediction of each image right?"""
    hits = []
    for start in range(0, len(images), batch_size):
        x = preprocess_input(images[start:start + batch_size], MODEL)
        logits = model(x, training=False).numpy()
        hits.append(logits.argmax(axis=1) == labels[start:start + batch_size])
    return np.concatenate(hits)


def report(title, hits, reference, seconds):
    """Print one line and return the figures of ``hits`` (booleans, one per image)."""
    print(f"{title}: top-1 {100 * hits.mean():.2f} % ({hits.sum()}/{hits.size}) "
          f"[official PyTorch: {reference} %]; first {OFFICIAL_PROTOCOL} images (the official "
          f"drop_last loader): {100 * hits[:OFFICIAL_PROTOCOL].mean():.2f} % ({seconds:.0f} s)")
    return {"top1": 100 * float(hits.mean()), "correct": int(hits.sum()), "images": int(hits.size),
            "top1_first_9984": 100 * float(hits[:OFFICIAL_PROTOCOL].mean()),
            "official_pytorch_top1": reference, "seconds": round(seconds, 1)}


def check_decoders(root, probe, files, images):
    """Print how many probe pixel values PIL and tf.io.decode_jpeg change vs the probe."""
    rows = [files.index(str(f)) for f in probe["files"]]
    decoded = {
        "PIL": images[rows],
        "tf.io.decode_jpeg": np.stack(
            [decode_tf((Path(root) / str(f)).read_bytes()) for f in probe["files"]]
        ),
    }
    counts = {}
    for name, pixels in decoded.items():
        counts[name] = int((pixels != probe["images_uint8"]).sum())
        print(f"  {name}: {counts[name]} of {probe['images_uint8'].size} probe pixel values differ")
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--weights", type=Path, default=None,
                        help="official model.th or state_dict.npz (default: the shared copy)")
    parser.add_argument("--decomposed", action="store_true",
                        help="evaluate the LCE-deployable decomposed AdaBin convs instead")
    parser.add_argument("--lossless-only", action="store_true", help="skip the JPEG copy")
    args = parser.parse_args(argv)
    env = _results.environment(__file__, argv)
    reference = args.shared / "reference" / "adabin_resnet20_cifar10"
    weights = args.weights or reference / "model.th"
    model = get_model(MODEL, weights=weights, decomposed=args.decomposed)

    start = time.time()
    with np.load(args.shared / "data" / "cifar10-test-original" / "cifar10_test.npz") as data:
        images, labels = data["images"], data["labels"]
    hits = correct_predictions(model, images, labels)
    results = {"form": "decomposed (LCE)" if args.decomposed else "Keras",
               "lossless": report("lossless CIFAR-10 test set", hits, REFERENCE["lossless"],
                                  time.time() - start)}
    name = "official_adabin_cifar10" + ("_decomposed" if args.decomposed else "")
    if args.lossless_only:
        _results.write(name, results, env)
        return
    start = time.time()
    tar_path = args.shared / "data" / "cifar10-jpeg" / "test.tar.gz"
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(tar_path) as archive:
            archive.extractall(tmp, filter="data")
        root = Path(tmp) / "test"
        jpeg_images, jpeg_labels, files = read_jpeg_folder(root)
        probe_path = reference / "probe.npz"
        if probe_path.exists():
            results["probe_pixels_changed"] = check_decoders(root, np.load(probe_path), files,
                                                             jpeg_images)
    hits = correct_predictions(model, jpeg_images, jpeg_labels)
    results["jpeg"] = report("JPEG CIFAR-10 test copy", hits, REFERENCE["jpeg"],
                             time.time() - start)
    _results.write(name, results, env)


if __name__ == "__main__":
    main()
