"""Stored benchmark results: every benchmark whose numbers the docs show writes one JSON file,
``benchmarks/results/<name>.json``, with the environment it ran in; ``benchmarks/report.py``
renders the docs' tables from these files (never from numbers typed into the docs).

A result file holds ``{"benchmark", "environment", "results"}``; ``environment`` records, as
the benchmark starts (:func:`environment`): the CPU (model name, the vector and bfloat16
flags, cores), Python, TensorFlow, Keras, larq, LCE and numpy versions, the commit (with
``+dirty`` and the list of changed files when tracked files other than the stored results had
uncommitted changes), the UTC time, the exact command and its working directory, the
machine's load average and the thread settings of the environment.
"""

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# The CPU flags a reader needs to interpret a timing.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
PACKAGES = ("tensorflow", "tf-keras", "larq", "larq-compute-engine", "numpy")


def cpu(cpuinfo="/proc/cpuinfo"):
    """``{"model", "flags", "cores"}`` of this machine (model and flags of its first CPU)."""
    model, flags = platform.processor() or "unknown", []
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model in ("unknown", platform.processor()):
            model = value.strip()
        elif key.strip() == "flags":
            present = set(value.split())
            flags = [flag for flag in CPU_FLAGS if flag in present]
            break
    return {"model": model, "flags": flags, "cores": os.cpu_count()}


def _version(package):
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def commit(changed):
    """The repository's HEAD commit, with ``+dirty`` if ``changed`` (:func:`changed_files`)
    lists any file."""
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    return head + ("+dirty" if changed else "")


# Written from the results, so never a reason to call the measured code changed.
GENERATED = ("benchmarks/results/", "docs/benchmarks.md", "docs/training_fixed_budget.png")


def changed_files():
    """Tracked files with uncommitted changes (what ``+dirty`` in :func:`commit` marks),
    the stored results and what is rendered from them left out."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                            capture_output=True, text=True, check=False).stdout
    return sorted(path for path in (line[3:] for line in status.splitlines() if line.strip())
                  if not path.startswith(GENERATED))


def environment(script, argv=None):
    """Everything a reader needs to know where a number came from: call it as the benchmark
    starts (``script``: its ``__file__``; ``argv``: its arguments, default ``sys.argv[1:]``)
    and pass it to :func:`write`."""
    argv = sys.argv[1:] if argv is None else list(argv)
    changed = changed_files()  # one look, so that the commit and the list always agree
    return {
        "cpu": cpu(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "commit": commit(changed),
        "uncommitted_changes": changed,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": shlex.join(["python", os.path.relpath(os.path.abspath(script), ROOT), *argv]),
        "cwd": os.path.relpath(os.getcwd(), ROOT),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "threads": {name: os.environ[name] for name in
                    ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS")
                    if name in os.environ},
    }


def write(name, results, env, directory=None):
    """Write ``<directory>/<name>.json`` (default: benchmarks/results, or
    ``$LQA_BENCHMARK_RESULTS``) with ``env`` (:func:`environment` at the start) and return
    its path."""
    directory = Path(directory or os.environ.get("LQA_BENCHMARK_RESULTS", RESULTS))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    record = {"benchmark": name, "environment": env, "results": results}
    partial = path.with_name("partial-" + path.name)
    partial.write_text(json.dumps(record, indent=1, sort_keys=True, default=float) + "\n")
    partial.replace(path)
    print(f"result written to {os.path.relpath(path)}", flush=True)
    return path


def read(name, directory=None):
    """The stored record of ``name``, or None if there is none."""
    path = Path(directory or RESULTS) / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
