"""Padding of binary convs in LCE files: the compact border correction (a few C_out vectors,
never a full (1, H, W, C_out) constant), LCE's own "same" padding where PyTorch's equals it,
and pad_values=1.0 (+1 padding, no correction). Oracles: hand-derived tap sets and numpy
sliding-window sums; the LCE interpreter must match Keras for both paddings, stride 1 and 2,
odd and even sizes."""

import numpy as np
import pytest
import tensorflow as tf

import larq_adaptive  # noqa: F401
from larq_adaptive import export
from larq_adaptive.layers import AdaBinConv2D, PaddedQuantConv2D
from larq_adaptive.padding import border_correction, is_same_padding, outside_taps, same_pads
from larq_adaptive.quantizers import ReActNetWeightQuantizer, RSign

from conftest import bconv_options

CHANNELS, FILTERS = 32, 24


# --------------------------------------------------------------------------- padding math


def test_outside_taps_by_hand():
    # 3x3, pad 1. Stride 1: first output reads row -1, last reads row H.
    assert outside_taps(5, 3, 1, 1) == [(0,), (), (), (), (2,)]
    # Stride 2, odd size 7: outputs read rows -1..1, 1..3, 3..5, 5..7 (7 is padding).
    assert outside_taps(7, 3, 2, 1) == [(0,), (), (), (2,)]
    # Stride 2, even size 8: the last window reads rows 5..7, all inside.
    assert outside_taps(8, 3, 2, 1) == [(0,), (), (), ()]
    # 5x5, pad 2, stride 1 on 4 rows: output i reads rows i-2..i+2 of rows 0..3.
    assert outside_taps(4, 5, 1, 2) == [(0, 1), (0,), (4,), (3, 4)]
    assert outside_taps(6, 1, 1, 0) == [()] * 6


def test_same_padding_equivalence_by_hand():
    assert same_pads(8, 3, 2) == (0, 1)  # TF pads after, PyTorch (1, 0): not equivalent
    assert same_pads(7, 3, 2) == (1, 1)
    assert is_same_padding((1, 8, 8, 1), (3, 3), (1, 1), (1, 1))
    assert is_same_padding((1, 7, 7, 1), (3, 3), (2, 2), (1, 1))
    assert not is_same_padding((1, 8, 8, 1), (3, 3), (2, 2), (1, 1))
    assert not is_same_padding((1, 7, 8, 1), (3, 3), (2, 2), (1, 1))  # one axis is enough


def _mask_conv_oracle(kernel, size, stride, pad):
    """conv(m, kernel) by explicit sliding windows over the zero-padded-with-ones mask."""
    kh, kw, _, filters = kernel.shape
    h, w = size
    mask = np.pad(np.zeros((h, w)), pad, constant_values=1.0)
    out_h, out_w = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    taps = kernel.sum(axis=2)  # (kh, kw, filters)
    result = np.zeros((out_h, out_w, filters))
    for i in range(out_h):
        for j in range(out_w):
            window = mask[i * stride: i * stride + kh, j * stride: j * stride + kw]
            result[i, j] = np.tensordot(window, taps, axes=([0, 1], [0, 1]))
    return result


@pytest.mark.parametrize("size,stride,kernel_size", [
    ((8, 8), 1, 3), ((7, 7), 1, 3), ((8, 8), 2, 3), ((7, 7), 2, 3), ((7, 8), 2, 3),
    ((6, 9), 1, 5), ((9, 6), 2, 5),
])
def test_border_correction_equals_the_mask_convolution(size, stride, kernel_size):
    kernel = np.random.default_rng(0).normal(size=(kernel_size, kernel_size, 5, 7))
    kernel = kernel.astype(np.float32)
    pad = kernel_size // 2
    got = border_correction(tf.constant(kernel), (1, *size, 5), (stride, stride), (pad, pad))
    expected = _mask_conv_oracle(kernel.astype(np.float64), size, stride, pad)
    assert got.shape == (1, *expected.shape)
    np.testing.assert_allclose(got.numpy()[0], expected, atol=1e-5)
    assert np.abs(expected).max() > 0.5  # non-trivial


# --------------------------------------------------------------------------- LCE files


def _conv(kind, strides, pad_values, name):
    if kind == "adabin":
        return AdaBinConv2D(FILTERS, 3, strides=strides, pad_values=pad_values, name=name)
    return PaddedQuantConv2D(FILTERS, 3, strides=strides, pad_values=pad_values, use_bias=False,
                             input_quantizer=RSign(), kernel_quantizer=ReActNetWeightQuantizer(),
                             name=name)


def one_conv_models(kind, pad_values, seed=0):
    """(model, {(size, stride): conv}): an 8x8 input and its 7x7 crop, each through a stride-1
    and a stride-2 binary conv, outputs flattened and concatenated. Thresholds and AdaBin
    alpha/beta are moved off their initial values."""
    rng = np.random.default_rng(seed)
    inputs = tf.keras.Input((8, 8, CHANNELS))
    crop = tf.keras.layers.Cropping2D(((0, 1), (1, 0)))(inputs)
    convs, outputs = {}, []
    for size, x in ((8, inputs), (7, crop)):
        for stride in (1, 2):
            conv = convs[size, stride] = _conv(kind, stride, pad_values, f"s{stride}_{size}_conv")
            outputs.append(tf.keras.layers.Flatten()(conv(x)))
    model = tf.keras.Model(inputs, tf.keras.layers.Concatenate()(outputs))
    for variable in model.weights:
        if "kernel" not in variable.name:
            variable.assign(variable + rng.uniform(0.05, 0.15, variable.shape).astype(np.float32))
    return model, convs


def _inputs(n=3, seed=1):
    rng = np.random.default_rng(seed)
    shape = (n, 8, 8, CHANNELS)
    return (rng.choice([-1.0, 1.0], shape) * rng.uniform(0.7, 1.5, shape)).astype(np.float32)


def _map_constants(flatbuffer):
    """Float constants shaped like a feature map (1, h, w, c): where a correction is stored."""
    return [t.shape for t in export.constant_tensors(flatbuffer)
            if t.type == "FLOAT32" and len(t.shape) == 4 and t.shape[0] == 1]


@pytest.mark.parametrize("kind", ["reactnet", "adabin"])
@pytest.mark.parametrize("pad_values", [0.0, 1.0])
def test_lce_matches_keras_and_stores_no_full_size_correction(kind, pad_values):
    model, _ = one_conv_models(kind, pad_values)
    report = export.to_tflite(model)
    assert report.ok and report.histogram["LceBconv2d"] == 4
    assert report.histogram["CONV_2D"] == 0
    x = _inputs()
    expected = model.predict(x, verbose=0)
    diff = np.abs(export.lce_predict(report.flatbuffer, x) - expected)
    assert diff.max() <= 1e-4, f"max |diff| {diff.max():.2e}"
    assert np.abs(expected).max() > 0.5
    # A correction is a few C_out vectors (at most 3 x 3 of them), never the
    # (1, H_out, W_out, C_out) map of 4x4 to 8x8 positions.
    for shape in _map_constants(report.flatbuffer):
        assert shape[-1] == FILTERS and shape[1] <= 3 and shape[2] <= 3, shape
    if kind == "reactnet":
        # Only the stride-2 conv on the even size needs an explicit pad (VALID LceBconv2d)
        # and, with zero padding, a correction (two GATHERs). The others use LCE's own
        # "same" padding with the model's pad value.
        assert report.histogram["GATHER"] == (2 if pad_values == 0.0 else 0)
        options = sorted(
            (o["padding"], o["pad_values"] if o["padding"] == 0 else None)
            for o in bconv_options(report.flatbuffer)
        )
        assert options == [(0, pad_values)] * 3 + [(1, None)]


def test_pad_values_one_pads_the_binarized_input_with_plus_one():
    """Training form against numpy: sign(x + b) padded with +1 (AdaBin: its +1 level
    alpha (1 + beta)), then the VALID conv of the binary kernel."""
    x = _inputs(n=1)[:, 1:, 1:].astype(np.float64)  # 7x7
    for kind in ("reactnet", "adabin"):
        model, convs = one_conv_models(kind, 1.0)
        conv = convs[7, 2]
        latent = conv.kernel.latent_variable.numpy().astype(np.float64)
        if kind == "adabin":
            alpha = float(conv.input_quantizer.alpha.numpy())
            beta = float(conv.input_quantizer.beta.numpy())
            q = alpha * (np.where(x - beta >= 0, 1.0, -1.0) + beta)
            pad = alpha * (1.0 + beta)
            mean = latent.mean(axis=(0, 1, 2))
            std = np.sqrt(((latent - mean) ** 2).mean(axis=(0, 1, 2)))
            kernel = np.where(latent >= mean, 1.0, -1.0) * std + mean
        else:
            bias = conv.input_quantizer.bias.numpy().astype(np.float64).reshape(-1)
            q = np.where(x + bias >= 0, 1.0, -1.0)
            pad = 1.0
            kernel = np.where(latent >= 0, 1.0, -1.0) * np.abs(latent).mean(axis=(0, 1, 2))
        padded = np.pad(q, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=pad)
        expected = tf.nn.conv2d(padded, kernel, 2, "VALID").numpy()
        np.testing.assert_allclose(conv(x.astype(np.float32)).numpy(), expected, atol=1e-4)
        zero = np.pad(q, [(0, 0), (1, 1), (1, 1), (0, 0)])
        assert np.abs(expected - tf.nn.conv2d(zero, kernel, 2, "VALID").numpy()).max() > 0.1


def test_pad_values_other_than_zero_or_one_are_refused():
    with pytest.raises(ValueError, match="pad_values"):
        PaddedQuantConv2D(4, 3, pad_values=-1.0)
