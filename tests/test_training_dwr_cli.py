"""The DWR pipeline command (``larq-adaptive-dwr-search``): reshape -> pre-train with a recipe on
any data train.py reads -> width search; bad input exits 2 with one line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive.training.dwr_cli import main

from conftest import command_stderr_lines


# --------------------------------------------------------------------------------------
# main(): the pipeline command
# --------------------------------------------------------------------------------------


def _write_shards(directory, count, seed):
    rng = np.random.default_rng(seed)
    directory.mkdir()
    for shard in range(2):
        np.savez(directory / f"part_{shard}.npz",
                 images=rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8),
                 labels=rng.integers(0, 10, count))
    return str(directory)


def test_main_smoke(tmp_path, capsys):
    tf.keras.backend.clear_session()
    train = _write_shards(tmp_path / "train", 24, 0)
    val = _write_shards(tmp_path / "val", 10, 1)
    saved = str(tmp_path / "naive.h5")
    common = ["--backbone", "resnet20", "--s", "3", "--width-multiplier", "1",
              "--data-dir", train, "--val-data-dir", val, "--batch-size", "16", "--images", "12"]
    status = main(common + ["--epochs", "1", "--steps-per-epoch", "2", "--save-weights", saved])
    out = capsys.readouterr().out
    assert status == 0
    assert "40.1 M binary MACs" in out  # the original
    assert "top-1" in out
    line = next(line for line in out.splitlines() if line.startswith("final widths:"))
    widths = eval(line.split(":", 1)[1])  # a printed list of ints
    # 3 stages; the naive widths are 16, 32, 64 (multiplier 1): pruning can only shrink
    assert len(widths) == 3 and all(1 <= w <= n for w, n in zip(widths, (16, 32, 64)))
    # search again from the saved weights without training: the same widths
    tf.keras.backend.clear_session()
    assert main(common + ["--epochs", "0", "--weights", saved]) == 0
    assert line in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("args,message", [
    (["--backbone", "resnet21", "--s", "3"], "unknown backbone"),
    (["--backbone", "resnet20", "--s", "0.5"], "--s must be >= 1"),
    (["--backbone", "resnet20", "--s", "3", "--images", "0"], "--images must be >= 1"),
    (["--backbone", "resnet20", "--s", "3", "--eps", "0"], "--eps must be > 0"),
])
def test_main_bad_input_exits_2(tmp_path, capsys, args, message):
    data = _write_shards(tmp_path / "data", 2, 0)
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--data-dir", data])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "larq_adaptive.training.dwr_cli"],
    [str(Path(sys.executable).parent / "larq-adaptive-dwr-search")],  # the console script
])
def test_command_missing_dir_exit_status_and_no_traceback(tmp_path, command, subprocess_env):
    missing = str(tmp_path / "nowhere")
    process = subprocess.run(
        [*command, "--backbone", "resnet20", "--s", "3", "--data-dir", missing],
        capture_output=True, text=True, env=subprocess_env, timeout=300)
    assert "Traceback" not in process.stderr
    assert process.returncode == 2
    (last_line,) = command_stderr_lines(process.stderr)
    assert last_line.endswith(f"--data-dir {missing!r} does not exist")


def test_main_data_dir_without_shards_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()  # exists but holds no .npz
    with pytest.raises(SystemExit) as exit_info:
        main(["--backbone", "resnet20", "--s", "3", "--data-dir", str(empty)])
    assert exit_info.value.code == 2
