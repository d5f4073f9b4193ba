#!/usr/bin/env python
"""Train any registered larq-adaptive model with its paper's recipe: ``python train.py --help``.

Without arguments it trains adabin_resnet20 on scikit-learn's handwritten digits (offline).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from larq_adaptive.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
