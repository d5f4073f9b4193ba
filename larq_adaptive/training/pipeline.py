"""Training data: sources (digits, ``.npz`` shards, class folders, tfds) and the tf.data
pipelines (AUTOTUNE, keras-cv augmentation, each recipe's normalisation).

CIFAR-style augmentation pads the uint8 image with 4 black pixels, takes a random 32x32
crop and flips horizontally, *before* normalising (as the official loaders: the padded border
is black, not the mean). ImageNet-style: random
resized crop (scale 0.08-1, ratio 3/4-4/3) + flip for training; resize to 256/224 of the
input size and a centre crop at test. Normalisation: the model's registered preprocessing
(:func:`larq_adaptive.preprocessing.normalize`).
"""

import dataclasses
import os
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_adaptive import data as lqa_data
from larq_adaptive.preprocessing import normalize

AUTOTUNE = tf.data.AUTOTUNE
TFDS_DATASETS = ("cifar10", "cifar100", "imagenet2012")
DATASETS = ("digits",) + TFDS_DATASETS


class DataError(ValueError):
    """Bad data input (missing/empty directory, corrupt image, mismatched classes, ...)."""


@dataclasses.dataclass
class Source:
    """One split: ``kind`` "arrays" (``x`` uint8 NHWC), "files" (``x`` image paths) or
    "tfds" (``dataset`` of (uint8 image, label)); ``labels`` (None for tfds)."""

    kind: str
    x: object
    labels: object
    num_classes: int
    dataset: object = None

    def __len__(self):
        return len(self.labels) if self.labels is not None else int(self.dataset.cardinality())

    def take(self, indices):
        return Source(self.kind, self.x[indices], self.labels[indices], self.num_classes)


def _directory_source(path, class_names=None):
    path = Path(path)
    if not path.exists():
        raise DataError(f"data directory {path} does not exist")
    if path.is_file() or any(path.glob("*.npz")):
        try:
            images, labels = lqa_data.load_npz_dir(path)
        except (ValueError, OSError) as error:
            raise DataError(str(error)) from None
        return Source("arrays", images, labels, int(labels.max()) + 1 if len(labels) else 0)
    try:
        files, labels, names = lqa_data.list_image_folder(path, class_names)
    except ValueError as error:
        raise DataError(
            f"{error} (expected .npz shards or <class>/<image> folders)"
            if "no class folders" in str(error) else str(error)
        ) from None
    return Source("files", files, labels, len(names)), names


def _split_dirs(path):
    """(train dir, test dir) when ``path`` holds train/ and test|val|validation/ folders."""
    path = Path(path)
    test = next((path / n for n in ("test", "val", "validation") if (path / n).is_dir()), None)
    return (path / "train", test) if (path / "train").is_dir() and test else (None, None)


def _unpack(result):
    return result if isinstance(result, tuple) else (result, None)


def directory_sources(data_dir, val_data_dir=None, seed=0, holdout=0.1):
    """(train, validation) sources from ``--data-dir``/``--val-data-dir``. Without a
    validation directory: the data dir's own train/ + test/ folders, else a fixed 10% holdout."""
    train_dir, test_dir = _split_dirs(data_dir)
    if val_data_dir is None and train_dir is not None:
        data_dir, val_data_dir = train_dir, test_dir
    train, names = _unpack(_directory_source(data_dir))
    if len(train) == 0:
        raise DataError(f"data directory {data_dir} is empty")
    if val_data_dir is None:
        order = np.random.default_rng(seed).permutation(len(train))
        cut = max(1, int(len(train) * holdout))
        return train.take(order[cut:]), train.take(order[:cut])
    val, _ = _unpack(_directory_source(val_data_dir, names))
    if val.kind != train.kind:
        raise DataError(f"{data_dir} and {val_data_dir} hold different kinds of data")
    if len(val) == 0:
        raise DataError(f"validation directory {val_data_dir} is empty")
    if val.labels.max() >= train.num_classes or val.labels.min() < 0 or train.labels.min() < 0:
        raise DataError(
            f"mismatched classes: labels of {val_data_dir} go up to {val.labels.max()}, "
            f"but {data_dir} has {train.num_classes} classes"
        )
    val.num_classes = train.num_classes
    return train, val


def digits_sources(image_size):
    (x_train, y_train), (x_test, y_test) = lqa_data.load_digits(image_size)
    return Source("arrays", x_train, y_train, 10), Source("arrays", x_test, y_test, 10)


def tfds_sources(name, data_dir=None):
    """(train, validation) of a tfds dataset; prepares it if needed (fails cleanly offline)."""
    import tensorflow_datasets as tfds

    def fail(error):
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        return DataError(
            f"tfds dataset {name!r} is not prepared in {data_dir or 'the default tfds dir'} "
            f"and could not be downloaded ({type(error).__name__}: {first}); pass "
            "--tfds-data-dir with the prepared dataset, or --data-dir with .npz shards or "
            "class folders"
        )

    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if not tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json")):
            # Fail in seconds when offline (tfds' own download retries for minutes).
            urllib.request.urlopen(builder.info.homepage, timeout=10).close()
            builder.download_and_prepare()
    except Exception as error:  # network, manual-download and corrupt-archive errors alike
        raise fail(error) from None
    splits = builder.info.splits
    val_split = "test" if "test" in splits else "validation"
    classes = builder.info.features["label"].num_classes

    def source(split):
        dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=True)
        return Source("tfds", None, None, classes, dataset.apply(tf.data.experimental.assert_cardinality(splits[split].num_examples)))

    return source("train"), source(val_split)


def add_data_flags(parser, val_help="validation/test data, same formats as --data-dir"):
    """The data flags every command shares (``train.py``, ``larq-adaptive-dwr-search``); their
    values go to :func:`load_sources`."""
    parser.add_argument("--dataset", default="digits", choices=DATASETS,
                        help="digits (embedded, no download) or a tfds name")
    parser.add_argument("--data-dir", help="folder of .npz shards (images/labels), of "
                        "<class>/<image> folders, or with train/ and test/ class folders")
    parser.add_argument("--val-data-dir", help=val_help)
    parser.add_argument("--tfds-data-dir", help="tfds data_dir (prepared datasets)")


def load_sources(dataset, data_dir=None, val_data_dir=None, tfds_data_dir=None,
                 image_size=(32, 32), seed=0):
    """(train, validation) :class:`Source` for the CLI's data flags."""
    if data_dir is not None:
        return directory_sources(data_dir, val_data_dir, seed)
    if val_data_dir is not None:
        raise DataError("--val-data-dir needs --data-dir")
    if dataset == "digits":
        return digits_sources(image_size)
    return tfds_sources(dataset, tfds_data_dir)


def _decode_file(path, label):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return image, label


def _unbatched(source):
    if source.kind == "tfds":
        return source.dataset
    dataset = tf.data.Dataset.from_tensor_slices((source.x, source.labels))
    return dataset.map(_decode_file, num_parallel_calls=AUTOTUNE) if source.kind == "files" else dataset


def _resize(image, size):
    image = tf.cast(image, tf.float32)
    if image.shape[:2] == tuple(size):
        return image
    return tf.image.resize(image, size, method="bilinear")


def _resize_center_crop(image, size):
    """Resize the shorter side to size * 256 / 224, then centre-crop ``size`` (ImageNet eval)."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    short = tf.cast(round(size[0] * 256 / 224), tf.float32)
    scale = short / tf.reduce_min(shape)
    resized = tf.image.resize(tf.cast(image, tf.float32), tf.cast(tf.round(shape * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(resized, size[0], size[1])


def make_dataset(source, image_size, batch_size, training, preprocessing="imagenet",
                 augmentation="cifar", flip=True, seed=0, repeat=False, cache=True):
    """Batched (normalised float32 images, int labels). Training: shuffled, augmented,
    ``drop_remainder`` (the official loaders' ``drop_last``); evaluation: every image."""
    import keras_cv  # imported here: costs ~1 s

    size = tuple(image_size)
    dataset = _unbatched(source)
    imagenet = augmentation == "imagenet"
    if not imagenet or not training:
        resize = _resize_center_crop if imagenet else _resize

        def fixed_size(image, label):
            return resize(image, size), label

        dataset = dataset.map(fixed_size, num_parallel_calls=AUTOTUNE)
        if cache and source.kind != "arrays" and len(source) * np.prod(size) * 12 < 2e9:
            dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(min(len(source), 50_000), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
    if training and imagenet:
        crop = keras_cv.layers.RandomCropAndResize(
            size, crop_area_factor=(0.08, 1.0), aspect_ratio_factor=(3 / 4, 4 / 3), seed=seed
        )

        def random_resized_crop(image, label):
            return crop(tf.cast(image, tf.float32)), label

        dataset = dataset.map(random_resized_crop, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    if training:
        layers = [] if imagenet else [
            keras_cv.layers.RandomCrop(size[0], size[1], seed=seed)
        ]
        if flip:
            layers.append(keras_cv.layers.RandomFlip("horizontal", seed=seed))

        def augment(images, labels):
            if not imagenet:  # black 4-pixel border before normalisation
                images = tf.pad(images, [[0, 0], [4, 4], [4, 4], [0, 0]])
            for layer in layers:
                images = layer(images, training=True)
            return images, labels

        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)

    def preprocess(images, labels):
        return normalize(images, preprocessing), labels

    return dataset.map(preprocess, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
