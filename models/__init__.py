"""larq-zoo-style builders for AdaBin, ReActNet, DyBNN and DWR networks.

    from larq_adaptive.models import available_models, get_model, preprocess_input
    model = get_model("adabin_resnet20", weights=None)

One module per paper (``adabin``, ``reactnet``, ``dybnn``, ``dwr``), all written in one
vocabulary: :mod:`~larq_adaptive.models.methods` (how convs binarize, one table row per
method) and :mod:`~larq_adaptive.models.blocks` (layers, blocks, stems, heads). The registry
(:mod:`~larq_adaptive.models.registry`) keeps each model's metadata as data. This package
depends on the core library, never the other way round.
"""

from larq_adaptive.models.registry import (
    available_models,
    get_model,
    model_entry,
    preprocess_input,
    register_model,
)

# Importing the family modules registers their models.
from larq_adaptive.models import adabin, dwr, dybnn, reactnet  # noqa: E402,F401

__all__ = ["available_models", "get_model", "model_entry", "preprocess_input", "register_model"]
