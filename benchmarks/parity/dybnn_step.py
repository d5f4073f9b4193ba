"""Step parity of DyBNN against the official ReActNet code (DyBNN has no official code).

With its hyper-functions' outputs held constant, DyBNN's DySign is ReActNet's RSign and its
DyPReLU is RPReLU. This runs the ReActNet-A parity harness (``reactnet_step.py``, same
reference tensors) on our DyBNN ReActNet-A network:

* hyper-functions zeroed (their FC2 at its zero initialisation, frozen): step 1 and step 2
  configurations against the official step;
* step 2 configuration with non-zero constant hyper-function outputs (random FC2 biases,
  FC2 kernel 0), the static shifts absorbing them, so the generated thresholds and shifts
  take the place of the official static ones.

    python benchmarks/parity/dybnn_step.py --check                        # no PyTorch
    python benchmarks/parity/dybnn_step.py --official-repo PATH/TO/ReActNet  # = reactnet_step.py
"""

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _reactnet_common as common  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official-repo", help="checkout of github.com/liuzechun/ReActNet")
    parser.add_argument("--check", action="store_true",
                        help="compare our DyBNN step with the stored references (no PyTorch)")
    parser.add_argument("--data-dir", default=str(common.DATA_DIR),
                        help="folder of the reference .npz files (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        return common.check_main(Path(args.data_dir), method="dybnn")
    if not args.official_repo:
        print("error: give --official-repo PATH (reference mode) or --check", file=sys.stderr)
        return 2
    import reactnet_step

    return reactnet_step.main(["--official-repo", args.official_repo, "--data-dir",
                               args.data_dir])


if __name__ == "__main__":
    sys.exit(main())
