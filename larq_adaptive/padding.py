"""PyTorch-equivalent padding arithmetic that survives the LCE converter (the layers that
use it live in :mod:`larq_adaptive.layers`).

PyTorch pads ``p`` on both sides. Keras/TF "same" pads (0, 1) for a 3x3 stride-2 conv on an
even size, and the LCE converter folds a *symmetric* explicit pad + stride-2 VALID conv back
into TF "same" (measured with larq-compute-engine 0.16, see docs/deployment.md). We therefore pad ``p`` before and only as much
after as the strided window actually reads: the result is identical to symmetric padding
(the rows/columns dropped are never read) and, being asymmetric, the pad stays a PAD op.
"""

import numpy as np
import tensorflow as tf


def torch_pads(size, kernel_size, stride, pad, dilation=1):
    """(before, after) padding of one spatial axis equivalent to PyTorch's symmetric ``pad``.

    ``size`` may be a Python int or a scalar tensor (dynamic input sizes).
    """
    span = dilation * (kernel_size - 1) + 1
    outputs = (size + 2 * pad - span) // stride + 1
    needed_after = (outputs - 1) * stride + span - size - pad
    if isinstance(size, int):
        return pad, max(0, min(pad, needed_after))
    return pad, tf.clip_by_value(needed_after, 0, pad)


def spatial_pads(shape, kernel_size, strides, pad, dilation_rate=(1, 1)):
    """NHWC ``tf.pad`` paddings for a 2-D window op given the (possibly dynamic) input shape."""
    rows = torch_pads(shape[1], kernel_size[0], strides[0], pad[0], dilation_rate[0])
    cols = torch_pads(shape[2], kernel_size[1], strides[1], pad[1], dilation_rate[1])
    return [[0, 0], list(rows), list(cols), [0, 0]]


def pad_nhwc(inputs, kernel_size, strides, pad, value=0.0, dilation_rate=(1, 1)):
    """Pad ``inputs`` (NHWC) for a following VALID window op, PyTorch-equivalently."""
    shape = [
        dim if dim is not None else tf.shape(inputs)[i]
        for i, dim in enumerate(inputs.shape.as_list())
    ]
    paddings = spatial_pads(shape, kernel_size, strides, pad, dilation_rate)
    return tf.pad(inputs, paddings, constant_values=value)


def padded_shape(input_shape, kernel_size, strides, pad, dilation_rate=(1, 1)):
    """Static shape after :func:`pad_nhwc` (``None`` stays ``None``)."""
    shape = list(tf.TensorShape(input_shape).as_list())
    for axis in (1, 2):
        if shape[axis] is not None:
            i = axis - 1
            before, after = torch_pads(
                shape[axis], kernel_size[i], strides[i], pad[i], dilation_rate[i]
            )
            shape[axis] += before + after
    return tf.TensorShape(shape)


def same_pads(size, kernel_size, stride, dilation=1):
    """(before, after) padding of TF/Keras ``padding="same"`` on one axis (static ``size``)."""
    span = dilation * (kernel_size - 1) + 1
    outputs = -(-size // stride)
    total = max((outputs - 1) * stride + span - size, 0)
    return total // 2, total - total // 2


def is_same_padding(shape, kernel_size, strides, pad, dilation_rate=(1, 1)):
    """True when PyTorch's padding ``pad`` equals TF "same" padding on both spatial axes of the
    static NHWC ``shape`` (stride 1 with ``pad = k // 2``, stride 2 on odd sizes, ...): then a
    binary conv can use LCE's own "same" padding, zero or one, exactly."""
    return all(
        torch_pads(shape[1 + i], kernel_size[i], strides[i], pad[i], dilation_rate[i])
        == same_pads(shape[1 + i], kernel_size[i], strides[i], dilation_rate[i])
        for i in (0, 1)
    )


def outside_taps(size, kernel_size, stride, pad, dilation=1):
    """For each output position of one axis, the kernel taps (``0..kernel_size-1``) that read
    padding rather than the input (empty inside the image)."""
    before, after = torch_pads(size, kernel_size, stride, pad, dilation)
    span = dilation * (kernel_size - 1) + 1
    outputs = (size + before + after - span) // stride + 1
    return [
        tuple(a for a in range(kernel_size)
              if not before <= i * stride + a * dilation < before + size)
        for i in range(outputs)
    ]


def border_correction(kernel, shape, strides, pad, dilation_rate=(1, 1), scale=None):
    r"""``conv(m, kernel)`` for the padding mask ``m`` of the static NHWC ``shape`` (1 on the
    padded border, 0 inside), built from a few ``C_out`` vectors; None if no tap reads padding.

    \[ \mathrm{conv}(m, W)_{ij} = \sum_{(a, b):\ a \in R_i \ \text{or}\ b \in C_j}
        \textstyle\sum_c W_{abc} \]

    with ``R_i``/``C_j`` the taps of output row ``i``/column ``j`` that fall outside
    (:func:`outside_taps`). Rows with the same ``R_i`` (all inside rows, the top one, ...) and
    columns with the same ``C_j`` give the same vector, so ``conv(m, W)`` is a small
    ``(1, P, Q, C_out)`` tensor (``P, Q <= 3`` for 3x3 kernels, the inside-inside vector 0)
    expanded by two GATHERs. ``scale`` (a scalar tensor) multiplies the small tensor; a
    factor known only at run time keeps the LCE converter from folding the expanded
    tensor into a full ``(1, H_out, W_out, C_out)`` constant (measured: it folds any
    all-constant expression, gathers and broadcasts included).
    """
    kh, kw = kernel.shape[:2]
    rows = outside_taps(shape[1], kh, strides[0], pad[0], dilation_rate[0])
    cols = outside_taps(shape[2], kw, strides[1], pad[1], dilation_rate[1])
    row_sets, col_sets = sorted(set(rows)), sorted(set(cols))  # () (inside) sorts first
    if row_sets == [()] and col_sets == [()]:
        return None
    taps = tf.reshape(tf.reduce_sum(kernel, axis=2), [kh * kw, -1])  # sum over input channels
    select = np.array(
        [[float(a in r or b in c) for a in range(kh) for b in range(kw)]
         for r in row_sets for c in col_sets],
        dtype=kernel.dtype.as_numpy_dtype,
    )
    vectors = tf.reshape(tf.matmul(select, taps), [1, len(row_sets), len(col_sets), -1])
    if scale is not None:
        vectors = vectors * scale
    vectors = tf.gather(vectors, [row_sets.index(r) for r in rows], axis=1)
    return tf.gather(vectors, [col_sets.index(c) for c in cols], axis=2)


def pair(value):
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
