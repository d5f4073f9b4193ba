"""train.py / larq_adaptive.training: recipes, schedules, weight decay, KD, stages, resume,
errors. Most runs use a tiny registered network (8x8 inputs) so that every recipe runs end
to end in seconds; the registered CIFAR models get smoke runs too."""

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.training import (
    RECIPES,
    CoupledWeightDecay,
    Distiller,
    decayed_variables,
    learning_rate,
    soft_target_cross_entropy,
)
from larq_adaptive.models import available_models
from larq_adaptive.training.cli import main
from larq_adaptive.training.recipes import get_recipe

from conftest import REPO, SHARED, TINY, bconv_options, npz_shard, tiny_model

pytestmark = pytest.mark.usefixtures("tiny_registered_model")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    return npz_shard(root / "train", 32), npz_shard(root / "val", 16, seed=1)


def _args(data, out, *extra, model=TINY, epochs=1, steps=2, batch=8):
    train, val = data
    return ["--model", model, "--data-dir", str(train), "--val-data-dir", str(val),
            "--output-dir", str(out), "--epochs", str(epochs), "--steps-per-epoch", str(steps),
            "--batch-size", str(batch), "--verbose", "0", *extra]


def _csv_epochs(path):
    lines = Path(path).read_text().strip().splitlines()
    return [int(line.split(",")[0]) for line in lines[1:]]


# ---------------------------------------------------------------------------- recipes


def test_recipes_follow_the_spec():
    adabin = RECIPES["adabin_cifar"]  # spec 1.8
    assert (adabin.optimizer, adabin.learning_rate, adabin.schedule, adabin.batch_size) == (
        "sgd", 0.1, "cosine", 128)
    assert [(s.epochs, s.weight_decay) for s in adabin.stages] == [(400, 1e-4)]
    assert adabin.decay == "all" and adabin.ede
    react = RECIPES["reactnet_two_step"]  # spec 2.5
    assert (react.optimizer, react.learning_rate, react.schedule, react.loss) == (
        "adam", 1.25e-3, "linear", "kd")
    assert [(s.epochs, s.weight_decay, s.binary_weights) for s in react.stages] == [
        (128, 1e-5, False), (128, 0.0, True)]
    assert react.decay == "reactnet"
    dwr = RECIPES["dwr_imagenet_two_step"]  # spec 4.5
    assert (dwr.schedule, dwr.learning_rate, dwr.batch_size) == ("cosine", 1e-3, 512)
    assert [s.epochs for s in dwr.stages] == [256, 256]
    assert RECIPES["dwr_cifar_resnet18"].stages[0].epochs == 600
    assert RECIPES["dwr_cifar_resnet18"].learning_rate == 0.08


def test_learning_rate_schedules_per_epoch():
    assert learning_rate("cosine", 0.1, 0, 4) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.1, 2, 4) == pytest.approx(0.05)
    assert learning_rate("cosine", 0.1, 1, 4) == pytest.approx(0.05 * (1 + math.sqrt(0.5)))
    # ReActNet LambdaLR(1 - e/E) stepped before the epoch: 0.75, 0.5, 0.25, 0 of lr0.
    assert [learning_rate("linear", 1.0, e, 4) for e in range(4)] == pytest.approx(
        [0.75, 0.5, 0.25, 0.0])


def test_weight_decay_sets_and_value():
    model = tiny_model(binary_weights=False)
    names = sorted(v.name for v in decayed_variables(model, "reactnet"))
    assert names == sorted([
        "stem_conv/kernel:0", "bconv/kernel:0", "bconv/r_sign/bias:0",
        "act/bias_in:0", "act/bias_out:0",
    ])  # not the BN, PReLU slopes or the Dense head
    assert len(decayed_variables(model, "all")) == len(model.trainable_variables) == 12
    decay = CoupledWeightDecay(model, "reactnet")
    decay.coefficient.assign(0.02)
    expected = 0.01 * sum(float(np.sum(v.numpy() ** 2)) for v in decay.variables)
    assert float(tf.add_n(model.losses)) == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------- distillation


def test_soft_target_cross_entropy_hand_values():
    teacher = tf.constant([[0.0, math.log(3.0)], [5.0, 5.0]])  # softmax: (1/4, 3/4), (1/2, 1/2)
    student = tf.constant([[math.log(3.0), 0.0], [0.0, 0.0]])  # log-probs: ln 3/4, ln 1/4; ln 1/2
    expected = [-(0.25 * math.log(0.75) + 0.75 * math.log(0.25)), math.log(2.0)]
    assert soft_target_cross_entropy(teacher, student).numpy() == pytest.approx(expected, 1e-6)


def test_distiller_trains_on_teacher_soft_targets():
    def dense_model(kernel):
        inputs = tf.keras.Input((2,))
        layer = tf.keras.layers.Dense(2, use_bias=False)
        model = tf.keras.Model(inputs, layer(inputs))
        layer.set_weights([np.array(kernel, np.float32)])
        return model

    student = dense_model([[math.log(3.0), 0.0], [0.0, 0.0]])
    teacher = dense_model([[0.0, math.log(3.0)], [5.0, 5.0]])
    distiller = Distiller(student, teacher)
    distiller.compile(tf.keras.optimizers.SGD(0.0),
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = np.eye(2, dtype=np.float32), np.array([1, 1])  # hard labels must not matter
    logs = distiller.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    kd = (-(0.25 * math.log(0.75) + 0.75 * math.log(0.25)) + math.log(2.0)) / 2
    assert logs["loss"][0] == pytest.approx(kd, rel=1e-5)
    assert not teacher.trainable and len(distiller.trainable_variables) == 1


# -------------------------------------------------------------------- runs end to end


# Recipes that differ from another one only in numbers run in the slow suite.
_SAME_CODE_PATH = ("reactnet_imagenet", "reactnet_resnet18_two_step", "dwr_cifar_resnet18")


@pytest.mark.parametrize("recipe", [
    pytest.param(name, marks=pytest.mark.slow) if name in _SAME_CODE_PATH else name
    for name in sorted(RECIPES)
])
def test_every_recipe_runs_end_to_end(recipe, tiny_data, tmp_path):
    out = tmp_path / "run"
    # The linear (ReActNet) schedule has lr 0 in a stage's last epoch: 1 epoch is refused.
    epochs = 2 if RECIPES[recipe].schedule == "linear" else 1
    assert main(_args(tiny_data, out, "--recipe", recipe, steps=1, epochs=epochs)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["stages"] == [s.name for s in RECIPES[recipe].stages]
    assert results["test_images"] == 16 and 0.0 <= results["test_accuracy"] <= 1.0
    for k in range(1, len(RECIPES[recipe].stages) + 1):
        assert _csv_epochs(out / f"stage_{k}" / "log.csv") == list(range(epochs))
        assert (out / f"stage_{k}" / "checkpoints" / f"epoch_{epochs:03d}.weights.h5").exists()
        assert any((out / f"stage_{k}" / "logs").rglob("*tfevents*"))
    for name in ("config.json", "summary.txt", "model.keras"):
        assert (out / name).exists()
    assert "Total" in (out / "summary.txt").read_text()


class _Recorder(tf.keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.begin = []

    def on_train_begin(self, logs=None):
        student = getattr(self.model, "student", self.model)
        self.begin.append({"weights": [w.numpy().copy() for w in student.weights],
                           "kernel": student.get_layer("bconv").kernel.numpy().copy()})

    def on_epoch_begin(self, epoch, logs=None):
        student = getattr(self.model, "student", self.model)
        layer = student.get_layer("bconv")
        if epoch > 0:
            return
        self.begin[-1]["active"] = float(layer.kernel_quantizer.active.numpy())
        kernel = tf.convert_to_tensor(layer.kernel)
        self.begin[-1]["effective"] = layer.kernel_quantizer(kernel).numpy()
        self.begin[-1]["lr"] = float(self.model.optimizer.learning_rate.numpy())
        self.begin[-1]["wd"] = [float(tf.add_n(student.losses))]


def test_two_step_hand_over(tiny_data, tmp_path):
    out, recorder = tmp_path / "run", _Recorder()
    argv = _args(tiny_data, out, "--recipe", "reactnet_cifar", "--epochs", "2", "--lr", "0.01")
    assert main(argv, extra_callbacks=[recorder]) == 0
    step1, step2 = recorder.begin
    assert step1["active"] == 0.0 and step2["active"] == 1.0
    # the linear schedule restarts per stage: epoch 0 of 2 -> lr0 (1 - 1/2)
    assert step1["lr"] == pytest.approx(0.005) and step2["lr"] == pytest.approx(0.005)
    assert step2["wd"] == [0.0] and step1["wd"][0] > 0
    final1 = tiny_model(binary_weights=False)
    final1.load_weights(str(out / "stage_1" / "final.weights.h5"))
    assert len(final1.weights) == 17
    for variable, saved, started in zip(final1.weights, final1.get_weights(), step2["weights"]):
        if "active" not in variable.name:  # the switch itself is set before stage 2 starts
            np.testing.assert_array_equal(started, saved)  # stage 2 starts from stage 1's weights
    kernel = final1.get_layer("bconv").kernel.numpy()
    np.testing.assert_array_equal(step2["kernel"], kernel)
    scale = np.mean(np.abs(kernel), axis=(0, 1, 2))
    np.testing.assert_allclose(step2["effective"], np.where(kernel >= 0, 1, -1) * scale, 1e-6)
    assert len(np.unique(step1["effective"])) > 100  # stage 1: real-valued kernels


class _Crash(Exception):
    pass


class _CrashAfter(tf.keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Crash()


def test_resume_after_a_crash_and_refusal_of_other_flags(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _args(tiny_data, out, "--recipe", "dwr_cifar", epochs=4)
    with pytest.raises(_Crash):
        main(argv, extra_callbacks=[_CrashAfter(1)])
    log = out / "stage_1" / "log.csv"
    assert _csv_epochs(log) == [0, 1]
    assert main(argv) == 0  # the same command continues at epoch 2
    assert _csv_epochs(log) == [0, 1, 2, 3]
    assert main(argv) == 0  # finished: nothing trained again
    assert _csv_epochs(log) == [0, 1, 2, 3]
    capsys.readouterr()
    assert main(argv + ["--lr", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different flags" in err[0] and "lr" in err[0]
    assert main(argv + ["--lr", "0.5", "--overwrite", "--epochs", "1"]) == 0
    assert _csv_epochs(log) == [0]


def test_nan_loss_exits_1_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, capsys):
    class Poison(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                kernel = self.model.get_layer("logits").kernel
                kernel.assign(tf.fill(kernel.shape, float("nan")))

    out = tmp_path / "run"
    assert main(_args(tiny_data, out, epochs=3), extra_callbacks=[Poison()]) == 1
    err = capsys.readouterr().err
    assert "nan" in err.lower() and "epoch_001.weights.h5" in err
    checkpoints = sorted(p.name for p in (out / "stage_1" / "checkpoints").glob("epoch_*"))
    assert checkpoints == ["epoch_001.weights.h5"]
    model = tiny_model()
    model.load_weights(str(out / "stage_1" / "checkpoints" / checkpoints[0]))
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not (out / "model.keras").exists()


@pytest.mark.parametrize("flag,dtype", [(["--mixed-precision"], "float16"),
                                        (["--mixed-precision", "float16"], "float16"),
                                        (["--mixed-precision", "bfloat16"], "bfloat16")])
def test_mixed_precision_trains(tiny_data, tmp_path, flag, dtype):
    seen = {}

    class Dtypes(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["conv"] = self.model.get_layer("bconv").compute_dtype
            seen["head"] = self.model.get_layer("logits").compute_dtype

    assert main(_args(tiny_data, tmp_path / "run", *flag), extra_callbacks=[Dtypes()]) == 0
    assert seen == {"conv": dtype, "head": "float32"}
    assert tf.keras.mixed_precision.global_policy().name == "float32"
    assert json.loads((tmp_path / "run" / "config.json").read_text())["mixed_precision"] == dtype


@pytest.mark.parametrize("policy", ["float16", "bfloat16"])
def test_export_tflite_after_two_step_mixed_precision_training(tiny_data, tmp_path, capsys,
                                                                policy):
    """--export-tflite freezes the two-step switch, rebuilds float32 and reports LceBconv2d."""
    path = tmp_path / "model.tflite"
    argv = _args(tiny_data, tmp_path / "run", "--recipe", "reactnet_cifar", "--mixed-precision",
                 policy, "--export-tflite", str(path), epochs=2, steps=1)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "1/1 binary convs are LceBconv2d" in out and "LceBconv2d" in out
    assert path.stat().st_size > 0


def test_a_run_of_the_bare_mixed_precision_switch_resumes(tiny_data, tmp_path):
    """config.json of earlier versions recorded the bare switch as true: same run."""
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--mixed-precision")) == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "mixed_precision": True}))
    assert main(_args(tiny_data, out, "--mixed-precision", "float16")) == 0


def test_distillation_from_a_saved_teacher(tiny_data, tmp_path, capsys):
    teacher = tmp_path / "teacher.keras"
    lqa.save_model(tiny_model(), teacher, preprocessing="imagenet")
    assert main(_args(tiny_data, tmp_path / "run", "--teacher", str(teacher))) == 0
    tf.keras.backend.clear_session()
    lqa.save_model(tiny_model(num_classes=3), tmp_path / "wrong.keras", preprocessing="imagenet")
    assert main(_args(tiny_data, tmp_path / "run2", "--teacher",
                      str(tmp_path / "wrong.keras"))) == 2
    assert "mismatched classes" in capsys.readouterr().err


def test_image_folders_with_train_and_test(tmp_path):
    root = tmp_path / "jpeg"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            (root / split / name).mkdir(parents=True)
            for i in range(8):
                image = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                (root / split / name / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    out = tmp_path / "run"
    argv = ["--model", TINY, "--data-dir", str(root), "--output-dir", str(out), "--epochs", "1",
            "--batch-size", "4", "--verbose", "0"]
    assert main(argv) == 0
    assert json.loads((out / "results.json").read_text())["test_images"] == 16


# --------------------------------------------------------------------------- errors


def _one_error_line(capsys, *words):
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1 and err[0].startswith("train.py: error:"), err
    for word in words:
        assert word in err[0]


def test_bad_inputs_exit_2_with_one_line(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "no_such_model"])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "no_such_model")

    assert main(_args((tmp_path / "missing", tiny_data[1]), tmp_path / "a")) == 2
    _one_error_line(capsys, "does not exist")

    (tmp_path / "empty").mkdir()
    assert main(_args((tmp_path / "empty", tiny_data[1]), tmp_path / "b")) == 2
    _one_error_line(capsys, "empty")

    bad = tmp_path / "bad"
    for name in ("a", "b"):
        (bad / name).mkdir(parents=True)
        (bad / name / "0.png").write_bytes(tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy())
    (bad / "b" / "1.jpg").write_bytes(b"this is not a jpeg")
    assert main(_args((bad, bad), tmp_path / "c")) == 2
    _one_error_line(capsys, "corrupt", "1.jpg")

    other = tmp_path / "other"
    for name in ("a", "c"):
        (other / name).mkdir(parents=True)
        (other / name / "0.png").write_bytes((bad / "a" / "0.png").read_bytes())
    (bad / "b" / "1.jpg").unlink()
    assert main(_args((bad, other), tmp_path / "d")) == 2
    _one_error_line(capsys, "class")

    assert main(_args((tiny_data[0], npz_shard(tmp_path / "v12", 12, classes=12)), tmp_path / "e")) == 2
    _one_error_line(capsys, "mismatched classes")



def test_recipe_mismatch_names_the_recipes_that_fit_and_one_of_them_works(capsys):
    """The model's own recipe cannot train another method: the line says so and names the
    recipes that can (CIFAR ones first for a CIFAR recipe); the first of them resolves."""
    from larq_adaptive.training.cli import build_parser, resolve

    assert main(["--model", "adabin_resnet20", "--method", "ste_sign"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(err) == 1, err
    assert err[0].startswith("train.py: error: adabin_resnet20's recipe 'adabin_cifar' is for "
                             "adabin networks, not method 'ste_sign'; pass one for ste_sign "
                             "networks: --recipe ")
    suggested = err[0].rsplit("--recipe ", 1)[1].split(" or ")
    assert suggested and all(get_recipe(name).fits("ste_sign") for name in suggested)
    assert get_recipe(suggested[0]).augmentation == "cifar"
    args = build_parser().parse_args(["--model", "adabin_resnet20", "--method", "ste_sign",
                                      "--recipe", suggested[0]])
    assert resolve(args).name == suggested[0]
    assert main(["--model", "adabin_resnet20", "--recipe", "reactnet_cifar"]) == 2
    _one_error_line(capsys, "--recipe reactnet_cifar is for reactnet/", "not method 'adabin'",
                    "--recipe adabin_cifar")


def test_a_data_folder_of_archives_says_to_extract_them(tmp_path, capsys):
    folder = tmp_path / "cifar10-jpeg"
    folder.mkdir()
    for name in ("train.tar.gz", "test.tar.gz"):
        (folder / name).write_bytes(b"not really an archive")
    assert main(["--data-dir", str(folder), "--output-dir", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "holds archives (test.tar.gz, train.tar.gz)", "extract",
                    f"tar -xzf {folder / 'train.tar.gz'}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags,words", [
    (["--batch-size", "0"], ["--batch-size", ">= 1"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--lr", "inf"], ["--lr", "finite"]),
    (["--lr", "0"], ["--lr", "> 0"]),
    (["--weight-decay=-1e-4"], ["--weight-decay"]),
    (["--recipe", "reactnet_cifar", "--epochs", "1"], ["learning rate 0", "--epochs 2"]),
    (["--threads=-1"], ["--threads", ">= 0"]),
    (["--inter-op-threads=-2"], ["--inter-op-threads", ">= 0"]),
])
def test_hostile_flag_values_exit_2(tiny_data, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, *flags)) == 2
    _one_error_line(capsys, *words)
    assert not out.exists()


def test_a_failed_start_leaves_nothing_that_blocks_the_retry(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args((tmp_path / "wrong", tiny_data[1]), out)) == 2  # bad --data-dir
    _one_error_line(capsys, "does not exist")
    bad_val = tmp_path / "val12"
    npz_shard(bad_val, 12, classes=12)
    assert main(_args((tiny_data[0], bad_val), out)) == 2  # fails after creating the folder
    _one_error_line(capsys, "mismatched classes")
    assert not out.exists()
    assert main(_args(tiny_data, out)) == 0  # the corrected command is not refused
    assert (out / "model.keras").is_file()
    # a real run is never removed by a later failed start with the same folder
    assert main(_args((tmp_path / "wrong", tiny_data[1]), out)) == 2
    capsys.readouterr()
    assert (out / "model.keras").is_file()


def test_output_dir_that_is_a_file_or_cannot_be_made(tiny_data, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(_args(tiny_data, blocker)) == 2
    _one_error_line(capsys, "is a file")
    assert main(_args(tiny_data, blocker / "run")) == 2
    _one_error_line(capsys, "cannot create --output-dir")
    assert blocker.read_text() == "x"


def test_default_output_dir_names_the_data(tiny_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a for a in _args(tiny_data, tmp_path) if a != str(tmp_path)]
    argv.remove("--output-dir")
    assert main(argv) == 0
    assert (tmp_path / "runs" / f"{TINY}_{tiny_data[0].name}_dwr_cifar" / "model.keras").is_file()


def test_offline_tfds_download_exits_2(tmp_path, capsys):
    argv = ["--model", TINY, "--dataset", "cifar10", "--tfds-data-dir", str(tmp_path / "tfds"),
            "--output-dir", str(tmp_path / "run"), "--verbose", "0"]
    assert main(argv) == 2
    _one_error_line(capsys, "cifar10", "--tfds-data-dir")


def test_help_lists_models_and_recipes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for name in available_models() + sorted(RECIPES):
        assert name in text


# ------------------------------------------------------------------------ data


def test_digits_dataset():
    from larq_adaptive.data import load_digits

    (x_train, y_train), (x_test, y_test) = load_digits((32, 32))
    assert x_train.shape == (1437, 32, 32, 3) and x_test.shape == (360, 32, 32, 3)
    assert x_train.dtype == np.uint8 and x_train.max() == 255 and x_train.min() == 0
    assert np.array_equal(x_train[..., 0], x_train[..., 2])
    assert np.bincount(y_test).min() >= 35  # stratified: ~36 of each digit
    (again, _), _ = load_digits((32, 32))
    assert np.array_equal(again, x_train)  # fixed split


def test_cifar_shards_load():
    train = SHARED / "data" / "cifar10-test-original"
    if not train.exists():
        pytest.skip("shared/ data not present next to the repository")
    from larq_adaptive.data import load_npz_dir

    images, labels = load_npz_dir(train)
    assert images.shape == (10000, 32, 32, 3) and np.bincount(labels).tolist() == [1000] * 10


# ------------------------------------------------------------------ registered models


@pytest.mark.slow  # ~50 s each on 2 idle cores (ResNet-20 tracing + .keras save)
@pytest.mark.parametrize("model,recipe", [
    ("adabin_resnet20", "adabin_cifar"),
    ("reactnet_resnet20", "reactnet_cifar"),
])
def test_registered_cifar_models_smoke(model, recipe, tmp_path):
    data = (npz_shard(tmp_path / "t", 8, size=32), npz_shard(tmp_path / "v", 4, seed=1, size=32))
    out = tmp_path / "run"
    assert main(_args(data, out, "--recipe", recipe, model=model, steps=1, batch=4, epochs=2)) == 0
    assert len(json.loads((out / "results.json").read_text())["stages"]) == len(
        RECIPES[recipe].stages)


# ------------------------------------------------------------------- subprocesses


# The training command in a subprocess, with the tiny model registered first.
RUN_MAIN = """
import sys
import larq_adaptive
from conftest import register_tiny_model
register_tiny_model()
from larq_adaptive.models import available_models
from larq_adaptive.training.cli import main
sys.exit(main(sys.argv[1:]))
"""
MIRRORED = """
import larq_adaptive
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""" + RUN_MAIN


def test_mirrored_strategy_on_two_logical_cpus(tiny_data, tmp_path, subprocess_env):
    argv = _args(tiny_data, tmp_path / "run", "--strategy", "mirrored")
    result = subprocess.run([sys.executable, "-c", MIRRORED, *argv], capture_output=True,
                            text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MirroredStrategy, 2 replica(s)" in result.stdout


def test_pad_values_flag_reaches_the_model_and_the_lce_file(tiny_data, tmp_path,
                                                           subprocess_env):
    out, tflite = tmp_path / "run", tmp_path / "tiny.tflite"
    argv = _args(tiny_data, out, "--pad-values", "1", "--export-tflite", str(tflite))
    result = subprocess.run([sys.executable, "-c", RUN_MAIN, *argv], capture_output=True,
                            text=True, env=subprocess_env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["pad_values"] == 1.0
    assert lqa.load_model(out / "model.keras", compile=False).get_layer("bconv").pad_values == 1
    # the stride-1 binary conv pads with +1 inside LCE's LceBconv2d ("same", pad_values 1)
    assert [(o["padding"], o["pad_values"]) for o in bconv_options(tflite.read_bytes())] == [
        (0, 1)]


@pytest.mark.parametrize("value", ["int8", "float32", "bf16"])
def test_bad_mixed_precision_exits_2_with_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--mixed-precision", value])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "--mixed-precision", "bfloat16")


@pytest.mark.parametrize("value", ["2", "0.5", "-1", "one"])
def test_bad_pad_values_exit_2_with_one_line(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--pad-values", value])
    assert exit_info.value.code == 2
    _one_error_line(capsys, "--pad-values", "0 or 1")


@pytest.mark.slow
def test_kill_9_then_rerun_continues(tiny_data, tmp_path, subprocess_env):
    out = tmp_path / "run"
    argv = _args(tiny_data, out, epochs=40, steps=20)
    process = subprocess.Popen([sys.executable, "-c", RUN_MAIN, *argv], env=subprocess_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "stage_1" / "checkpoints" / "epoch_002.weights.h5"
    deadline = time.time() + 300
    while not first.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _csv_epochs(out / "stage_1" / "log.csv")
    assert 2 <= len(done) < 40
    assert main(argv) == 0
    epochs = _csv_epochs(out / "stage_1" / "log.csv")
    assert epochs == list(range(40)) or epochs[: len(done)] == done and epochs[-1] == 39
    assert sorted(set(epochs)) == list(range(40))
    # exact: the same weights as an uninterrupted run (position-indexed data, same seed)
    assert main(_args(tiny_data, tmp_path / "uninterrupted", epochs=40, steps=20)) == 0
    resumed, whole = (lqa.load_model(d / "model.keras").get_weights()
                      for d in (out, tmp_path / "uninterrupted"))
    assert all(np.array_equal(a, b) for a, b in zip(resumed, whole))


@pytest.mark.slow
def test_default_run_is_the_make_train_job(tmp_path, subprocess_env):
    start = time.time()
    result = subprocess.run([sys.executable, str(REPO / "train.py")], cwd=tmp_path,
                            capture_output=True, text=True, env=subprocess_env, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy = [line for line in result.stdout.splitlines() if "accuracy:" in line][-1]
    assert float(accuracy.split("accuracy:")[1].split()[0]) > 0.5
    assert "Model size" in result.stdout
    print(f"default run: {time.time() - start:.0f} s, {accuracy}")


THREADS = """
import sys
import larq_adaptive
import tensorflow as tf
from conftest import register_tiny_model
register_tiny_model()
from larq_adaptive.training.cli import main
status = main(sys.argv[1:])
print("THREADS", tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads(), status)
"""


def test_thread_flags_set_tensorflows_pools(tiny_data, tmp_path, subprocess_env):
    argv = _args(tiny_data, tmp_path / "run", "--threads", "1", "--inter-op-threads", "2")
    result = subprocess.run([sys.executable, "-c", THREADS, *argv], capture_output=True,
                            text=True, env=subprocess_env, timeout=600)
    assert "THREADS 1 2 0" in result.stdout, result.stderr[-2000:]
    assert "ignored" not in result.stdout
    # the flags only change speed: the same run resumes with other values
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "threads" not in config and "inter_op_threads" not in config
