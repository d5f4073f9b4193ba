"""The speed benchmarks run as documented (smoke size, fresh processes): their tables and
JSON carry every row, the CPU's bfloat16 flags and finite ratios."""

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO, child_env


def _run(tmp_path, script, *args):
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args,
                             "--json", str(out)], capture_output=True, text=True, timeout=900,
                            cwd=tmp_path, env=child_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


def test_train_step_policy_comparison(tmp_path):
    stdout, report = _run(tmp_path, "train_step.py", "--policy", "mixed_bfloat16", "--models",
                          "adabin_resnet20", "dwr_reactnet_resnet20", "--batch-size", "2",
                          "--rounds", "1", "--steps", "1")
    assert "CPU bfloat16 flags:" in stdout and report["cpu"].startswith("CPU bfloat16 flags:")
    assert set(report["results"]) == {"adabin_resnet20", "dwr_reactnet_resnet20"}
    for name, row in report["results"].items():
        assert math.isfinite(row["speedup"]) and row["speedup"] > 0, name
        assert f"| {name} |" in stdout


@pytest.mark.slow  # four processes of TensorFlow
def test_threads_benchmark(tmp_path):
    stdout, report = _run(tmp_path, "threads.py", "--rounds", "1", "--steps", "4",
                          "--batch-size", "4", "--model", "reactnet_resnet20")
    rows = report["results"]
    assert rows["tensorflow default"]["ratio_to_tf_default"] == 1.0
    assert len(rows) == 4 and all(r["median_ms"] > 0 for r in rows.values())
    assert "| intra-op 1, inter-op 1 |" in stdout
