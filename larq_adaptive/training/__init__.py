"""Training: the official recipes as data, tf.data pipelines, distillation and multi-stage
``model.fit`` (the library behind ``train.py``).

    from larq_adaptive.training import RECIPES, get_recipe, Distiller, run_stages
"""

from larq_adaptive.training.distillation import Distiller, soft_target_cross_entropy
from larq_adaptive.training.recipes import (
    RECIPES,
    Recipe,
    Stage,
    available_recipes,
    get_recipe,
    learning_rate,
)
from larq_adaptive.training.stages import CoupledWeightDecay, decayed_variables, run_stages

__all__ = [
    "RECIPES",
    "CoupledWeightDecay",
    "Distiller",
    "Recipe",
    "Stage",
    "available_recipes",
    "decayed_variables",
    "get_recipe",
    "learning_rate",
    "run_stages",
    "soft_target_cross_entropy",
]
