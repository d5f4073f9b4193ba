"""Every registered model through one contract (as larq-zoo's and timm's suites do): its
metadata as data, and the keras.applications builder signature and behaviour."""

import inspect
import re

import pytest
import tensorflow as tf

from larq_adaptive.models import available_models, get_model, model_entry
from larq_adaptive.models.methods import METHODS
from larq_adaptive.models.registry import PROVENANCES
from larq_adaptive.preprocessing import PREPROCESSINGS
from larq_adaptive.training.recipes import get_recipe

from conftest import REPO

FAMILIES = ("adabin", "reactnet", "dybnn", "dwr")
APPLICATION_ARGUMENTS = ("input_shape", "input_tensor", "weights", "include_top", "num_classes")


def _params():
    """CIFAR models in the fast suite; the ImageNet ones (seconds to minutes each) are slow."""
    return [
        name if model_entry(name).input_shape[:2] == (32, 32)
        else pytest.param(name, marks=pytest.mark.slow)
        for name in available_models()
    ]


def test_the_zoo_is_not_empty():
    assert len(available_models()) >= 32
    assert len([n for n in available_models() if model_entry(n).input_shape == (32, 32, 3)]) >= 16


@pytest.mark.parametrize("name", available_models())
def test_metadata(name):
    entry = model_entry(name)
    assert entry.name == name
    assert entry.family in FAMILIES and entry.method in METHODS
    assert entry.preprocessing in PREPROCESSINGS
    assert len(entry.input_shape) == 3 and entry.num_classes in (10, 1000)
    recipe = get_recipe(entry.recipe)
    assert recipe.fits(entry.method)
    if entry.binary:
        twin = model_entry(f"float_{name}")
        assert twin.float_twin and twin.method == "float"
        assert (twin.family, twin.input_shape, twin.num_classes) == (
            entry.family, entry.input_shape, entry.num_classes)
        assert not get_recipe(twin.recipe).two_step  # nothing binary to switch on
        assert twin.provenance == entry.provenance in PROVENANCES
        assert f"Provenance: {entry.provenance}" in inspect.getdoc(entry.builder)
    else:
        assert entry.float_twin and model_entry(name[len("float_"):]).binary


def test_readme_model_table_gives_each_models_provenance():
    listed = {}
    for row in (REPO / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        if row.startswith("| `") and len(cells) == 7 and cells[2] in PROVENANCES:
            for name in re.findall(r"`(\w+)`", cells[0]):
                listed[name] = cells[2]
    binary = {n: model_entry(n).provenance for n in available_models() if model_entry(n).binary}
    assert listed == binary


@pytest.mark.parametrize("name", available_models())
def test_builder_signature_is_keyword_only_keras_applications(name):
    entry = model_entry(name)
    parameters = inspect.signature(entry.builder).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in parameters.values())
    assert set(APPLICATION_ARGUMENTS) <= set(parameters)
    defaults = {key: parameters[key].default for key in APPLICATION_ARGUMENTS}
    assert defaults == {"input_shape": None, "input_tensor": None, "weights": None,
                        "include_top": True, "num_classes": entry.num_classes}
    assert "method" in parameters  # every architecture takes any row of the method table
    assert parameters["pad_values"].default == 0.0  # the official zero padding
    with pytest.raises(TypeError):
        entry.builder(entry.input_shape)  # positional arguments are refused


@pytest.mark.parametrize("name", _params())
def test_builder_contract(name):
    entry = model_entry(name)
    tensor = tf.keras.Input(entry.input_shape, name="images")
    model = get_model(name, input_tensor=tensor, num_classes=7, weights=None)
    assert model.name == name
    assert model.inputs[0] is tensor
    assert model.output_shape == (None, 7)
    assert model.output.dtype == tf.float32
    tf.keras.backend.clear_session()
    features = get_model(name, include_top=False)
    assert len(features.output_shape) == 4 and features.output_shape[0] is None
    assert features.input_shape == (None, *entry.input_shape)
    assert not any(layer.name == "logits" for layer in features.layers)
    with pytest.raises(ValueError, match="does not exist"):
        get_model(name, weights="missing.weights.h5")


@pytest.mark.parametrize("name", ["adabin_resnet20", "reactnet_resnet20", "dybnn_resnet20",
                                  "dwr_resnet20"])
def test_pad_values_reaches_every_binary_conv(name):
    from larq_adaptive.export import binary_conv_layers

    convs = binary_conv_layers(get_model(name, pad_values=1.0))
    assert len(convs) >= 7 and all(layer.pad_values == 1.0 for layer in convs)


def test_pad_values_other_than_zero_or_one_or_on_a_float_twin_are_refused():
    with pytest.raises(ValueError, match="pad_values must be 0.0"):
        get_model("reactnet_resnet20", pad_values=0.5)
    with pytest.raises(ValueError, match="method='float'"):
        get_model("float_reactnet_resnet20", pad_values=1.0)
