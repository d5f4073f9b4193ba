"""Every ```python block of README.md and docs/*.md runs as written, each in a fresh interpreter.

An HTML comment on the line right above a fence controls its block:

    <!-- snippet: setup NAME[, NAME ...] -->   prepend the preludes / copy the files of SETUPS
    <!-- snippet: skip REASON -->               not runnable in CI; REASON must be non-empty

Unknown directives, unknown setups, a reasonless skip, or a directive that is not right above
a python fence fail. Shared data (the official checkpoint) is read from $LQA_SHARED_DIR, else
from ../shared next to the repository; a block that needs it is skipped when it is absent.
"""

import re
import shutil
import subprocess
import sys
import textwrap
from typing import NamedTuple

import pytest

from conftest import REPO as ROOT
from conftest import SHARED

REFERENCE = SHARED / "reference" / "adabin_resnet20_cifar10"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT = 300

_IMAGES = "import numpy as np\n{} = np.random.default_rng(0).integers(0, 256, {}, dtype=np.uint8)\n"
# name -> (Python prelude run before the block, files copied from REFERENCE into the cwd)
SETUPS = {
    "images_uint8": (_IMAGES.format("images_uint8", (4, 32, 32, 3)), ()),
    "test_images": (_IMAGES.format("test_images", (400, 32, 32, 3)), ()),
    "model.th": ("", ("model.th",)),
    "state_dict.npz": ("", ("state_dict.npz",)),
    "dwr_model": (  # `model`: a freshly initialised DWR ResNet-20 (the naive pre-trained one in docs)
        "from larq_adaptive.models import get_model\nmodel = get_model('dwr_resnet20')\n", ()),
    "data": (  # `data`: a tiny labelled CIFAR-shaped tf.data pipeline, one batch per epoch
        "import numpy as np, tensorflow as tf\n_rng = np.random.default_rng(0)\n"
        "data = tf.data.Dataset.from_tensor_slices((_rng.normal(size=(8, 32, 32, 3))"
        ".astype('float32'), _rng.integers(0, 10, 8))).batch(8)\n", ()),
}

FENCE = re.compile(r"^\s*(```+)\s*([\w+-]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*snippet:(.*?)-->\s*$")


class Block(NamedTuple):
    id: str  # "docs/training.md:L94": the file and the line of the opening fence
    line: int
    code: str
    directive: str | None  # the text after "snippet:" in the comment right above the fence


def collect(path):
    """(python blocks, line numbers of directives not right above a python fence) of a file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, attached, open_fence = [], set(), None
    for i, line in enumerate(lines):
        m = FENCE.match(line)
        if open_fence is None and m:
            open_fence, start, lang = m.group(1), i, m.group(2)
        elif open_fence is not None and line.strip() == open_fence:
            if lang in ("python", "py"):
                above = DIRECTIVE.match(lines[start - 1]) if start else None
                attached.update([start - 1] if above else [])
                code = textwrap.dedent("\n".join(lines[start + 1:i]))
                blocks.append(Block(f"{path.relative_to(ROOT).as_posix()}:L{start + 1}", start + 1,
                                    code, above.group(1).strip() if above else None))
            open_fence = None
    stray = [i + 1 for i, ln in enumerate(lines) if DIRECTIVE.match(ln) and i not in attached]
    return blocks, stray


BLOCKS = [b for path in DOCS for b in collect(path)[0]]


def parse_directive(directive):
    """The setup names of a directive; skips on `skip REASON`, fails on anything else."""
    if directive is None:
        return []
    verb, _, arg = directive.partition(" ")
    arg = arg.strip()
    if verb == "skip" and arg:
        pytest.skip(arg)
    names = [n.strip() for n in arg.split(",") if n.strip()]
    if verb != "setup" or not names or set(names) - SETUPS.keys():
        pytest.fail(f"bad snippet directive {directive!r}: use 'setup NAME[, NAME]' with NAME in "
                    f"{sorted(SETUPS)}, or 'skip REASON' with a non-empty reason")
    return names


@pytest.fixture
def snippet_dir(tmp_path):
    """prepare(names) -> (prelude, cwd): a temporary cwd holding the named setups' files."""

    def prepare(names):
        for name in names:
            for file in SETUPS[name][1]:
                if not (REFERENCE / file).is_file():
                    pytest.skip(f"setup {name!r} needs {REFERENCE / file}: shared data the repository "
                                "must not commit; point LQA_SHARED_DIR at the shared folder")
                shutil.copy(REFERENCE / file, tmp_path / file)
        return "".join(SETUPS[name][0] for name in names), tmp_path

    return prepare


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_snippet(block, snippet_dir, subprocess_env):
    prelude, cwd = snippet_dir(parse_directive(block.directive))
    # Padding keeps the markdown line numbers: tracebacks read `File "README.md", line 121`.
    source = "\n" * block.line + block.code + "\n"
    script = prelude + f"exec(compile({source!r}, {block.id.split(':')[0]!r}, 'exec'))\n"
    try:
        proc = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=subprocess_env,
                              capture_output=True, text=True, timeout=TIMEOUT)
        failure = proc.returncode and (f"exited with {proc.returncode}", proc.stderr)
    except subprocess.TimeoutExpired as e:
        failure = (f"did not finish in {TIMEOUT} s", e.stderr)
    if failure:
        why, err = failure
        err = err.decode(errors="replace") if isinstance(err, bytes) else err or ""
        pytest.fail(f"{block.id} {why}; stderr tail:\n{err[-3000:]}", pytrace=False)


def test_collection_is_sound():
    ids = [b.id for b in BLOCKS]
    assert any(i.startswith("README.md:") for i in ids), "no ```python block found in README.md"
    assert len(ids) == len(set(ids)), f"duplicate snippet ids: {ids}"
    stray = {p.relative_to(ROOT).as_posix(): s for p in DOCS if (s := collect(p)[1])}
    assert not stray, f"snippet directives not right above a ```python fence (file: lines): {stray}"
