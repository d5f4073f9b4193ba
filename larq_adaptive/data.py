"""Datasets for training and evaluation (offline-first).

``load_npz_dir(path)``: a directory of ``.npz`` shards (or one ``.npz`` file) holding
``images`` (N, H, W, C) uint8 and ``labels`` (N,) integers, read with ``allow_pickle=False``
(loading is a security boundary: nothing is unpickled).
"""

import os
from pathlib import Path

import numpy as np


def load_npz_dir(path):
    """(images uint8 NHWC, labels int64) concatenated over every ``*.npz`` in ``path``
    (sorted by name), or from ``path`` itself if it is a file."""
    path = Path(os.fspath(path))
    files = [path] if path.is_file() else sorted(path.glob("*.npz"))
    if not files:
        raise ValueError(f"no .npz files in {path}")
    images, labels = [], []
    for file in files:
        with np.load(file, allow_pickle=False) as shard:
            if "images" not in shard or "labels" not in shard:
                raise ValueError(f"{file} has no 'images'/'labels' arrays")
            images.append(np.asarray(shard["images"], dtype=np.uint8))
            labels.append(np.asarray(shard["labels"], dtype=np.int64))
    images, labels = np.concatenate(images), np.concatenate(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"{path}: expected images (N,H,W,C) and N labels")
    return images, labels


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_MAGIC = {
    ".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",), ".png": (b"\x89PNG\r\n\x1a\n",),
    ".bmp": (b"BM",), ".gif": (b"GIF87a", b"GIF89a"),
}


def class_folders(path):
    """Sorted names of the sub-folders of ``path`` that hold at least one image file."""
    path = Path(os.fspath(path))
    return sorted(
        d.name for d in path.iterdir()
        if d.is_dir() and any(f.suffix.lower() in IMAGE_EXTENSIONS for f in d.iterdir())
    )


def check_image_file(file):
    """ValueError naming ``file`` if it is empty or its header is not that of its extension."""
    file = Path(file)
    with open(file, "rb") as handle:
        head = handle.read(16)
    if not any(head.startswith(magic) for magic in _MAGIC[file.suffix.lower()]):
        raise ValueError(f"corrupt or unreadable image {file} (bad {file.suffix} header)")


def list_image_folder(path, class_names=None):
    """(file paths, int64 labels, class names) of a ``path/<class>/<image>`` tree; classes in
    alphabetical order (or ``class_names``' order). Every file's header is checked."""
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
        for file in sorted((path / name).iterdir()):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                check_image_file(file)
                files.append(str(file))
                labels.append(label)
    return np.array(files), np.array(labels, dtype=np.int64), found


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
