"""The official training recipes as data (from each official code base's training script:
AdaBin ``cifar10/main.py`` and its ImageNet script, ReActNet ``mobilenet/run.sh`` and
``resnet/run.sh``, DWR ``trainer.py``).

A :class:`Recipe` fixes the optimizer, the base learning rate and its per-epoch schedule, the
batch size, the loss, the augmentation, the coupled-L2 weight-decay parameter set and the
stages (one, or two for ReActNet-style two-step training). ``train.py --recipe NAME`` uses
them; ``--epochs/--lr/--batch-size/--optimizer/--weight-decay`` override single fields.
"""

import dataclasses
import math

__all__ = ["RECIPES", "Recipe", "Stage", "available_recipes", "float_recipe", "get_recipe",
           "learning_rate"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One ``model.fit`` of a recipe.

    ``binary_weights``: value given to every ``SwitchableQuantizer.active`` (False = real
    weights, ReActNet step 1). ``weight_decay``: PyTorch-style coupled L2 coefficient.
    """

    name: str
    epochs: int
    weight_decay: float
    binary_weights: bool = True


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    optimizer: str  # "sgd" (TorchSGD: PyTorch momentum convention, 0.9) | "adam" (0.9, 0.999, eps 1e-8)
    learning_rate: float
    schedule: str  # "cosine": lr0 (1 + cos(pi e / E)) / 2 | "linear": lr0 (1 - (e + 1) / E)
    batch_size: int
    stages: tuple
    decay: str  # "all": every trainable variable | "reactnet": 4-D kernels + sign/PReLU shifts
    loss: str = "ce"  # "ce" | "kd" (soft targets from --teacher; CE if no teacher is given)
    augmentation: str = "cifar"  # "cifar": pad-4 crop + flip | "imagenet": RRC + flip
    ede: bool = False  # AdaBin's progressive (k, t) schedule
    methods: tuple = ()  # binarization methods the recipe was written for ("float" fits all)

    @property
    def two_step(self):
        return len(self.stages) > 1

    def fits(self, method):
        """True if the recipe trains networks binarized with ``method`` (any recipe trains a
        real-valued network)."""
        return method == "float" or method in self.methods


ADABIN = ("adabin",)  # EDE and the AdaBin weight decay set
REACTNET_LIKE = ("reactnet", "dybnn", "irnet", "ste_sign")  # sign-based binarizers


def _two_step(epochs, weight_decay=1e-5):
    return (
        Stage("step1_binary_activations", epochs, weight_decay, binary_weights=False),
        Stage("step2_binary_weights", epochs, 0.0, binary_weights=True),
    )


_RECIPES = (
    Recipe(
        "adabin_cifar", "AdaBin CIFAR-10 (cifar10/main.py): SGD 0.1, cosine, 400 epochs, wd 1e-4 "
        "on all parameters, EDE (k, t)", "sgd", 0.1, "cosine", 128,
        (Stage("main", 400, 1e-4),), "all", ede=True, methods=ADABIN,
    ),
    Recipe(
        "adabin_imagenet", "AdaBin ImageNet: SGD 0.1, cosine, 120 epochs, batch 256, wd 1e-5 "
        "on all parameters, EDE (k, t)", "sgd", 0.1, "cosine", 256,
        (Stage("main", 120, 1e-5),), "all", augmentation="imagenet", ede=True,
        methods=ADABIN,
    ),
    Recipe(
        "reactnet_two_step", "ReActNet-A two-step (mobilenet/run.sh): Adam 1.25e-3, linear, "
        "128 + 128 epochs, batch 256, wd 1e-5 then 0, KD", "adam", 1.25e-3, "linear", 256,
        _two_step(128), "reactnet", loss="kd", augmentation="imagenet",
        methods=REACTNET_LIKE,
    ),
    Recipe(
        "reactnet_resnet18_two_step", "ReActNet ResNet-18 two-step (resnet/run.sh): Adam 2.5e-3, "
        "linear, 128 + 128 epochs, batch 512, wd 1e-5 then 0, KD", "adam", 2.5e-3, "linear", 512,
        _two_step(128), "reactnet", loss="kd", augmentation="imagenet",
        methods=REACTNET_LIKE,
    ),
    Recipe(
        "reactnet_cifar", "ReActNet two-step transferred to CIFAR (not an official recipe): Adam "
        "1.25e-3, linear, 200 + 200 epochs, batch 128, wd 1e-5 then 0, KD if --teacher, "
        "CIFAR augmentation",
        "adam", 1.25e-3, "linear", 128, _two_step(200), "reactnet", loss="kd",
        methods=REACTNET_LIKE,
    ),
    Recipe(
        "dwr_cifar", "DWR CIFAR (trainer.py): SGD 0.1, cosine, 400 epochs, batch 128, wd 1e-4 "
        "on all parameters", "sgd", 0.1, "cosine", 128, (Stage("main", 400, 1e-4),), "all",
        methods=REACTNET_LIKE,
    ),
    Recipe(
        "dwr_cifar_resnet18", "DWR CIFAR ResNet-18: SGD 0.08, cosine, 600 epochs, batch 128, "
        "wd 1e-4 on all parameters", "sgd", 0.08, "cosine", 128, (Stage("main", 600, 1e-4),),
        "all", methods=REACTNET_LIKE,
    ),
    Recipe(
        "dwr_imagenet", "DWR ImageNet single step: Adam 1e-3, cosine, 128 epochs, batch 512, "
        "wd 0", "adam", 1e-3, "cosine", 512, (Stage("main", 128, 0.0),), "reactnet",
        augmentation="imagenet", methods=REACTNET_LIKE,
    ),
    Recipe(
        "dwr_imagenet_two_step", "DWR ImageNet two-step (resnet-18+reactnet+2-step): Adam 1e-3, "
        "cosine, 256 + 256 epochs, batch 512, wd 1e-5 then 0, KD", "adam", 1e-3, "cosine", 512,
        _two_step(256), "reactnet", loss="kd", augmentation="imagenet",
        methods=REACTNET_LIKE,
    ),
)
_RECIPES += (
    dataclasses.replace(
        next(r for r in _RECIPES if r.name == "reactnet_two_step"), name="reactnet_imagenet",
        description="= reactnet_two_step (ReActNet-A settings, the ImageNet default of the "
        "ReActNet/DyBNN builders)",
    ),
)


def float_recipe(recipe):
    """``<name>_float``: the recipe of the real-valued twins (``float_<model>``) of the
    networks ``recipe`` trains. Same optimizer, learning rate, schedule, batch size,
    augmentation (ImageNet twins: random resized crops, evaluated at resize 256 + centre crop
    224), weight-decay set and epoch budget, minus what only binary training needs: one stage
    of all the epochs at the first stage's weight decay instead of two steps, cross-entropy
    instead of distillation (the twin is the teacher), no EDE."""
    epochs = sum(stage.epochs for stage in recipe.stages)
    return dataclasses.replace(
        recipe, name=f"{recipe.name}_float", stages=(Stage("main", epochs, recipe.stages[0].weight_decay),),
        description=f"real-valued twins of {recipe.name} networks: one stage of {epochs} "
        "epochs, cross-entropy, no EDE", loss="ce", ede=False, methods=(),
    )


_RECIPES += tuple(float_recipe(recipe) for recipe in _RECIPES)
RECIPES = {recipe.name: recipe for recipe in _RECIPES}


def available_recipes():
    return sorted(RECIPES)


def get_recipe(name):
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(
            f"unknown recipe {name!r}; available: {', '.join(available_recipes())}"
        ) from None


def learning_rate(schedule, base_lr, epoch, epochs):
    """The learning rate of 0-based ``epoch`` of a stage of ``epochs`` epochs (stepped per
    epoch, as the official scripts call ``scheduler.step()`` once per epoch): PyTorch ``CosineAnnealingLR(T_max=epochs, eta_min=0)`` or ReActNet's
    ``LambdaLR(1 - e / E)`` stepped before the epoch (the last epoch has lr 0)."""
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
    if schedule == "linear":
        return base_lr * (1.0 - (epoch + 1) / epochs)
    if schedule == "constant":
        return base_lr
    raise ValueError(f"unknown schedule {schedule!r}")
