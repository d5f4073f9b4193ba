"""``python -m larq_adaptive.plot``: binary-sets and training-curve figures."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive import plot
from larq_adaptive.layers import AdaBinConv2D, PaddedQuantConv2D
from larq_adaptive.quantizers import DySign, ReActNetWeightQuantizer, RSign

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _model(kind):
    inputs = tf.keras.Input((8, 8, 3))  # RGB, so real images can be fed
    x = inputs
    for i in range(2):
        if kind == "adabin":
            conv = AdaBinConv2D(16, 3, name=f"conv{i}")
        else:
            quantizer = DySign(reduction=4) if kind == "dybnn" else RSign()
            conv = PaddedQuantConv2D(16, 3, input_quantizer=quantizer,
                                     kernel_quantizer=ReActNetWeightQuantizer(), name=f"conv{i}")
        x = conv(x)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x), name=kind)
    rng = np.random.default_rng(0)
    for variable in model.trainable_weights:
        if "kernel" not in variable.name.split("/")[-1]:
            variable.assign(variable + rng.normal(0, 0.2, variable.shape).astype(np.float32))
    return model


def lines_of(ax):
    return {line.get_label(): line.get_ydata() for line in ax.get_lines()}


def _texts(labels):
    return [label.get_text() for label in labels]


def test_binary_sets_cli_and_adabin_levels(tmp_path):
    model = _model("adabin")
    path, out = tmp_path / "m.keras", tmp_path / "sets.png"
    model.save(path)
    assert plot.main(["binary-sets", str(path), str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000

    fig = plot.binary_sets_figure(model)
    ax_w, ax_a = fig.axes
    assert _texts(ax_a.get_xticklabels()) == ["conv0", "conv1"]
    assert ax_w.get_ylabel() and ax_a.get_ylabel() and ax_w.get_legend() is not None
    # The plotted activation levels are alpha (beta -/+ 1) of each layer (official form).
    lines = lines_of(ax_a)
    for i in range(2):
        q = model.get_layer(f"conv{i}").input_quantizer
        alpha, beta = q.alpha.numpy(), q.beta.numpy()
        low, high = alpha * (beta - 1), alpha * (beta + 1)
        assert lines["lower level alpha(beta - 1)"][i] == pytest.approx(low, rel=1e-5)
        assert lines["upper level alpha(beta + 1)"][i] == pytest.approx(high, rel=1e-5)
        assert lines["threshold beta"][i] == pytest.approx(beta, rel=1e-5)
    # Weight panel: the median center is the median over filters of the filter means.
    latent = model.get_layer("conv1").kernel.latent_variable.numpy()
    centers = lines_of(ax_w)["median center"]
    assert centers[1] == pytest.approx(np.median(latent.mean(axis=(0, 1, 2))), abs=1e-6)


def test_threshold_distributions_for_rsign_and_dysign():
    reactnet = _model("reactnet")
    rsign = plot.activation_sets(reactnet)
    assert [kind for _, kind, _ in rsign] == ["static", "static"]
    bias = reactnet.get_layer("conv0").input_quantizer.bias.numpy()
    assert np.std(bias) > 0  # perturbed, so the comparison is not between zeros
    np.testing.assert_allclose(rsign[0][2], -bias)

    model = _model("dybnn")
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    sets = plot.activation_sets(model, plot._normalise(images, (8, 8)))
    assert [kind for _, kind, _ in sets] == ["dynamic", "dynamic"]
    assert sets[0][2].shape == (5 * 3,)  # images x channels of conv0
    assert np.std(sets[0][2]) > 0
    fig = plot.binary_sets_figure(model, images=images)
    assert "DySign" in " ".join(_texts(fig.axes[1].get_legend().get_texts()))


def _write_log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_curves_from_staged_run_dir(tmp_path):
    stage1 = [dict(epoch=e, accuracy=0.1 * e, loss=2 - 0.1 * e, val_accuracy=0.1 * e,
                   val_loss=2.0) for e in range(3)]
    stage2 = [dict(epoch=e, accuracy=0.5, loss=1.0, val_accuracy="" if e == 0 else 0.6,
                   val_loss="" if e == 0 else 1.1) for e in range(2)]  # val skipped once
    _write_log(tmp_path / "stage_2" / "log.csv", stage2)
    _write_log(tmp_path / "stage_1" / "log.csv", stage1)
    (tmp_path / "state.json").write_text(json.dumps({"finished_stages": ["step1", "step2"]}))

    logs = plot.read_run_logs(tmp_path)
    assert [label for label, _ in logs] == ["stage 1 (step1)", "stage 2 (step2)"]
    assert np.isnan(logs[1][1]["val_loss"][0]) and logs[1][1]["val_loss"][1] == 1.1

    fig = plot.curves_figure(tmp_path)
    ax_loss, ax_acc = fig.axes
    acc = [line for line in ax_acc.get_lines() if line.get_label() == "accuracy"][0]
    np.testing.assert_allclose(acc.get_xdata(), [1, 2, 3])  # stage 1, global epochs 1..3
    stage2_acc = [line for line in ax_acc.get_lines()
                  if line.get_label() == "_" and list(line.get_ydata()) == [0.5, 0.5]]
    np.testing.assert_allclose(stage2_acc[0].get_xdata(), [4, 5])
    boundaries = [line.get_xdata()[0] for line in ax_loss.get_lines()
                  if line.get_linestyle() == "--"]
    assert boundaries == [0.5, 3.5]
    assert "stage 2 (step2)" in _texts(ax_loss.texts)

    out = tmp_path / "figures" / "curves.png"  # a missing folder is created
    assert plot.main(["curves", str(tmp_path), str(out)]) == 0
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_curves_single_log_and_missing(tmp_path):
    _write_log(tmp_path / "log.csv", [dict(epoch=0, loss=1.0, sparse_categorical_accuracy=0.3),
                                      dict(epoch=1, loss=0.5, sparse_categorical_accuracy=0.6)])
    fig = plot.curves_figure(tmp_path)
    assert [line.get_label() for line in fig.axes[1].get_lines()] == [
        "sparse_categorical_accuracy"
    ]
    with pytest.raises(FileNotFoundError):
        plot.read_run_logs(tmp_path / "empty")
