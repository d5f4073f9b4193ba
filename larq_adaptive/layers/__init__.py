"""Every Keras layer of larq-adaptive (all registered for serialization).

| module | layers |
|---|---|
| :mod:`~larq_adaptive.layers.activations` | ``Maxout`` (AdaBin), ``RPReLU`` (ReActNet), ``DyPReLU`` (DyBNN), ``HardTanh`` |
| :mod:`~larq_adaptive.layers.convolutional` | ``PaddedQuantConv2D``, ``AdaBinConv2D``, ``BorderCorrectedQuantConv2D`` (export form) |
| :mod:`~larq_adaptive.layers.normalization` | ``TorchBatchNormalization`` (PyTorch's running variance) |
| :mod:`~larq_adaptive.layers.reshaping` | ``TorchPadding2D``, ``OptionAShortcut``, ``ChannelSlice`` |
| :mod:`larq_adaptive.hyper` | ``HyperFunction`` (DyBNN's GAP -> FC -> FC, a sub-layer of DySign/DyPReLU) |
"""

from larq_adaptive.hyper import HyperFunction
from larq_adaptive.layers.activations import DyPReLU, HardTanh, Maxout, RPReLU
from larq_adaptive.layers.convolutional import (
    AdaBinConv2D,
    BorderCorrectedQuantConv2D,
    PaddedQuantConv2D,
)
from larq_adaptive.layers.normalization import TorchBatchNormalization
from larq_adaptive.layers.reshaping import ChannelSlice, OptionAShortcut, TorchPadding2D

__all__ = [
    "AdaBinConv2D",
    "BorderCorrectedQuantConv2D",
    "ChannelSlice",
    "DyPReLU",
    "HardTanh",
    "HyperFunction",
    "Maxout",
    "OptionAShortcut",
    "PaddedQuantConv2D",
    "RPReLU",
    "TorchBatchNormalization",
    "TorchPadding2D",
]
