"""The Quickstart job as a user runs it: ``python train.py`` (what ``make train`` runs) in a
fresh process and a fresh folder, timed from the outside.

    python benchmarks/quickstart.py [--rounds 1]

Per round: wall time, peak memory of the process (``ru_maxrss``) and the test accuracy that
the run wrote to ``results.json`` (360 held-out digits). The result goes to
``benchmarks/results/quickstart.json``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

TRAIN = _results.ROOT / "train.py"


def one_round():
    with tempfile.TemporaryDirectory() as folder:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(TRAIN)], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        (results,) = Path(folder).glob("runs/*/results.json")
        record = json.loads(results.read_text())
    return {"wall_s": round(wall, 1), "cpu_s": round(after.ru_utime + after.ru_stime
                                                      - before.ru_utime - before.ru_stime, 1),
            "peak_rss_MB": round(after.ru_maxrss / 1024), "test_accuracy": record["test_accuracy"],
            "test_images": record.get("test_images"), "load_average": os.getloadavg()[0]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rounds = []
    for index in range(args.rounds):
        print(f"round {index + 1}/{args.rounds}: python train.py ...", flush=True)
        rounds.append(one_round())
        print(json.dumps(rounds[-1]), flush=True)
    _results.write("quickstart", {"rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
