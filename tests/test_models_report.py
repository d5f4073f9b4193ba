"""docs/models.md is the generated table of every registered model and is up to date."""

from pathlib import Path

import pytest

from larq_adaptive.models import available_models, model_entry
from larq_adaptive.models.report import COLUMNS, format_row, model_row

DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def package_models():
    """Registered by the package itself (other tests may register models of their own)."""
    return [n for n in available_models()
            if model_entry(n).builder.__module__.startswith("larq_adaptive.models")]


def doc_rows():
    rows = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS) and cells[0] in package_models():
            rows[cells[0]] = line.strip()
    return rows


def test_every_registered_model_has_a_row():
    missing = sorted(set(package_models()) - set(doc_rows()))
    assert not missing, f"regenerate docs/models.md; missing rows: {missing}"


CIFAR = [n for n in package_models() if model_entry(n).input_shape[:2] == (32, 32)]


@pytest.mark.parametrize("name", CIFAR)
def test_cifar_rows_match_a_fresh_computation(name):
    assert doc_rows()[name] == format_row(model_row(name))


def test_adabin_resnet20_row_matches_the_spec():
    """Spec 1.5 (computed independently from the official modules): 40.11 M binary MACs,
    0.44 M FP MACs; 271,262 trainable + 36 EDE constants."""
    row = model_row("adabin_resnet20")
    assert abs(row["1-bit MACs"] - 40.11e6) / 40.11e6 < 0.001
    assert abs(row["32-bit MACs"] - 0.44e6) / 0.44e6 < 0.01
    assert row["params"] == 271_262 + 2 * 18
