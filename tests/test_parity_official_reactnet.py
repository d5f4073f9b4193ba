"""Step parity with the official ReActNet code (issue 12, cases 2 and 4), without PyTorch.

The oracle is the official code itself: ``tests/data/parity/reactnet_a_step{1,2}.npz`` were
written by ``benchmarks/parity/reactnet_step.py --official-repo`` running the official
``mobilenet/{1_step1,2_step2}/reactnet.py`` network (reduced width: every block type),
``utils/KD_loss.DistributionLoss`` and ``torch.optim.Adam`` with the parameter groups of
``mobilenet/*/train.py``, two steps in float64. Here our network (``reactnet_a_network``,
and DyBNN's with its hyper-functions' outputs held constant) takes the same initial weights
and batch and runs the same two steps with our training code (``Distiller``,
``CoupledWeightDecay``, ``make_optimizer("adam")``, the linear recipe schedule); every
loss, gradient, Adam slot, updated tensor and eval-mode logit must agree to 1e-5 relative.
docs/parity_reactnet.md has the measured table.
"""

import importlib.util
import sys

import numpy as np
import pytest

from conftest import REPO

PARITY = REPO / "benchmarks" / "parity"
TOLERANCE = 1e-5


def _common():
    if str(PARITY) not in sys.path:
        sys.path.insert(0, str(PARITY))
    spec = importlib.util.spec_from_file_location("_reactnet_common",
                                                  PARITY / "_reactnet_common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _common()


def torch_running_variance():
    """True once our BN tracks PyTorch's unbiased running variance in float64
    (``TorchBatchNormalization``, issue 12 section 2, done on another branch)."""
    import larq_adaptive.layers as layers

    return hasattr(layers, "TorchBatchNormalization")


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
    # Running variance (and the eval logits that use it): unbiased as PyTorch's only with
    # TorchBatchNormalization; Keras' float64 BN tracks the biased batch variance.
    if torch_running_variance():
        assert max(worst[g][0] for g in moving_variance) <= TOLERANCE, common.format_table(worst)
    else:
        assert worst["BN running var"][0] > TOLERANCE  # the known n/(n-1) difference
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
