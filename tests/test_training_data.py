"""Training data: the bounded-memory pipeline (shuffle names/records, then decode), the fast
corrupt-file check and ``--skip-corrupt``, and bad datasets (fewer than 2 classes, labels out
of range, mixed image sizes): one stderr line and exit 2, or a logged decision."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive import data
from larq_adaptive.training import augmentation, pipeline
from larq_adaptive.training.cli import main

from conftest import REPO, TINY, child_env, command_stderr_lines

pytestmark = pytest.mark.usefixtures("tiny_registered_model")


def _images(n, size=(8, 8), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size, 3), dtype=np.uint8)


def _folder(root, images, labels, names=("a", "b")):
    """Lossless PNG class folders of ``images``; file i is ``<names[label]>/<i>.png``."""
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / names[label]).mkdir(parents=True, exist_ok=True)
        (root / names[label] / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def _npz(path, images, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels)
    return path


def _labels_of(dataset):
    return np.concatenate([y for _, y in dataset.as_numpy_iterator()])


# ------------------------------------------------------------------- bounded-memory pipeline


def test_folder_order_equals_in_ram_order_and_follows_the_seed(tmp_path):
    """Class folders are shuffled as names and decoded after: the same images in RAM (arrays,
    the in-RAM oracle) come out in the same order, image for image; the seed fixes it."""
    images, labels = _images(24), np.arange(24) % 2
    folder = _folder(tmp_path / "f", images, labels)
    files, folder_labels, _, _ = data.list_image_folder(folder)
    order = [int(f.rsplit("/", 1)[1][:3]) for f in files]  # file i holds images[i]
    in_ram = pipeline.Source("arrays", images[order], folder_labels, 2)
    on_disk = pipeline.Source("files", files, folder_labels, 2)
    common = dict(image_size=(8, 8), batch_size=4, training=True, augmentation="imagenet",
                  preprocessing="imagenet", seed=5)

    def epoch(source, seed=5):
        tf.keras.utils.set_random_seed(0)
        return _labels_of(pipeline.make_dataset(source, **{**common, "seed": seed}))

    assert epoch(on_disk).tolist() == epoch(in_ram).tolist()
    assert epoch(on_disk).tolist() == epoch(on_disk).tolist()
    assert sorted(epoch(on_disk)) == sorted(folder_labels)  # every image once (24 = 6 x 4)
    assert epoch(on_disk, seed=6).tolist() != epoch(on_disk).tolist()
    # evaluation: in file order, decoded pixels equal the in-RAM ones
    folder_eval = pipeline.make_dataset(on_disk, (8, 8), 5, training=False, augmentation="cifar")
    ram_eval = pipeline.make_dataset(in_ram, (8, 8), 5, training=False, augmentation="cifar")
    for (a, y), (b, z) in zip(folder_eval, ram_eval):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(y.numpy(), z.numpy())


def test_small_folders_are_decoded_once_into_ram_and_give_the_same_stream(tmp_path):
    """CIFAR-sized class folders are decoded once (not every epoch); the training stream is
    the same, batch for batch, as decoding the files on the fly. Too large for the budget, of
    mixed sizes, or with a file the decoder rejects: streamed from disk as before."""
    images, labels = _images(24), np.arange(24) % 2
    folder = _folder(tmp_path / "f", images, labels)
    files, folder_labels, _, _ = data.list_image_folder(folder)
    on_disk = pipeline.Source("files", files, folder_labels, 2)
    lines = []
    in_ram = pipeline.decoded_in_memory(on_disk, log=lines.append)
    assert in_ram.kind == "arrays" and in_ram.x.shape == (24, 8, 8, 3) and in_ram.x.dtype == np.uint8
    assert len(lines) == 1 and "decoded the 24 training images" in lines[0]

    def stream(source):
        dataset = pipeline.make_dataset(source, (8, 8), 4, training=True, repeat=True, seed=3,
                                        start_step=5)
        return list(dataset.take(12).as_numpy_iterator())  # two epochs from step 5

    for (a, y), (b, z) in zip(stream(on_disk), stream(in_ram)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(y, z)
    assert pipeline.decoded_in_memory(on_disk, max_bytes=24 * 8 * 8 * 3 - 1) is on_disk
    mixed = _folder(tmp_path / "m", _images(2), [0, 1])
    (mixed / "a" / "big.png").write_bytes(tf.io.encode_png(_images(1, (9, 9))[0]).numpy())
    files, mixed_labels, _, _ = data.list_image_folder(mixed)
    mixed_source = pipeline.Source("files", files, mixed_labels, 2)
    assert pipeline.decoded_in_memory(mixed_source, log=lines.append) is mixed_source
    (mixed / "a" / "big.png").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    assert pipeline.decoded_in_memory(mixed_source, log=lines.append) is mixed_source


def test_training_shuffle_holds_indices_names_or_encoded_records():
    """What the shuffle buffer holds is small whatever the dataset: int64 indices (arrays,
    files) or encoded strings (tfds records); nothing decoded."""
    order = augmentation.epoch_order(4, 2, seed=0, repeat=False)  # what arrays/files shuffle
    assert order.element_spec == (tf.TensorSpec((), tf.int64), tf.TensorSpec((2,), tf.int64))
    arrays = pipeline.Source("arrays", _images(4), np.arange(4) % 2, 2)
    elements = pipeline._training_elements(arrays, 2, 0, False, 0)
    assert elements.element_spec[0].dtype == tf.uint8  # gathered after the order, undecoded
    encoded = [tf.io.encode_png(image).numpy() for image in _images(4)]
    records = tf.data.Dataset.from_tensor_slices((encoded, np.arange(4) % 2))
    tfds_like = pipeline.Source("tfds", None, None, 2, records)
    element = pipeline._training_elements(tfds_like, 2, 0, False, 0).element_spec[0]
    assert element.dtype == tf.string


def test_encoded_tfds_records_are_decoded_after_the_shuffle():
    images, labels = _images(6, (10, 12)), np.arange(6) % 3
    encoded = [tf.io.encode_png(image).numpy() for image in images]
    records = tf.data.Dataset.from_tensor_slices((encoded, labels))
    tfds_like = pipeline.Source("tfds", None, None, 3, records)
    in_ram = pipeline.Source("arrays", images, labels, 3)
    for training in (False, True):
        tf.keras.utils.set_random_seed(0)
        a = list(pipeline.make_dataset(tfds_like, (8, 8), 3, training, augmentation="cifar",
                                       flip=False).as_numpy_iterator())
        tf.keras.utils.set_random_seed(0)
        b = list(pipeline.make_dataset(in_ram, (8, 8), 3, training, augmentation="cifar",
                                       flip=False).as_numpy_iterator())
        assert [y.tolist() for _, y in a] == [y.tolist() for _, y in b] or training
        if not training:  # no random crop: same pixels
            np.testing.assert_allclose(np.concatenate([x for x, _ in a]),
                                       np.concatenate([x for x, _ in b]), atol=1e-5)


# --------------------------------------------------------------------- corrupt files


def _bad_and_good_files(folder):
    """Files named for what they are; the decoder decides which are images."""
    image = _images(1, (16, 16))[0]
    jpeg, png = tf.io.encode_jpeg(image).numpy(), tf.io.encode_png(image).numpy()
    files = {
        "good.jpg": jpeg, "good.png": png,
        "png_named.jpg": png,  # ImageNet has one: tf.io.decode_image sniffs the bytes
        "trailing_bytes.jpg": jpeg + b"\0" * 100,
        "empty.jpg": b"", "text.png": b"not an image at all",
        "truncated.jpg": jpeg[: len(jpeg) // 2], "cut_before_end.jpg": jpeg[:-2],
        "truncated.png": png[: len(png) - 20],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return sorted(folder / name for name in files)


def test_fast_check_agrees_with_the_decoder(tmp_path):
    """The check rejects exactly the files tf.io.decode_image rejects (the oracle)."""
    for file in _bad_and_good_files(tmp_path):
        try:
            tf.io.decode_image(file.read_bytes(), channels=3, expand_animations=False)
            decodes = True
        except tf.errors.InvalidArgumentError:
            decodes = False
        problem = data.image_file_problem(file)
        assert (problem is None) == decodes, (file.name, problem)


def test_threaded_check_gives_the_same_answers(tmp_path):
    files = [str(f) for f in _bad_and_good_files(tmp_path)] * 30
    one_by_one = [data.image_file_problem(f) for f in files]
    assert data._check_files(files, probe=3, fast=1.0) == one_by_one  # stays in this thread
    assert data._check_files(files, probe=3, fast=0.0) == one_by_one  # goes to threads


def test_skip_corrupt_leaves_bad_files_out_and_reports_the_count(tmp_path):
    root = tmp_path / "data"
    _bad_and_good_files(root / "a")
    _folder(root, _images(3), [1, 1, 1])
    with pytest.raises(ValueError, match="cut_before_end.jpg .*truncated.*4 more bad file"):
        data.list_image_folder(root)
    files, labels, names, skipped = data.list_image_folder(root, skip_corrupt=True)
    assert len(skipped) == 5 and len(files) == 4 + 3 and names == ["a", "b"]
    notes = []
    train, _ = pipeline.load_sources("digits", str(root), skip_corrupt=True, log=notes.append)
    assert any("left out 5 corrupt or unreadable image(s)" in note for note in notes)


def test_files_that_fail_decoding_are_skipped_at_training_time_with_skip_corrupt(tmp_path):
    """A file damaged in its middle passes the fast check; the decoder then fails on it:
    the run stops, or with --skip-corrupt the image is left out."""
    folder = _folder(tmp_path / "f", _images(4), [0, 1, 0, 1])
    (folder / "a" / "zz_damaged.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 300 + b"\xff\xd9")
    files, labels, _, _ = data.list_image_folder(folder)
    assert len(files) == 5
    for skip in (False, True):
        source = pipeline.Source("files", files, labels, 2, skip_corrupt=skip)
        dataset = pipeline.make_dataset(source, (8, 8), 5, training=False)
        if skip:
            assert len(_labels_of(dataset)) == 4
        else:
            with pytest.raises(tf.errors.InvalidArgumentError):
                _labels_of(dataset)


def test_skip_corrupt_run_trains_on_the_rest(tmp_path, capsys):
    root = tmp_path / "data"
    _folder(root, _images(12), np.arange(12) % 2)
    (root / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut")
    out = tmp_path / "run"
    argv = ["--model", TINY, "--data-dir", str(root), "--val-data-dir", str(root),
            "--output-dir", str(out), "--epochs", "1", "--batch-size", "4", "--verbose", "0"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "broken.jpg" in err[0] and "--skip-corrupt" in err[0]
    assert not out.exists()
    assert main(argv + ["--skip-corrupt"]) == 0
    assert "left out 1 corrupt or unreadable image(s)" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["test_images"] == 12


# ----------------------------------------------------------------------- bad datasets


def test_npz_shards_bad_content(tmp_path):
    def error_of(images, labels, name):
        path = _npz(tmp_path / name / "s.npz", images, labels)
        with pytest.raises(pipeline.DataError) as info:
            pipeline.load_sources("digits", str(path.parent), log=lambda _: None)
        return str(info.value)

    assert "2 classes" in error_of(_images(6), np.zeros(6, int), "one_class")
    assert "negative" in error_of(_images(6), np.array([0, 1, -1, 0, 1, 0]), "negative")
    assert "float32" in error_of(_images(6).astype(np.float32) / 255, np.arange(6) % 2, "float")
    assert "labels are float" in error_of(_images(6), np.arange(6) % 2 * 1.0, "float_labels")
    assert "channel" in error_of(_images(6)[..., :1], np.arange(6) % 2, "grey")
    # (N, 1) labels and lossless integer pixels are accepted as they are
    _npz(tmp_path / "ok" / "s.npz", _images(6).astype(np.int32), (np.arange(6) % 2)[:, None])
    train, val = pipeline.load_sources("digits", str(tmp_path / "ok"), log=lambda _: None)
    assert train.x.dtype == np.uint8 and train.labels.ndim == 1 and train.num_classes == 2


def test_logged_decisions_resize_and_classes_without_images(tmp_path):
    _npz(tmp_path / "t" / "s.npz", _images(8, (12, 12)), np.array([0, 3] * 4))
    notes = []
    train, val = pipeline.load_sources("digits", str(tmp_path / "t"), image_size=(8, 8),
                                       log=notes.append)
    assert train.num_classes == 4
    assert any("classes 1, 2 have no image" in note for note in notes)
    assert any("12x12" in note and "8x8" in note and "resized" in note for note in notes)


def test_class_folders_of_mixed_sizes_train_at_the_model_size(tmp_path, capsys):
    root = tmp_path / "mixed"
    for i, size in enumerate([(8, 8), (20, 12), (9, 31), (8, 8)] * 2):
        folder = root / ("cat", "dog")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(tf.io.encode_png(_images(1, size, seed=i)[0]).numpy())
    out = tmp_path / "run"
    argv = ["--model", TINY, "--data-dir", str(root), "--val-data-dir", str(root),
            "--output-dir", str(out), "--epochs", "1", "--batch-size", "4", "--verbose", "0"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "decoded one by one" in stdout and "any mix of sizes" in stdout
    assert json.loads((out / "results.json").read_text())["test_images"] == 8


# The four classes of bad data, as a user runs them: one stderr line, exit 2, no run folder.
def _bad_datasets(root):
    one_class = _folder(root / "one_class", _images(4), [0, 0, 0, 0])
    corrupt = _folder(root / "corrupt", _images(4), [0, 1, 0, 1])
    (corrupt / "b" / "bad.jpg").write_bytes(b"")
    _npz(root / "train12" / "s.npz", _images(8, (32, 32)), np.arange(8) % 2)
    _npz(root / "val12" / "s.npz", _images(4, (32, 32)), np.array([0, 1, 2, 1]))
    _npz(root / "mixed" / "a.npz", _images(4, (32, 32)), np.arange(4) % 2)
    _npz(root / "mixed" / "b.npz", _images(4, (28, 28)), np.arange(4) % 2)
    return [
        (["--data-dir", str(one_class)], ["1 class", "at least 2"]),
        (["--data-dir", str(corrupt)], ["bad.jpg", "empty file", "--skip-corrupt"]),
        (["--data-dir", str(root / "train12"), "--val-data-dir", str(root / "val12")],
         ["mismatched classes", "up to 2"]),
        (["--data-dir", str(root / "mixed")], ["different image shapes", "a.npz", "b.npz"]),
    ]


def test_bad_datasets_through_train_py(tmp_path):
    cases = _bad_datasets(tmp_path / "data")
    runs = []
    for i, (flags, _) in enumerate(cases):  # started together: the TF imports overlap
        out = tmp_path / f"run{i}"
        command = [sys.executable, str(REPO / "train.py"), *flags, "--output-dir", str(out)]
        runs.append((out, subprocess.Popen(command, stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, env=child_env())))
    for (out, process), (flags, words) in zip(runs, cases):
        _, stderr = process.communicate(timeout=300)
        lines = command_stderr_lines(stderr)
        assert process.returncode == 2, stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("train.py: error:"), lines
        for word in words:
            assert word in lines[0], (word, lines[0])
        assert not out.exists()


PREPARE_TFDS_CIFAR10 = """
import sys
import numpy as np
import tensorflow_datasets as tfds

class OfflineCifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    '''Writes tfds' own cifar10 layout (name, version, features) from generated images, so that
    tfds.builder("cifar10", data_dir=...) reads it as the prepared dataset (no download).'''
    name = "cifar10"
    VERSION = tfds.builder_cls("cifar10").VERSION

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "image": tfds.features.Image(shape=(32, 32, 3)),
            "label": tfds.features.ClassLabel(num_classes=10)}),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40, 0), "test": self._generate_examples(16, 1)}

    def _generate_examples(self, count, seed):
        rng = np.random.default_rng(seed)
        for i in range(count):
            yield f"{seed}_{i}", {"id": f"{seed}_{i}", "label": i % 10,
                                  "image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)}

OfflineCifar10(data_dir=sys.argv[1]).download_and_prepare()
"""


def test_a_prepared_tfds_dataset_trains_offline(tmp_path):
    """The real tfds path (tfds.builder, encoded records, SkipDecoding, seeded file shuffle,
    decoding after the shuffle) with tfds' cifar10 prepared on disk, as train.py is run."""
    tfds_dir, script = tmp_path / "tfds", tmp_path / "offline_cifar10.py"
    script.write_text(PREPARE_TFDS_CIFAR10)  # tfds reads a builder's source file
    prepared = subprocess.run([sys.executable, str(script), str(tfds_dir)],
                              capture_output=True, text=True, env=child_env(), timeout=600)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--model", "adabin_resnet20", "--dataset",
         "cifar10", "--tfds-data-dir", str(tfds_dir), "--epochs", "2", "--steps-per-epoch", "2",
         "--batch-size", "8", "--verbose", "0", "--output-dir", str(out)],
        capture_output=True, text=True, env=child_env(), timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["test_images"] == 16 and len(results["histories"][0]["loss"]) == 2
    assert json.loads((out / "config.json").read_text())["dataset"] == "cifar10"
