"""Step parity with the official PyTorch code bases, without PyTorch.

For each case, ``benchmarks/parity/<case>.py --official-repo PATH`` ran ONE training step of the
official code (then a second step after a learning-rate change, where PyTorch's and Keras'
momentum conventions differ) from fixed weights on fixed real CIFAR-10 test images, in
float64, and stored everything the step produced in ``tests/data/parity/<case>.npz``: the
cross-entropy loss, the gradient of every trainable tensor, the change of every weight (BN
running statistics included; the momentum buffer is ``-change / lr``) and the eval-mode logits
before and after. Each test here builds our model in float64 (Keras policy ``float64``), loads
the same initial weights, replays the steps with the library's training pieces
(``make_optimizer``, ``CoupledWeightDecay``, Keras cross entropy) via
``benchmarks/parity/_common.py`` and requires every relative difference
(``max |ours - official| / max |official|`` per tensor) to be at most 1e-5.

One section per case (docs/parity.md has the same sections and the measured tables); a new
case adds a section with its own model set-up and per-step state.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "parity"))

from _common import (  # noqa: E402
    REFERENCE_DIR,
    TOLERANCE,
    keras_weights,
    random_weights,
    read_reference,
    run_our_steps,
    summary_rows,
)

from larq_adaptive.introspect import iter_quantizers  # noqa: E402
from larq_adaptive.models import get_model  # noqa: E402


def load_case(name):
    path = REFERENCE_DIR / f"{name}.npz"
    assert path.stat().st_size < 8e6, f"{path} should stay a few MB"
    return read_reference(path)


def float64_model(name, reference, **kwargs):
    """``get_model(name)`` under the float64 policy, holding the reference's ``init.*``
    weights; returns the model and the keys of the weights without one."""
    tf.keras.mixed_precision.set_global_policy("float64")
    model = get_model(name, **kwargs)
    variables = keras_weights(model)
    initial = {k[len("init."):]: v for k, v in reference.items() if k.startswith("init.")}
    assert set(initial) <= set(variables)
    for key, value in initial.items():
        variables[key].assign(value.astype(np.float64))
    return model, set(variables) - set(initial)


def assert_parity(results):
    table = "\n".join(f"{category}: {value:.2e} ({worst})"
                      for category, value, worst, _ in summary_rows(results))
    assert {category for category, values in results.items() if values} == {
        "loss", "logits", "gradients", "updates", "buffers", "bn statistics"}, table
    for category, value, worst, _ in summary_rows(results):
        assert value <= TOLERANCE, f"{category} differs at {worst}:\n{table}"


# ---------------------------------------------------------------------------------------
# Case 1: AdaBin ResNet-20 (huawei-noah/Efficient-Computing, BinaryNetworks/AdaBin/cifar10)
# from the official checkpoint; SGD momentum 0.9, coupled weight decay 1e-4 on every
# parameter, EDE (k, t) of epochs 250 and 350 of 400, cosine lr of those epochs.


def test_adabin_resnet20_step_matches_official_code():
    from larq_adaptive.quantizers import AdaBinWeightQuantizer

    reference = load_case("adabin_resnet20")
    model, missing = float64_model("adabin_resnet20", reference)
    assert all(key.endswith((".ede_k", ".ede_t")) for key in missing)
    assert float(reference["lr2"]) < 0.2 * float(reference["lr1"])  # a real lr change

    def set_ede(model, step):
        for quantizer in iter_quantizers(model, AdaBinWeightQuantizer):
            quantizer.k.assign(float(reference[f"ede_k{step}"]))
            quantizer.t.assign(float(reference[f"ede_t{step}"]))

    assert_parity(run_our_steps(model, reference, set_ede))


# ---------------------------------------------------------------------------------------
# Case 3: DWR ResNet-20 + ReActNet (pingxue-hfut/DWR, CIFAR-10/ResNet-20+ReActNet) from
# seeded mid-training-like weights (drawn here as by the script, checked by their sums of
# squares); SGD momentum 0.9, coupled weight decay 1e-4 on every parameter, cosine lr of
# epochs 250 and 350 of 400.


def test_dwr_reactnet_resnet20_step_matches_official_code():
    reference = load_case("dwr_reactnet_resnet20")
    model, missing = float64_model("dwr_reactnet_resnet20", reference)
    variables = keras_weights(model)
    init = random_weights({k: v.shape for k, v in variables.items()}, int(reference["seed"]))
    assert set(init) == missing == set(variables)
    for key, value in init.items():
        assert np.sum(np.square(value, dtype=np.float64)) == pytest.approx(
            float(reference[f"init_sumsq.{key}"]), rel=1e-12), key
        variables[key].assign(value.astype(np.float64))
    # the official model has exactly our trainable parameters
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == int(
        reference["official_parameters"])
    assert_parity(run_our_steps(model, reference, lambda model, step: None))
