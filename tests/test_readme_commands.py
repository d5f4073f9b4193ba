"""The shell commands of README's Quickstart and Training sections, run as written at smoke
size (slow suite): every ``python train.py ...`` line in a fresh process, in order, in one
working directory (the distillation example needs the teacher of the line before), with
``--epochs 2 --steps-per-epoch 2 --batch-size 8`` added (2, not 1: the linear ReActNet
schedule is 0 in the last epoch, which train.py refuses for a 1-epoch stage); ``make`` lines
as dry runs (their real runs are the test suite and ``test_default_run_is_the_make_train_job``)."""

import re
import shlex
import subprocess
import sys

import pytest

from conftest import REPO, SHARED

SECTIONS = ("Quickstart", "Training")
SMOKE = ["--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "8", "--verbose", "0"]


def readme_commands():
    """Command lines (continuations joined, comments dropped) of the ```bash blocks of the
    README sections named in SECTIONS."""
    text = (REPO / "README.md").read_text()
    commands = []
    for section in re.split(r"(?m)^## ", text)[1:]:
        title = section.splitlines()[0].strip()
        if title not in SECTIONS:
            continue
        for block in re.findall(r"```bash\n(.*?)```", section, re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_commands_are_found():
    assert any(c.startswith("make train") for c in COMMANDS)
    assert sum(c.startswith("python train.py") for c in COMMANDS) >= 4


def _argv(command):
    words = [w for w in shlex.split(command) if w != "..."]
    words = [w.replace("../shared", str(SHARED)) for w in words]
    assert words[:2] == ["python", "train.py"], command
    extra = [] if "--help" in words else SMOKE
    return [sys.executable, str(REPO / "train.py"), *words[2:], *extra]


@pytest.mark.slow
def test_readme_commands_run_as_written(tmp_path, subprocess_env):
    for command in COMMANDS:
        if command.startswith("make "):
            result = subprocess.run(["make", "-n", *shlex.split(command)[1:]], cwd=REPO,
                                    capture_output=True, text=True, timeout=120)
            assert result.returncode == 0, (command, result.stderr)
            assert ("train.py" if "train" in command else "pytest") in result.stdout
            continue
        if "../shared" in command and not SHARED.is_dir():
            pytest.skip(f"{SHARED} is not present for: {command}")
        result = subprocess.run(_argv(command), cwd=tmp_path, capture_output=True, text=True,
                                env=subprocess_env, timeout=900)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        assert "Traceback" not in result.stderr, command
        if "--help" not in command:
            assert "test accuracy:" in result.stdout, (command, result.stdout[-2000:])
    assert (tmp_path / "runs" / "teacher" / "model.keras").is_file()
