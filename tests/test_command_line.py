"""Every command's bad-input contract, run as installed console scripts in fresh processes:
one line ``PROG: error: ...`` on stderr, exit status 2, no traceback, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import command_stderr_lines

BIN = Path(sys.executable).parent

# (id, argv after the script name with {tmp} for the test's folder, words the line must hold)
CASES = [
    ("export-missing", ["larq-adaptive-export", "{tmp}/none.keras", "{tmp}/out.tflite"],
     ["does not exist"]),
    ("export-corrupt", ["larq-adaptive-export", "{tmp}/corrupt.keras", "{tmp}/out.tflite"],
     ["cannot load model", "corrupt.keras"]),
    ("export-output-under-a-file", ["larq-adaptive-export", "{tmp}/corrupt.keras",
                                    "{tmp}/corrupt.keras/out.tflite"], ["cannot be created",
                                                                        "is a file"]),
    ("export-corrupt-new-folder", ["larq-adaptive-export", "{tmp}/corrupt.keras",
                                   "{tmp}/new/out.tflite"], ["cannot load model"]),
    ("plot-sets-corrupt", ["larq-adaptive-plot", "binary-sets", "{tmp}/corrupt.keras",
                           "{tmp}/out.png"], ["cannot load model"]),
    ("plot-sets-bad-images", ["larq-adaptive-plot", "binary-sets", "{tmp}/corrupt.keras",
                              "{tmp}/out.png", "--images", "{tmp}/corrupt.keras"], ["--images"]),
    ("plot-curves-no-run", ["larq-adaptive-plot", "curves", "{tmp}/none", "{tmp}/out.png"],
     ["log.csv"]),
    ("plot-bad-suffix", ["larq-adaptive-plot", "curves", "{tmp}", "{tmp}/out.tflite"],
     [".png"]),
    ("plot-no-subcommand", ["larq-adaptive-plot"], ["required"]),
    ("report-unknown", ["larq-adaptive-report", "resnet9000"], ["unknown model"]),
    ("train-unknown", ["larq-adaptive-train", "--model", "resnet9000"], ["invalid choice"]),
    ("train-bad-int", ["larq-adaptive-train", "--epochs", "two"], ["--epochs"]),
    ("dwr-unknown", ["larq-adaptive-dwr-search", "--backbone", "resnet9000", "--s", "3"],
     ["unknown backbone"]),
]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("commands")
    (folder / "corrupt.keras").write_bytes(b"PK\x03\x04 this is not a zip archive")
    return folder


@pytest.mark.parametrize("argv,words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2(workdir, argv, words, subprocess_env):
    before = sorted(p.name for p in workdir.iterdir())
    command = [str(BIN / argv[0]), *(a.format(tmp=workdir) for a in argv[1:])]
    result = subprocess.run(command, capture_output=True, text=True, env=subprocess_env,
                            timeout=300, cwd=workdir)
    lines = command_stderr_lines(result.stderr)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{argv[0]}: error: ") or lines[0].startswith("train.py: error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written
