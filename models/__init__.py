"""larq-zoo-style builders for AdaBin, ReActNet, DyBNN and DWR networks.

    from larq_adaptive.models import available_models, get_model, preprocess_input
    model = get_model("adabin_resnet20", weights=None)
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
