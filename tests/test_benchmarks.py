"""The speed benchmarks run as documented (smoke size, fresh processes): their tables and
JSON carry every row, the CPU's bfloat16 flags and finite ratios."""

import json
import math
import subprocess
import sys

import pytest

from conftest import BENCHMARK_RESULTS, REPO, child_env, npz_shard


def _run(tmp_path, script, *args):
    out = tmp_path / "result.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args,
                             "--json", str(out)], capture_output=True, text=True, timeout=900,
                            cwd=tmp_path, env=child_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())


@pytest.mark.slow  # two models built and stepped under an emulated bfloat16 on most CPUs
def test_train_step_policy_comparison(tmp_path):
    stdout, report = _run(tmp_path, "train_step.py", "--policy", "mixed_bfloat16", "--models",
                          "adabin_resnet20", "dwr_reactnet_resnet20", "--batch-size", "2",
                          "--rounds", "1", "--steps", "1")
    assert "CPU bfloat16 flags:" in stdout and report["cpu"].startswith("CPU bfloat16 flags:")
    assert set(report["results"]) == {"adabin_resnet20", "dwr_reactnet_resnet20"}
    for name, row in report["results"].items():
        assert math.isfinite(row["speedup"]) and row["speedup"] > 0, name
        assert math.isfinite(row["speedup_lower_quartile"]) and row["speedup_lower_quartile"] > 0, name
        assert row["stalled_steps"]["of"] == len(row["samples_ms"]["float32"]) == 1, name
        assert f"| {name} |" in stdout


@pytest.mark.slow  # seven ResNet-20s built and stepped
def test_train_step_quantizer_comparison(tmp_path):
    stdout, report = _run(tmp_path, "train_step.py", "--batch-size", "2", "--rounds", "1",
                          "--steps", "2")
    rows = report["results"]
    assert len(rows) == 7 and rows["plain_ste_sign_resnet20"]["ratio_to_reference"] == 1.0
    for name in ("adabin_resnet20", "reactnet_resnet20", "dybnn_resnet20"):
        for key in ("ratio_to_ste_sign_twin", "ratio_to_ste_sign_twin_lower_quartile"):
            assert math.isfinite(rows[name][key]) and rows[name][key] > 0, (name, key)
        assert rows[name + "+ste_sign"]["ratio_to_ste_sign_twin"] is None
        assert len(rows[name]["samples_ms"]) == 2 and f"| {name} |" in stdout


@pytest.mark.slow  # four processes of TensorFlow
def test_threads_benchmark(tmp_path):
    stdout, report = _run(tmp_path, "threads.py", "--rounds", "1", "--steps", "4",
                          "--batch-size", "4", "--model", "reactnet_resnet20")
    rows = report["results"]
    assert rows["tensorflow default"]["ratio_to_tf_default"] == 1.0
    assert len(rows) == 4 and all(r["median_ms"] > 0 for r in rows.values())
    assert "| intra-op 1, inter-op 1 |" in stdout


@pytest.mark.slow  # one bfloat16 step of the real recipe's batch (emulated on most CPUs)
def test_fixed_budget_bfloat16_run_and_report(tmp_path):
    data = npz_shard(tmp_path / "data", 256, size=32)
    root = tmp_path / "runs"
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "fixed_budget.py"), "--policy",
         "mixed_bfloat16", "--models", "adabin_resnet20", "--epochs", "1", "--steps-per-epoch",
         "1", "--data-dir", str(data), "--val-data-dir", str(data), "--output-root", str(root),
         "--plot", str(tmp_path / "curves.png")],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=child_env())
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((root / "seed0" / "adabin_resnet20_mixed_bfloat16" / "config.json")
                        .read_text())
    assert config["mixed_precision"] == "bfloat16"
    runs = json.loads((root / "fixed_budget.json").read_text())
    assert set(runs) == {"adabin_resnet20_mixed_bfloat16"}
    run = runs["adabin_resnet20_mixed_bfloat16"]["0"]
    assert len(run["curve"]) == 1 and run["finished"] and run["seconds_per_epoch"] > 0
    assert "| adabin_resnet20_mixed_bfloat16 | 0 |" in result.stdout
    stored = json.loads((BENCHMARK_RESULTS / "fixed_budget.json").read_text())
    assert stored["results"]["runs"] == runs and stored["environment"]["command"].startswith(
        "python benchmarks/fixed_budget.py --policy mixed_bfloat16")


@pytest.mark.slow  # TensorFlow ops in two dtypes (emulated bfloat16 on most CPUs)
def test_bfloat16_ops_benchmark(tmp_path):
    stdout, report = _run(tmp_path, "bfloat16_ops.py", "--batch-size", "2", "--channels", "30",
                          "--size", "8", "--rounds", "1", "--calls", "1")
    assert report["cpu"].startswith("CPU bfloat16 flags:") and report["cpu"] in stdout
    assert report["channels"] == 30 and "tensor 2x8x8x30," in stdout
    assert {"Conv2DBackpropInput", "SelectV2", "ReluGrad", "ApproxSign backward, larq",
            "ApproxSign backward, larq_adaptive", "HardTanh backward, clip_by_value",
            "HardTanh backward, larq_adaptive", "Maxout forward + backward, autodiff",
            "Maxout forward + backward, larq_adaptive", "PReLU forward + backward, larq_adaptive",
            "Mul by a per-channel vector, 1x1 depthwise", "ApproxSign backward, element-wise",
            "Add a per-channel vector", "Add a per-channel vector, shift_channels",
            "BatchNorm forward + backward, FusedBatchNormV3",
            "BatchNorm forward + backward, TorchBatchNormalization",
            "Channel slice forward + backward, strided slice",
            "Channel slice forward + backward, ChannelSlice",
            "Subsample 2x forward + backward, strided slice",
            "Subsample 2x forward + backward, subsample",
            "Conv2DBackpropFilter as a forward conv", "Conv2DBackpropFilter as patches x matmul",
            } <= set(report["results"])
    for op, row in report["results"].items():
        assert row["float32"] > 0 and row["bfloat16"] > 0 and math.isfinite(row["speedup"]), op
        assert f"| {op} |" in stdout


@pytest.mark.slow  # two profiled steps of one ResNet-20 (emulated bfloat16 on most CPUs)
def test_op_time_benchmark(tmp_path):
    stdout, report = _run(tmp_path, "op_time.py", "--models", "float_adabin_resnet20",
                          "--batch-size", "2", "--steps", "1", "--target", "1.2")
    assert report["cpu"].startswith("CPU bfloat16 flags:") and report["cpu"] in stdout
    row = report["results"]["float_adabin_resnet20"]
    full, reduced = row["float32_ms"], row["mixed_bfloat16_ms"]
    for times in (full, reduced):  # the profile's kernels were found and grouped
        assert set(times) == {"conv", "batch_norm", "other"} and min(times.values()) > 0
    assert math.isclose(row["ops_speedup"], sum(full.values()) / sum(reduced.values()),
                        rel_tol=0.05)
    # ops one at a time (the default): the op times cannot add up to more than the step
    assert all(0 < share <= 1.05 for share in row["ops_over_step"])
    assert math.isclose(row["at_break_even"], sum(full.values())
                        / (reduced["conv"] + reduced["batch_norm"] + full["other"]), rel_tol=0.05)
    needed = row["other_speedup_needed"]  # other ops that fast would give exactly the target
    if needed is not None:
        total = reduced["conv"] + reduced["batch_norm"] + full["other"] / needed
        assert math.isclose(sum(full.values()) / total, row["target"], rel_tol=0.05)
    # the grouping: no convolution or batch norm among the "other" ops
    assert row["top_other_ops_ms"] and not any(
        "Conv2D" in op or "BatchNorm" in op for op in row["top_other_ops_ms"])
    assert all(a >= 0 and b >= 0 for a, b in row["top_other_ops_ms"].values())
    assert "| float_adabin_resnet20 |" in stdout and "largest other ops" in stdout


@pytest.mark.slow  # decodes, augments and trains a little in three scenarios
def test_input_pipeline_benchmark_smoke(tmp_path):
    stdout, report = _run(tmp_path, "input_pipeline.py", "--smoke")
    rows = {row["scenario"]: row for row in report}
    assert rows["check"]["files"] == 8
    assert rows["cifar-input"]["images_per_s"] > 0 and rows["cifar-model"]["images_per_s"] > 0
    assert "| imagenet-input |" in stdout


def test_fit_step_is_train_on_batch_on_one_iterator():
    """benchmarks/_fit_step.py runs the same training step as ``train_on_batch`` (same losses
    and weights after three steps of two identical models), through one iterator."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from _fit_step import fit_step
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 3)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    models = []
    for _ in range(2):
        tf.keras.utils.set_random_seed(0)
        model = tf.keras.Sequential([tf.keras.layers.Conv2D(4, 3, input_shape=(4, 4, 3)),
                                     tf.keras.layers.Flatten(), tf.keras.layers.Dense(3)])
        model.compile(tf.keras.optimizers.SGD(0.1, momentum=0.9),
                      tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        models.append(model)
    step = fit_step(models[0], x, y)
    losses = [step()["loss"] for _ in range(3)]
    expected = [models[1].train_on_batch(x, y) for _ in range(3)]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert int(models[0].optimizer.iterations) == 3 and losses[2] < losses[0]
    for mine, theirs in zip(models[0].get_weights(), models[1].get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("flags, message", [
    (["--channels", "4"], "--channels must be at least 8"),
    (["--size", "7"], "--size must be an even number of at least 4"),
])
def test_bfloat16_ops_refuses_bad_shapes(tmp_path, flags, message):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bfloat16_ops.py"),
                             *flags], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path, env=child_env())
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr


@pytest.mark.parametrize("size, channels", [(8, 16), (6, 24)])
def test_bfloat16_ops_filter_gradient_forms_equal_tensorflows(size, channels):
    """The two other forms of a 3x3 "same" convolution's filter gradient that
    bfloat16_ops.py times give TensorFlow's own Conv2DBackpropFilter (float64 oracle)."""
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bfloat16_ops
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    rng = np.random.default_rng(size)
    x = rng.normal(size=(3, size, size, channels))
    dy = rng.normal(size=(3, size, size, channels))
    expected = tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=[3, 3, channels, channels], out_backprop=dy,
        strides=[1, 1, 1, 1], padding="SAME").numpy()
    for form in (bfloat16_ops._filter_gradient_by_conv, bfloat16_ops._filter_gradient_by_patches):
        got = form(tf.constant(x, tf.float32), tf.constant(dy, tf.float32)).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4, err_msg=form.__name__)
