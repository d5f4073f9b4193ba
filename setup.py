"""larq-adaptive: adaptive and dynamic binarization (AdaBin, ReActNet, DyBNN, DWR) for larq/Keras."""

from setuptools import setup

setup(
    name="larq-adaptive",
    version="0.1.0",
    description=(
        "AdaBin, ReActNet, DyBNN and DWR binary neural networks as larq quantizers, "
        "Keras layers and larq-zoo-style models"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    # The repository folder `models/` is installed as `larq_adaptive.models`,
    # so no top-level `models` package lands in site-packages.
    packages=["larq_adaptive", "larq_adaptive.training", "larq_adaptive.models"],
    package_dir={"larq_adaptive": "larq_adaptive", "larq_adaptive.models": "models"},
    install_requires=[
        # Full `tensorflow` wheel: runs on CPU without CUDA and satisfies every package
        # that names `tensorflow`. GPU users add the `gpu` extra (same code path).
        "tensorflow>=2.15.1,<2.16",
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
    extras_require={
        "test": ["pytest>=8,<10"],
        "gpu": ["tensorflow[and-cuda]>=2.15.1,<2.16"],
        "torch": ["torch>=2.0"],
    },
)
