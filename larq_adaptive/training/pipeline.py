"""Training data: sources (digits, ``.npz`` shards, class folders, tfds) and the tf.data
pipelines (AUTOTUNE, position-indexed augmentation, each recipe's normalisation).

Training augmentation (:mod:`larq_adaptive.training.augmentation`): CIFAR style pads the
image with 4 black pixels, takes a random crop and flips horizontally, *before* normalising
(as the official loaders: the padded border is black, not the mean); ImageNet style takes a
random resized crop (scale 0.08-1, ratio 3/4-4/3) + flip. At test: resize to 256/224 of the
input size and a centre crop (ImageNet style), a plain resize otherwise. Normalisation: the
model's registered preprocessing (:func:`larq_adaptive.preprocessing.normalize`).
"""

import dataclasses
import time
import os
import urllib.request
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_adaptive import data as lqa_data
from larq_adaptive.preprocessing import normalize
from larq_adaptive.training.augmentation import augment, epoch_order

AUTOTUNE = tf.data.AUTOTUNE
TFDS_DATASETS = ("cifar10", "cifar100", "imagenet2012")
DATASETS = ("digits",) + TFDS_DATASETS


class DataError(ValueError):
    """Bad data input (missing/empty directory, corrupt image, mismatched classes, ...)."""


@dataclasses.dataclass
class Source:
    """One split: ``kind`` "arrays" (``x`` uint8 NHWC in RAM), "files" (``x`` image paths)
    or "tfds" (``dataset`` of (image, label), the image encoded or decoded uint8);
    ``labels`` (None for tfds). ``skip_corrupt``: files that fail to decode are left out at
    training time too (``--skip-corrupt``)."""

    kind: str
    x: object
    labels: object
    num_classes: int
    dataset: object = None
    skip_corrupt: bool = False

    def __len__(self):
        return len(self.labels) if self.labels is not None else int(self.dataset.cardinality())

    def take(self, indices):
        return Source(self.kind, self.x[indices], self.labels[indices], self.num_classes,
                      skip_corrupt=self.skip_corrupt)


def _arrays_source(path, log):
    try:
        images, labels = lqa_data.load_npz_dir(path)
    except (ValueError, OSError) as error:
        raise DataError(str(error)) from None
    if len(labels) and labels.min() < 0:
        raise DataError(f"{path}: label {labels.min()} is negative; labels are class indices "
                        "0 .. num_classes - 1")
    if len(labels) and images.shape[-1] != 3:
        raise DataError(f"{path}: images have {images.shape[-1]} channel(s); the models take "
                        "RGB images (N, H, W, 3)")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    missing = sorted(set(range(num_classes)) - set(np.unique(labels).tolist()))
    if missing and num_classes - len(missing) >= 2:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        log(f"note: {path}: labels go up to {num_classes - 1}, so the model gets "
            f"{num_classes} classes, but classes {shown} have no image here")
    return Source("arrays", images, labels, num_classes)


ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


def not_a_dataset(path):
    """Why ``path`` (no .npz shards, no class folders) is no dataset, and what to do."""
    entries = sorted(entry.name for entry in Path(path).iterdir())
    archives = [name for name in entries if name.lower().endswith(ARCHIVES)]
    if archives:
        first = Path(path) / next((a for a in archives if a.startswith("train")), archives[0])
        unpack = (f"unzip {first} -d DIR" if first.name.lower().endswith(".zip") else
                  f"tar -x{'z' * first.name.lower().endswith(('gz', 'tgz'))}f {first} -C DIR")
        return (f"data directory {path} holds archives ({', '.join(archives)}), not images: "
                f"extract them first (e.g. mkdir -p DIR && {unpack}) and pass the folder of "
                "<class>/<image> folders")
    shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "") or "nothing"
    return (f"no .npz shards or <class>/<image> folders in {path} (it holds {shown}); pass a "
            "folder of .npz shards, of class folders, or with train/ and test/ class folders")


def _directory_source(path, class_names=None, skip_corrupt=False, log=print):
    """(Source, class names or None) of ``path``: ``.npz`` shards or class folders."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data directory {path} does not exist")
    if path.is_file() or any(path.glob("*.npz")):
        return _arrays_source(path, log), None
    try:
        files, labels, names, skipped = lqa_data.list_image_folder(path, class_names,
                                                                    skip_corrupt)
    except ValueError as error:
        raise DataError(not_a_dataset(path) if "no class folders" in str(error)
                        else str(error)) from None
    if skipped:
        file, problem = skipped[0]
        log(f"note: --skip-corrupt: left out {len(skipped)} corrupt or unreadable image(s) of "
            f"{path} (first: {file}: {problem}); {len(files)} remain")
    return Source("files", files, labels, len(names), skip_corrupt=skip_corrupt), names


def _check_classes(source, data_dir):
    classes = len(np.unique(source.labels))
    if classes < 2:
        raise DataError(f"{data_dir} holds {classes} class{'' if classes == 1 else 'es'}; a "
                        "classifier needs images of at least 2 classes")


def _note_image_sizes(sources, data_dirs, image_size, log):
    """Say how images that are not at the model's size are brought to it."""
    size = tuple(int(v) for v in image_size)
    for source, data_dir in zip(sources, data_dirs):
        if source.kind == "files":
            log(f"note: the images of {data_dir} are decoded one by one and brought to the "
                f"model's {size[0]}x{size[1]} (bilinear resize with the CIFAR recipes, random "
                "resized crop / resize + centre crop with the ImageNet ones): any mix of sizes "
                "is accepted")
        elif source.kind == "arrays" and tuple(source.x.shape[1:3]) != size:
            log(f"note: the images of {data_dir} are {source.x.shape[1]}x{source.x.shape[2]}, "
                f"the model takes {size[0]}x{size[1]}: each is resized (bilinear; resize + "
                "centre crop at test with the ImageNet recipes)")


def _split_dirs(path):
    """(train dir, test dir) when ``path`` holds train/ and test|val|validation/ folders."""
    path = Path(path)
    test = next((path / n for n in ("test", "val", "validation") if (path / n).is_dir()), None)
    return (path / "train", test) if (path / "train").is_dir() and test else (None, None)


def directory_sources(data_dir, val_data_dir=None, seed=0, holdout=0.1, skip_corrupt=False,
                      log=print, image_size=None):
    """(train, validation) sources from ``--data-dir``/``--val-data-dir``. Without a
    validation directory: the data dir's own train/ + test/ folders, else a fixed 10% holdout.
    DataError for fewer than 2 classes, negative labels or validation labels outside the
    training classes; notes (``log``) for skipped files, classes without images and resizing."""
    train_dir, test_dir = _split_dirs(data_dir)
    if val_data_dir is None and train_dir is not None:
        data_dir, val_data_dir = train_dir, test_dir
    train, names = _directory_source(data_dir, skip_corrupt=skip_corrupt, log=log)
    if len(train) == 0:
        raise DataError(f"data directory {data_dir} is empty")
    _check_classes(train, data_dir)
    if val_data_dir is None:
        order = np.random.default_rng(seed).permutation(len(train))
        cut = max(1, int(len(train) * holdout))
        if image_size is not None:
            _note_image_sizes([train], [data_dir], image_size, log)
        return train.take(order[cut:]), train.take(order[:cut])
    val, _ = _directory_source(val_data_dir, names, skip_corrupt=skip_corrupt, log=log)
    if val.kind != train.kind:
        raise DataError(f"{data_dir} and {val_data_dir} hold different kinds of data")
    if len(val) == 0:
        raise DataError(f"validation directory {val_data_dir} is empty")
    if val.labels.max() >= train.num_classes or val.labels.min() < 0:
        raise DataError(
            f"mismatched classes: labels of {val_data_dir} go up to {val.labels.max()}, "
            f"but {data_dir} has {train.num_classes} classes"
        )
    val.num_classes = train.num_classes
    if image_size is not None:
        _note_image_sizes([train, val], [data_dir, val_data_dir], image_size, log)
    return train, val


def digits_sources(image_size):
    (x_train, y_train), (x_test, y_test) = lqa_data.load_digits(image_size)
    return Source("arrays", x_train, y_train, 10), Source("arrays", x_test, y_test, 10)


def tfds_sources(name, data_dir=None, seed=0):
    """(train, validation) of a tfds dataset; prepares it if needed (fails cleanly offline).
    The images stay encoded (``SkipDecoding``): :func:`make_dataset` shuffles the records,
    then decodes. Record files are shuffled with ``seed`` (a deterministic order). Labels are
    tfds ``ClassLabel`` values, checked to lie in ``[0, num_classes)`` when prepared."""
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
        dataset = builder.as_dataset(
            split=split, as_supervised=True, shuffle_files=True,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(shuffle_seed=seed),
        )
        cardinality = tf.data.experimental.assert_cardinality(splits[split].num_examples)
        return Source("tfds", None, None, classes, dataset.apply(cardinality))

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
    parser.add_argument("--skip-corrupt", action="store_true", help="leave out the images of "
                        "a class-folder dataset that are corrupt or unreadable (default: stop "
                        "with an error naming the first); their count is printed")


def load_sources(dataset, data_dir=None, val_data_dir=None, tfds_data_dir=None,
                 image_size=(32, 32), seed=0, skip_corrupt=False, log=print):
    """(train, validation) :class:`Source` for the CLI's data flags; DataError for bad data,
    notes on what is done to the data through ``log``."""
    if data_dir is not None:
        return directory_sources(data_dir, val_data_dir, seed, skip_corrupt=skip_corrupt,
                                 log=log, image_size=image_size)
    if val_data_dir is not None:
        raise DataError("--val-data-dir needs --data-dir")
    if dataset == "digits":
        return digits_sources(image_size)
    return tfds_sources(dataset, tfds_data_dir, seed)


# Encoded tfds records held by the shuffle buffer (ImageNet: ~110 KB each, ~1.1 GB in all).
RECORD_SHUFFLE_BUFFER = 10_000
# Evaluation images of a file/tfds source are cached after decoding (float32 at the model's
# size) only below this: CIFAR's 10,000 test images (120 MB) are, ImageNet's 50,000 are not.
EVAL_CACHE_BYTES = 1e9


# Training images of a class-folder source are decoded once into RAM (uint8) below this:
# CIFAR-10's 50,000 (154 MB) are, ImageNet's are not.
TRAIN_DECODED_BYTES = 1e9


def decoded_in_memory(source, log=print, max_bytes=TRAIN_DECODED_BYTES):
    """``source`` with its image files decoded once into a uint8 array (an "arrays" source)
    when they all have one shape and fit in ``max_bytes``, so that small (CIFAR-sized) folders
    are not read and decoded again every epoch; the training stream is the same, batch for
    batch. Anything else (other kinds, too large, mixed sizes, a file the decoder rejects:
    handled as before) is returned unchanged."""
    if source.kind != "files" or not len(source):
        return source
    start = time.time()
    decoded = tf.data.Dataset.from_tensor_slices(source.x).map(
        lambda path: _decode(tf.io.read_file(path)), num_parallel_calls=AUTOTUNE,
        deterministic=True)
    try:
        first = _decode(tf.io.read_file(source.x[0]))
        if first.shape.num_elements() * len(source) > max_bytes:
            return source
        images = np.empty((len(source), *first.shape), np.uint8)
        for index, image in enumerate(decoded.as_numpy_iterator()):
            if image.shape != images.shape[1:]:
                return source
            images[index] = image
    except tf.errors.InvalidArgumentError:
        return source
    log(f"decoded the {len(source)} training images into RAM once ({images.nbytes / 1e6:.0f} MB, "
        f"{time.time() - start:.1f} s): epochs read them from there")
    return Source("arrays", images, source.labels, source.num_classes)


def _decode(image):
    """uint8 HWC RGB from encoded bytes (JPEG/PNG/BMP/GIF, any extension); decoded as is."""
    if image.dtype != tf.string:
        return image
    return tf.io.decode_image(image, channels=3, expand_animations=False)


def _training_elements(source, batch_size, seed, repeat, start_step):
    """(image or path or encoded record, label, per-example seed) in training order, nothing
    decoded yet (:func:`~larq_adaptive.training.augmentation.epoch_order`: the shuffle
    holds int64 indices, whatever the dataset size), from batch ``start_step`` on.
    tfds: a seeded shuffle of encoded records (buffer ``RECORD_SHUFFLE_BUFFER``) and
    per-example seeds from the position in the stream; the same seed gives the same stream."""
    skip = start_step * batch_size
    if source.kind == "tfds":
        records = source.dataset.shuffle(min(len(source), RECORD_SHUFFLE_BUFFER), seed=seed,
                                         reshuffle_each_iteration=True)
        if repeat:
            records = records.repeat()
        seed = tf.constant(seed, tf.int64)
        return records.enumerate().skip(skip).map(
            lambda position, record: (*record, tf.stack([seed, position])))
    x, labels = tf.constant(source.x), tf.constant(source.labels)
    order = epoch_order(len(source), batch_size, seed, repeat).skip(skip)
    return order.map(lambda i, example_seed: (tf.gather(x, i), tf.gather(labels, i),
                                              example_seed))


def _elements(source):
    """(image or path or encoded record, label) in the source's order (evaluation)."""
    if source.kind == "tfds":
        return source.dataset
    x, labels = tf.constant(source.x), tf.constant(source.labels)
    return tf.data.Dataset.range(len(source)).map(lambda i: (tf.gather(x, i),
                                                             tf.gather(labels, i)))


def _decoded(dataset, source, map_fn):
    """``map_fn(decoded image, *rest)`` in parallel (files are read there); images that
    fail to decode are skipped with ``source.skip_corrupt`` (each logged by tf.data), else
    they stop the run."""

    def load(image, *rest):
        if source.kind == "files":  # a path
            image = tf.io.read_file(image)
        return map_fn(_decode(image), *rest)

    dataset = dataset.map(load, num_parallel_calls=AUTOTUNE)
    if source.skip_corrupt:
        dataset = dataset.ignore_errors(log_warning=True)
    return dataset


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
    resized = tf.image.resize(tf.cast(image, tf.float32),
                              tf.cast(tf.round(shape * scale), tf.int32))
    return tf.image.resize_with_crop_or_pad(resized, size[0], size[1])


def make_dataset(source, image_size, batch_size, training, preprocessing="imagenet",
                 augmentation="cifar", flip=True, seed=0, repeat=False, cache=True,
                 start_step=0):
    """Batched (normalised float32 images, int labels).

    Evaluation: every image in order, resized (ImageNet style: resize to 256/224 of the size
    and centre crop). Training: the position-indexed stream of
    :mod:`larq_adaptive.training.augmentation` (each epoch a fresh permutation cut to whole
    batches, each image cropped and flipped from its own stateless seed), from batch
    ``start_step`` on; ``repeat``: every epoch (``model.fit`` then needs
    ``steps_per_epoch``), else epoch 0 only.

    Memory is bounded whatever the dataset size: the training shuffle holds indices (or
    encoded tfds records); images are read, decoded and cropped after it, in parallel, a few
    batches ahead (prefetch). Arrays (``.npz``, digits) are in RAM already; ``cache``:
    evaluation images of files/tfds are kept after decoding when they fit in
    ``EVAL_CACHE_BYTES``."""
    size = tuple(int(v) for v in image_size)
    if training:
        style = "imagenet" if augmentation == "imagenet" else "cifar"
        dataset = _decoded(
            _training_elements(source, batch_size, seed, repeat, start_step), source,
            lambda image, label, example_seed: (augment(image, example_seed, size, style, flip),
                                                label))
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        resize = _resize_center_crop if augmentation == "imagenet" else _resize
        dataset = _decoded(_elements(source), source, lambda image, label: (resize(image, size),
                                                                            label))
        small = len(source) * np.prod(size) * 3 * 4 < EVAL_CACHE_BYTES
        if cache and source.kind != "arrays" and small:
            dataset = dataset.cache()
        dataset = dataset.batch(batch_size)

    def preprocess(images, labels):
        return normalize(images, preprocessing), labels

    return dataset.map(preprocess, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
