"""The dependency rule (README, "How the code is organised"): the core library never imports
the model zoo; only ``larq_adaptive/training/`` and the commands may."""

import ast
import subprocess
import sys
from pathlib import Path

import larq_adaptive

CORE = Path(larq_adaptive.__file__).parent
ZOO = "larq_adaptive.models"


def _imported_modules(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def _core_modules():
    return [p for p in CORE.rglob("*.py") if "training" not in p.relative_to(CORE).parts]


def test_core_modules_exist_and_never_import_the_zoo():
    modules = _core_modules()
    assert {"quantizers.py", "export.py", "plot.py", "preprocessing.py"} <= {p.name for p in modules}
    offenders = {
        str(path.relative_to(CORE)): name
        for path in modules for name in _imported_modules(path)
        if name == ZOO or name.startswith(ZOO + ".")
    }
    assert not offenders, f"core modules importing the zoo: {offenders}"


def test_the_rule_can_fail(tmp_path):
    """The checker sees a zoo import however it is written."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from larq_adaptive import models\n")
    assert ZOO in _imported_modules(sample)


def test_importing_every_core_module_loads_no_zoo_module(subprocess_env):
    names = sorted(
        ".".join(("larq_adaptive", *path.relative_to(CORE).with_suffix("").parts))
        .removesuffix(".__init__")
        for path in _core_modules()
    )
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({ZOO!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=subprocess_env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
