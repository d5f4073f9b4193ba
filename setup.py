"""larq-adaptive: adaptive and dynamic binarization (AdaBin, ReActNet, DyBNN, DWR) for larq/Keras."""

import re

from setuptools import setup

# One place for the version: larq_adaptive.__version__.
VERSION = re.search(r'^__version__ = "([^"]+)"', open("larq_adaptive/__init__.py").read(), re.M)[1]

setup(
    name="larq-adaptive",
    version=VERSION,
    description=(
        "AdaBin, ReActNet, DyBNN and DWR binary neural networks as larq quantizers, "
        "Keras layers and larq-zoo-style models"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    # The repository folder `models/` is installed as `larq_adaptive.models`,
    # so no top-level `models` package lands in site-packages.
    packages=["larq_adaptive", "larq_adaptive.layers", "larq_adaptive.training", "larq_adaptive.models"],
    package_dir={"larq_adaptive": "larq_adaptive", "larq_adaptive.models": "models"},
    install_requires=[
        # Full `tensorflow` wheel: runs on CPU without CUDA and satisfies every package
        # that names `tensorflow`. GPU users add the `gpu` extra (same code path).
        # Python 3.10/3.11: TensorFlow 2.15 (Keras 2 built in; no tf-keras there).
        # Python 3.12 (no TF 2.15 wheel): TensorFlow 2.16-2.19 with the matching tf-keras
        # (`import larq_adaptive` sets TF_USE_LEGACY_KERAS=1). TF >= 2.20 needs protobuf >= 5,
        # which larq-zoo 2.4's protobuf < 3.21 pin forbids.
        "tensorflow>=2.15.1,<2.16; python_version<'3.12'",
        "tensorflow>=2.16.1,<2.20; python_version>='3.12'",
        "tf-keras>=2.16,<2.20; python_version>='3.12'",
        "larq==0.14.0",
        "larq-zoo==2.4.0",
        "zookeeper==1.4.0",
        "tensorflow-datasets==4.8.3",
        "keras-cv==0.9.0",
        "larq-compute-engine==0.16.0",
        "protobuf==3.20.3",
        "numpy>=1.26,<2",
        "scikit-learn>=1.3",
        "matplotlib>=3.7",
    ],
    entry_points={
        "console_scripts": [
            "larq-adaptive-train=larq_adaptive.training.cli:main",
            "larq-adaptive-export=larq_adaptive.export:main",
            "larq-adaptive-plot=larq_adaptive.plot:main",
            "larq-adaptive-dwr-search=larq_adaptive.training.dwr_cli:main",
            "larq-adaptive-report=larq_adaptive.models.report:main",
        ],
    },
    extras_require={
        "test": ["pytest>=8,<10"],
        "gpu": [
            "tensorflow[and-cuda]>=2.15.1,<2.16; python_version<'3.12'",
            "tensorflow[and-cuda]>=2.16.1,<2.20; python_version>='3.12'",
        ],
        "torch": ["torch>=2.0"],
    },
)
