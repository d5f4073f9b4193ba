"""What train.py reports and whom it learns from: per-stage summaries, results.json (last and
best epoch, the official drop-last test accuracy), the float twins' recipes and the teacher
checks of ``--teacher``. Runs use the tiny registered network (8x8 inputs)."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.models import available_models, model_entry
from larq_adaptive.training import RECIPES
from larq_adaptive.training.cli import build_parser, main, resolve
from larq_adaptive.training.pipeline import Source, make_dataset

from conftest import TINY, tiny_model

pytestmark = pytest.mark.usefixtures("tiny_registered_model")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def _npz(folder, n, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    np.savez(folder / "shard.npz", images=images, labels=np.arange(n) % 10)
    return images, np.arange(n) % 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _npz(root / "train", 32, 0)
    val_images, val_labels = _npz(root / "val", 20, 1)  # 20 = 2 batches of 8 + 4
    return root / "train", root / "val", val_images, val_labels


def _train(data, out, *extra, epochs=2):
    train, val = data[:2]
    argv = ["--model", TINY, "--data-dir", str(train), "--val-data-dir", str(val),
            "--output-dir", str(out), "--epochs", str(epochs), "--steps-per-epoch", "2",
            "--batch-size", "8", "--verbose", "0", *extra]
    return main(argv)


# ----------------------------------------------------------------------------- summaries


def test_two_step_summaries_report_what_each_stage_trains(data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out, "--recipe", "reactnet_cifar") == 0
    stage1 = (out / "stage_1" / "summary.txt").read_text()
    stage2 = (out / "stage_2" / "summary.txt").read_text()
    deployed = (out / "summary.txt").read_text()
    # stage 1 trains real-valued kernels: no 1-bit weight column, no binarized MACs
    assert "# 1-bit" not in stage1 and "binarized" not in stage1
    for text in (stage2, deployed):
        assert "# 1-bit" in text and "Ratio of MACs that are binarized" in text
        row = next(line for line in text.splitlines() if line.startswith("| bconv "))
        assert "576" in row.split()  # 3 x 3 x 8 x 8 binary kernel weights
    assert deployed.startswith("The network as deployed")


def test_switchable_quantizer_precision_follows_its_state():
    quantizer = lqa.quantizers.SwitchableQuantizer(lqa.quantizers.ReActNetWeightQuantizer())
    assert quantizer.precision == 32 and quantizer.final_precision == 1
    quantizer.build((3, 3))
    quantizer.active.assign(1.0)
    assert quantizer.precision == 1


# ------------------------------------------------------------------------- results.json


def _logged_epochs(path):
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def test_results_give_last_and_best_epoch_and_drop_last_accuracy(data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out, "--recipe", "dwr_cifar", epochs=3) == 0
    results = json.loads((out / "results.json").read_text())
    logged = _logged_epochs(out / "stage_1" / "log.csv")  # CSVLogger, epochs 0..2
    assert results["last_epoch"]["epoch"] == 3
    assert results["last_epoch"]["val_accuracy"] == pytest.approx(logged[-1]["val_accuracy"])
    best = max(range(3), key=lambda e: (logged[e]["val_accuracy"], -e))
    assert results["best_epoch"]["epoch"] == best + 1
    assert results["best_epoch"]["val_accuracy"] == pytest.approx(logged[best]["val_accuracy"])

    # the saved model on the test images, normalised here by hand
    _, _, images, labels = data
    model = lqa.load_model(out / "model.keras")
    predicted = model.predict((images / 255.0 - MEAN) / STD, verbose=0).argmax(-1)
    assert results["test_images"] == 20
    assert results["test_accuracy"] == pytest.approx(np.mean(predicted == labels))
    assert results["test_accuracy_drop_last"] == {
        "images": 16, "accuracy": pytest.approx(np.mean(predicted[:16] == labels[:16]))}


def test_validation_every_second_epoch_is_attributed_to_the_right_epoch(data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out, "--recipe", "dwr_cifar", "--validation-freq", "2", epochs=3) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["best_epoch"]["epoch"] == 2  # the only validated epoch
    assert "val_accuracy" not in results["last_epoch"]


# -------------------------------------------------------------------------- float twins


FLOAT_TWINS = [name for name in available_models() if model_entry(name).float_twin]


@pytest.mark.parametrize("twin", FLOAT_TWINS)
def test_float_twins_train_with_their_binary_models_recipe(twin):
    binary = RECIPES[model_entry(twin[len("float_"):]).recipe]
    args = build_parser().parse_args(["--model", twin])
    recipe = resolve(args)
    assert recipe.name == args.recipe == f"{binary.name}_float"
    for field in ("optimizer", "learning_rate", "schedule", "batch_size", "augmentation", "decay"):
        assert getattr(recipe, field) == getattr(binary, field), field
    assert len(recipe.stages) == 1 and recipe.loss == "ce" and not recipe.ede
    assert recipe.stages[0].epochs == sum(stage.epochs for stage in binary.stages)
    assert recipe.stages[0].weight_decay == binary.stages[0].weight_decay
    expected = "imagenet" if model_entry(twin).input_shape[0] == 224 else "cifar"
    assert recipe.augmentation == expected


def test_imagenet_evaluation_resizes_to_256_and_crops_the_centre():
    """A 300x400 image with a centred 150x150 white square: resize (shorter side 256) + centre
    crop 224 keeps it square (150 * 256 / 300 = 128 px); a plain resize would squash it."""
    image = np.zeros((300, 400, 3), np.uint8)
    image[75:225, 125:275] = 255
    source = Source("arrays", image[None], np.array([0]), 1)
    recipe = RECIPES["reactnet_two_step_float"]
    dataset = make_dataset(source, (224, 224), 1, training=False,
                           augmentation=recipe.augmentation)
    batch = next(iter(dataset))[0].numpy()[0]
    white = batch[..., 0] > 0  # normalised: black < 0, white > 0
    rows, cols = np.nonzero(white.any(1))[0], np.nonzero(white.any(0))[0]
    assert batch.shape == (224, 224, 3)
    assert abs(len(rows) - 128) <= 2 and abs(len(cols) - 128) <= 2
    assert abs(rows.mean() - 111.5) <= 1 and abs(cols.mean() - 111.5) <= 1


# ------------------------------------------------------------------------------ teacher


def _teacher(path, record=True, **kwargs):
    tf.keras.backend.clear_session()
    model = tiny_model(**kwargs)
    if record:
        lqa.save_model(model, path, model_name=TINY, preprocessing="imagenet")
    else:
        model.save(path)
    return path


def test_teacher_saved_by_the_project_is_accepted(data, tmp_path):
    teacher = _teacher(tmp_path / "teacher.keras")
    assert lqa.read_metadata(teacher) == {"input_shape": [8, 8, 3], "model_name": TINY,
                                          "preprocessing": "imagenet"}
    assert _train(data, tmp_path / "run", "--teacher", str(teacher), epochs=1) == 0


def test_train_py_records_its_preprocessing_in_model_keras(data, tmp_path):
    out = tmp_path / "run"
    assert _train(data, out, epochs=1) == 0
    assert lqa.read_metadata(out / "model.keras")["preprocessing"] == "imagenet"
    assert _train(data, tmp_path / "run2", "--teacher", str(out / "model.keras"), epochs=1) == 0


@pytest.mark.parametrize("kind,message", [
    ("unrecorded", "no recorded preprocessing"),
    ("other_size", "input size (16, 16)"),
])
def test_mismatched_teacher_needs_force(data, tmp_path, capsys, kind, message):
    path = tmp_path / "teacher.keras"
    if kind == "unrecorded":
        _teacher(path, record=False)
    else:
        _teacher(path, input_shape=(16, 16, 3))
    assert _train(data, tmp_path / "refused", "--teacher", str(path), epochs=1) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "--force-teacher" in err[0]
    assert not (tmp_path / "refused").exists()  # the retry is not blocked
    assert _train(data, tmp_path / "forced", "--teacher", str(path), "--force-teacher",
                  epochs=1) == 0
    assert f"note: --force-teacher: teacher {path} has" in capsys.readouterr().out
