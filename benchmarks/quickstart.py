"""The Quickstart job as a user runs it: ``python train.py`` (what ``make train`` runs) in a
fresh process and a fresh folder, timed from the outside.

    python benchmarks/quickstart.py [--rounds 3]

Per round, one process: its wall time, CPU time and peak memory (``ru_maxrss``), and the test
accuracy that the run wrote to ``results.json`` (360 held-out digits). The result goes to
``benchmarks/results/quickstart.json``.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

TRAIN = _results.ROOT / "train.py"


def one_round():
    """Wall time, CPU time and peak memory of one ``python train.py`` process (its own
    rusage, from ``os.wait4``), and the test accuracy it wrote."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "train.log"
        with open(log, "w") as output:
            start = time.perf_counter()
            process = subprocess.Popen([sys.executable, str(TRAIN)], cwd=folder, stdout=output,
                                       stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            tail = "\n".join(log.read_text().splitlines()[-20:])
            raise SystemExit(f"quickstart.py: python train.py exited with {process.returncode}:\n"
                             f"{tail}")
        (results,) = Path(folder).glob("runs/*/results.json")
        record = json.loads(results.read_text())
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_MB": round(usage.ru_maxrss / 1024), "test_accuracy": record["test_accuracy"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    env = _results.environment(__file__, argv)
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: python train.py ...", flush=True)
        rounds.append(one_round())
        print(json.dumps(rounds[-1]), flush=True)
    _results.write("quickstart", {"rounds": rounds}, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
