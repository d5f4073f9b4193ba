"""Datasets for training and evaluation (offline-first).

``load_npz_dir(path)``: a directory of ``.npz`` shards (or one ``.npz`` file) holding
``images`` (N, H, W, C) uint8 and ``labels`` (N,) integers, read with ``allow_pickle=False``
(loading is a security boundary: nothing is unpickled).
"""

import os
import time
from pathlib import Path

import numpy as np


def _shard_arrays(file):
    """(images uint8 NHWC, labels int64 (N,)) of one shard; ValueError naming it otherwise."""
    with np.load(file, allow_pickle=False) as shard:
        if "images" not in shard or "labels" not in shard:
            raise ValueError(f"{file} has no 'images'/'labels' arrays")
        images, labels = shard["images"], shard["labels"]
    if images.ndim != 4 or labels.ndim not in (1, 2) or len(images) != len(labels) or (
            labels.ndim == 2 and labels.shape[1] != 1):
        raise ValueError(f"{file}: expected images (N, H, W, C) and N labels, got images "
                         f"{images.shape} and labels {labels.shape}")
    if images.dtype != np.uint8:
        lossless = np.issubdtype(images.dtype, np.integer) and (
            images.size == 0 or (images.min() >= 0 and images.max() <= 255))
        if not lossless:
            raise ValueError(f"{file}: images are {images.dtype}, expected uint8 pixels 0-255")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{file}: labels are {labels.dtype}, expected integer class indices")
    return images.astype(np.uint8, copy=False), labels.reshape(-1).astype(np.int64)


def load_npz_dir(path):
    """(images uint8 NHWC, labels int64) concatenated over every ``*.npz`` in ``path``
    (sorted by name), or from ``path`` itself if it is a file. ValueError for shards of
    different image shapes, non-integer labels or pixels outside uint8."""
    path = Path(os.fspath(path))
    files = [path] if path.is_file() else sorted(path.glob("*.npz"))
    if not files:
        raise ValueError(f"no .npz files in {path}")
    shards = [_shard_arrays(file) for file in files]
    shapes = {file: images.shape[1:] for file, (images, _) in zip(files, shards)}
    if len(set(shapes.values())) > 1:
        (first, a), (other, b) = next(iter(shapes.items())), next(
            (f, s) for f, s in shapes.items() if s != shapes[files[0]])
        raise ValueError(f"shards of different image shapes: {first.name} holds {a}, "
                         f"{other.name} {b}; resize them to one size")
    return (np.concatenate([images for images, _ in shards]),
            np.concatenate([labels for _, labels in shards]))


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
# Headers of the formats tf.io.decode_image reads; it sniffs the bytes, not the file name
# (ImageNet's train set holds a PNG named .JPEG), so any of them is accepted for any extension.
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a")
# The end markers whose absence means a truncated file (the decoder rejects a JPEG cut even
# just before its end-of-image marker); looked for in the last TAIL_BYTES bytes.
_END = {b"\xff\xd8\xff": b"\xff\xd9", b"\x89PNG\r\n\x1a\n": b"IEND"}
TAIL_BYTES = 4096
CHECK_THREADS = 16


def class_folders(path):
    """Sorted names of the sub-folders of ``path`` that hold at least one image file."""
    path = Path(os.fspath(path))
    return sorted(
        d.name for d in path.iterdir()
        if d.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir())
    )


def image_file_problem(file):
    """Why ``file`` cannot be a decodable image (None if it passes): the fast check of two
    small reads, the header (a JPEG, PNG, BMP or GIF signature, whatever the extension) and,
    for JPEG and PNG, the end marker in the last ``TAIL_BYTES`` bytes (a truncated copy). It
    does not decode: a file damaged in its middle passes and fails at decoding time."""
    try:
        fd = os.open(file, os.O_RDONLY)
        try:
            head = os.pread(fd, 16, 0)
            magic = next((m for m in _MAGIC if head.startswith(m)), None)
            if magic is None:
                return "empty file" if not head else "not a JPEG/PNG/BMP/GIF header"
            end = _END.get(magic)
            if end is not None:
                size = os.fstat(fd).st_size
                if end not in os.pread(fd, TAIL_BYTES, max(0, size - TAIL_BYTES)):
                    return "truncated (no end marker)"
        finally:
            os.close(fd)
    except OSError as error:
        return f"unreadable ({error.strerror or error})"
    return None


def check_image_file(file):
    """ValueError naming ``file`` if :func:`image_file_problem` finds one."""
    problem = image_file_problem(file)
    if problem is not None:
        raise ValueError(f"corrupt or unreadable image {file} ({problem})")


def _check_files(files, probe=1000, fast=40e-6):
    """:func:`image_file_problem` of every file: in this thread while the files answer in
    under ``fast`` seconds each (page cache, local disk: threads would only contend for the
    GIL), else in ``CHECK_THREADS`` threads (cold or network storage: they wait in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()
    problems = [image_file_problem(file) for file in files[:probe]]
    if (time.perf_counter() - start) < fast * probe:
        return problems + [image_file_problem(file) for file in files[probe:]]
    with ThreadPoolExecutor(CHECK_THREADS) as pool:
        return problems + list(pool.map(image_file_problem, files[probe:], chunksize=256))


def list_image_folder(path, class_names=None, skip_corrupt=False):
    """(file paths, int64 labels, class names, skipped files) of a ``path/<class>/<image>``
    tree; classes in alphabetical order (or ``class_names``' order), files sorted by name.
    Every file gets the fast check of :func:`image_file_problem` (:func:`_check_files`: in
    threads when the storage is slow). A bad file raises ValueError naming it (the
    first in that order), or is left out with ``skip_corrupt``: ``skipped`` lists
    ``(path, problem)``."""
    path = Path(os.fspath(path))
    found = class_folders(path)
    if not found:
        raise ValueError(f"no class folders of images in {path}")
    if class_names is not None and list(found) != list(class_names):
        raise ValueError(
            f"class folders of {path} ({', '.join(found)}) differ from the training classes "
            f"({', '.join(class_names)})"
        )
    files, labels = [], []
    for label, name in enumerate(found):
        with os.scandir(path / name) as entries:
            names = sorted(e.name for e in entries
                           if os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS)
        files.extend(os.path.join(path, name, n) for n in names)
        labels.extend([label] * len(names))
    problems = _check_files(files)
    skipped = [(f, p) for f, p in zip(files, problems) if p is not None]
    if skipped and not skip_corrupt:
        file, problem = skipped[0]
        more = f"; {len(skipped) - 1} more bad file(s)" if len(skipped) > 1 else ""
        raise ValueError(f"corrupt or unreadable image {file} ({problem}{more}); pass "
                         "--skip-corrupt to leave bad files out")
    keep = [p is None for p in problems]
    return (np.array([f for f, k in zip(files, keep) if k]),
            np.array([label for label, k in zip(labels, keep) if k], dtype=np.int64),
            found, skipped)


def load_digits(image_size=(32, 32), test_fraction=0.2):
    """scikit-learn's handwritten digits (1,797 real 8x8 grey images, 10 classes; shipped with
    scikit-learn, no download) as CIFAR-like data: grey 0-16 scaled to 0-255, bilinear-resized
    to ``image_size``, copied to 3 channels, uint8. A fixed stratified split (seed 0):
    ((train images, train labels), (test images, test labels))."""
    import tensorflow as tf
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    digits = sk_digits()
    grey = (digits.images.astype(np.float32) * (255.0 / 16.0))[..., None]
    resized = tf.image.resize(grey, image_size, method="bilinear").numpy()
    images = np.repeat(np.clip(np.round(resized), 0, 255).astype(np.uint8), 3, axis=-1)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=0, stratify=labels
    )
    return (x_train, y_train), (x_test, y_test)
