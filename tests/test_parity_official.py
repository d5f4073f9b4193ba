"""Step parity with the official PyTorch code bases, without PyTorch.

For each case, ``benchmarks/parity/<case>.py --official-repo PATH`` ran ONE training step of the
official code (then a second step after a learning-rate change, where PyTorch's and Keras'
momentum conventions differ) from fixed weights on fixed real CIFAR-10 test images, in
float64, and stored everything the step produced in ``tests/data/parity/<case>.npz`` (the
inputs and the official checkpoint are not copied there: they are read from the shared data
folder, so cases 1 and 3 are skipped without it): the
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
    sum_of_squares,
    summary_rows,
)

from larq_adaptive.introspect import iter_quantizers  # noqa: E402
from larq_adaptive.models import get_model  # noqa: E402


def load_case(name, shared_dir):
    """The stored reference of a case, its CIFAR-10 inputs read from the shared data folder
    (never copied into the project)."""
    path = REFERENCE_DIR / f"{name}.npz"
    assert path.stat().st_size < 8e6, f"{path} should stay a few MB"
    return read_reference(path, shared_dir / "data" / "cifar10-test-original" / "cifar10_test.npz")


def float64_model(name, **kwargs):
    """``get_model(name, **kwargs)`` under the float64 policy and its weights by key."""
    tf.keras.mixed_precision.set_global_policy("float64")
    model = get_model(name, **kwargs)
    return model, keras_weights(model)


def assert_initial_weights(weights, reference):
    """Our initial weights are the ones the official side started from: every stored sum of
    squares matches (``weights``: numpy arrays by key)."""
    stored = {k[len("init_sumsq."):]: float(v) for k, v in reference.items()
              if k.startswith("init_sumsq.")}
    assert stored and set(stored) <= set(weights)
    for key, value in sum_of_squares({k: weights[k] for k in stored}).items():
        assert value == pytest.approx(float(reference[key]), rel=1e-12), key
    return set(weights) - set(stored)


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


def test_adabin_resnet20_step_matches_official_code(shared_dir):
    from larq_adaptive.quantizers import AdaBinWeightQuantizer

    reference = load_case("adabin_resnet20", shared_dir)
    checkpoint = shared_dir / "reference" / "adabin_resnet20_cifar10" / "model.th"
    model, variables = float64_model("adabin_resnet20", weights=str(checkpoint))
    missing = assert_initial_weights({k: v.numpy() for k, v in variables.items()}, reference)
    assert missing and all(key.endswith((".ede_k", ".ede_t")) for key in missing)
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


def test_dwr_reactnet_resnet20_step_matches_official_code(shared_dir):
    reference = load_case("dwr_reactnet_resnet20", shared_dir)
    model, variables = float64_model("dwr_reactnet_resnet20")
    init = random_weights({k: v.shape for k, v in variables.items()}, int(reference["seed"]))
    assert assert_initial_weights(init, reference) == set() and set(init) == set(variables)
    for key, value in init.items():
        variables[key].assign(value.astype(np.float64))
    # the official model has exactly our trainable parameters
    assert sum(int(np.prod(v.shape)) for v in model.trainable_weights) == int(
        reference["official_parameters"])
    assert_parity(run_our_steps(model, reference, lambda model, step: None))

# ---------------------------------------------------------------------------------------
# Cases 2 and 4: ReActNet (liuzechun/ReActNet) and DyBNN against it.
#
# tests/data/parity/reactnet_a_step{1,2}.npz were written by
# ``benchmarks/parity/reactnet_step.py --official-repo`` running the official
# ``mobilenet/{1_step1,2_step2}/reactnet.py`` network (reduced width: every block type),
# ``utils/KD_loss.DistributionLoss`` and ``torch.optim.Adam`` with the parameter groups of
# ``mobilenet/*/train.py``, two steps in float64 (``reactnet_resnet18_step*``: the official
# ``BiRealNet`` with one block per stage). Our network (and DyBNN's, with its hyper-functions'
# outputs held constant: case 4) takes the same initial weights and batch and runs the same
# two steps with our training code (``Distiller``, ``CoupledWeightDecay``,
# ``make_optimizer("adam")``, the linear recipe schedule) via
# ``benchmarks/parity/_reactnet_common.py``.

import importlib.util  # noqa: E402

from conftest import REPO  # noqa: E402

PARITY = REPO / "benchmarks" / "parity"


def _reactnet_common():
    if str(PARITY) not in sys.path:
        sys.path.insert(0, str(PARITY))
    spec = importlib.util.spec_from_file_location("_reactnet_common",
                                                  PARITY / "_reactnet_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _reactnet_common()


@pytest.fixture(scope="module")
def reference():
    """{step: reference} of the reduced ReActNet-A."""
    return {step: common.load_reference(common.DATA_DIR / f"reactnet_a_step{step}.npz")
            for step in (1, 2)}


@pytest.fixture(scope="module")
def resnet18_reference():
    """{step: reference} of the reduced ReAct-ResNet-18 (results stored as projections)."""
    return {step: common.load_reference(common.DATA_DIR / f"reactnet_resnet18_step{step}.npz")
            for step in (1, 2)}


_RUNS = {}


def ours(reference, method, step, offsets=False):
    """Our two steps (computed once per module)."""
    key = (reference[step]["config"].get("model", "reactnet_a"), method, step, offsets)
    if key not in _RUNS:
        _RUNS[key] = common.run_ours(reference[step], method, offsets=offsets)
    return _RUNS[key]


def assert_step_parity(reference, result):
    worst = common.compare(reference, result)
    moving_variance = ("BN running var", "eval logits after")
    exact = {g: v for g, v in worst.items() if g not in moving_variance}
    assert max(v for v, _ in exact.values()) <= TOLERANCE, common.format_table(worst)
    # running variance and the eval logits that use it: PyTorch's unbiased update
    # (TorchBatchNormalization)
    assert max(worst[g][0] for g in moving_variance) <= TOLERANCE, common.format_table(worst)
    return worst


def test_references_are_the_harness_configuration(reference, resnet18_reference):
    for step in (1, 2):
        assert reference[step]["config"] == common.config(step)
        cfg = dict(resnet18_reference[step]["config"])
        shapes = dict(cfg.pop("shapes"))
        assert cfg == common.config(step, "reactnet_resnet18")
        assert shapes["layer4.0.binary_conv.weight"] == [512, 256, 3, 3]
    # The official step-2 network has HardBinaryConv latent weights, some outside [-1, 1]
    # (the clipped STE passes no gradient there).
    flat = reference[2]["init/feature.2.binary_3x3.weights"]
    assert flat.shape[1] == 1 and np.any(np.abs(flat) > 1)
    grad = reference[2]["step1/grad/feature.2.binary_3x3.weights"]
    assert np.all(grad[np.abs(flat) > 1] == 0) and np.any(grad != 0)


@pytest.mark.parametrize("step", [1, 2])
def test_weight_conversion_round_trip(reference, step):
    """official state_dict -> our variables -> official state_dict is the identity, and each
    of our 1x1 conv kernels of a doubling block is the two official kernels side by side."""
    model, _ = common.build("reactnet", step)
    table = common.entries(model, reference[step]["config"])
    init = {k[len("init/"):]: v for k, v in reference[step].items() if k.startswith("init/")}
    common.load_official(model, table, init)
    back = common.export_official(table, {n: v.shape for n, v in init.items()})
    assert set(back) == set(init)
    for name, value in init.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)
    suffix = "weights" if step == 2 else "weight"
    kernel = model.get_layer("block1_conv2").kernel.numpy()  # (1, 1, 8, 16)
    down2 = init[f"feature.1.binary_pw_down2.{suffix}"].reshape(8, 8)  # (out, in)
    np.testing.assert_array_equal(kernel[0, 0, :, 8:], down2.T)


@pytest.mark.parametrize("step", [1, 2])
def test_resnet18_weight_conversion_round_trip(resnet18_reference, step):
    model, _ = common.build_for(resnet18_reference[step]["config"], "reactnet")
    table = common.entries(model, resnet18_reference[step]["config"])
    init = common.initial_state(resnet18_reference[step])
    common.load_official(model, table, init)
    back = common.export_official(table, {n: v.shape for n, v in init.items()})
    assert set(back) == set(init)
    for name, value in init.items():
        np.testing.assert_array_equal(back[name], value, err_msg=name)


@pytest.mark.slow  # ~15 s each; ReActNet-A above covers every quantizer and layer type
@pytest.mark.parametrize("step", [1, 2])
def test_reactnet_resnet18_step_matches_official(resnet18_reference, step):
    """The official BiRealNet class (one block per stage: 7x7 stem, max-pool, AvgPool ->
    1x1 conv -> BN shortcuts); results compared through 4 random projections per tensor."""
    result = ours(resnet18_reference, "reactnet", step)
    assert_step_parity(resnet18_reference[step], result)
    if step == 1:
        assert common.decay_set_matches(resnet18_reference[step], result)


@pytest.mark.parametrize("step", [1, 2])
def test_reactnet_a_step_matches_official(reference, step):
    result = ours(reference, "reactnet", step)
    assert_step_parity(reference[step], result)
    if step == 1:  # mobilenet/1_step1/train.py's weight-decay group = our coupled-L2 set
        assert common.decay_set_matches(reference[step], result)


def test_dybnn_with_zero_hyper_functions_matches_official_reactnet(reference):
    """Case 4: DySign = RSign and DyPReLU = RPReLU step-exactly (step-1 configuration, with
    weight decay on the shifts)."""
    result = ours(reference, "dybnn", 1)
    assert_step_parity(reference[1], result)
    assert common.decay_set_matches(reference[1], result)


def test_dybnn_with_constant_hyper_outputs_matches_official_reactnet(reference):
    """Case 4: non-zero generated thresholds/shifts (FC2 bias, up to ~1) standing in for the
    official static ones (step-2 configuration: binary weights too)."""
    result = ours(reference, "dybnn", 2, offsets=True)
    assert result["hyper_outputs"] > 0.5
    assert_step_parity(reference[2], result)


@pytest.mark.parametrize("script", ["reactnet_step.py", "dybnn_step.py"])
@pytest.mark.parametrize("args", [[], ["--official-repo", "/nonexistent/ReActNet"]])
def test_scripts_refuse_bad_input_with_one_line(script, args, subprocess_env, tmp_path):
    """No mode, or a reference run without PyTorch / without a ReActNet checkout: exit 2,
    one line on stderr, nothing written."""
    import subprocess

    from conftest import command_stderr_lines

    done = subprocess.run(
        [sys.executable, str(PARITY / script), *args, "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=subprocess_env, cwd=REPO, timeout=120,
    )
    lines = command_stderr_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert not list(tmp_path.iterdir())


def test_float64_models_compute_in_float64():
    """Under a float64 policy nothing is silently float32 (Keras' Input is ``floatx()``, the
    logits Dense was pinned to float32, the KD loss and the coupled decay cast to float32):
    the harness above needs it, and so does anyone checking a model in float64."""
    import tensorflow as tf

    from larq_adaptive.training.distillation import soft_target_cross_entropy
    from larq_adaptive.training.stages import CoupledWeightDecay

    model, _ = common.build("reactnet", 1)
    assert model.input.dtype == tf.float64 and model.output.dtype == tf.float64
    logits = tf.constant([[1.0, 2.0, 3.0]], tf.float64)
    teacher = tf.constant([[3.0, 2.0, 1.0]], tf.float64)
    loss = soft_target_cross_entropy(teacher, logits)
    assert loss.dtype == tf.float64
    p = np.exp([3.0, 2.0, 1.0]) / np.exp([3.0, 2.0, 1.0]).sum()
    log_q = np.array([1.0, 2.0, 3.0]) - np.log(np.exp([1.0, 2.0, 3.0]).sum())
    assert loss.numpy()[0] == pytest.approx(-(p * log_q).sum(), rel=1e-15)
    decay = CoupledWeightDecay(model, "reactnet")
    decay.coefficient.assign(1e-5)
    assert decay.loss().dtype == tf.float64
    assert soft_target_cross_entropy(tf.cast(teacher, tf.float32),
                                     tf.cast(logits, tf.float16)).dtype == tf.float32
