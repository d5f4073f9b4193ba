"""Regenerate the figures in docs/figures (shown in the README and docs/deployment.md).

    python benchmarks/make_figures.py [--shared ../shared] [--run-dir RUN_DIR]

- ``adabin_resnet20_binary_sets.png``: the learned binary sets of the official AdaBin
  ResNet-20 (``../shared/reference/adabin_resnet20_cifar10/state_dict.npz``), written
  through the same path as ``python -m larq_adaptive.plot binary-sets MODEL.keras OUT.png``
  (the model is saved as ``.keras`` and loaded back first).
- ``training_curves.png``: ``python -m larq_adaptive.plot curves RUN_DIR`` for a train.py
  run directory, when ``--run-dir`` is given.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "docs" / "figures"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--run-dir", help="a train.py output directory for the curves figure")
    args = parser.parse_args(argv)

    from larq_adaptive import plot
    from larq_adaptive.models import get_model

    FIGURES.mkdir(parents=True, exist_ok=True)
    reference = Path(args.shared) / "reference" / "adabin_resnet20_cifar10" / "state_dict.npz"
    model = get_model("adabin_resnet20", weights=str(reference))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adabin_resnet20.keras"
        model.save(path)
        plot.main(["binary-sets", str(path), str(FIGURES / "adabin_resnet20_binary_sets.png")])
    if args.run_dir:
        plot.main(["curves", args.run_dir, str(FIGURES / "training_curves.png")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
