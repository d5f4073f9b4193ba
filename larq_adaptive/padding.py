"""PyTorch-equivalent padding arithmetic that survives the LCE converter (the layers that
use it live in :mod:`larq_adaptive.layers`).

PyTorch pads ``p`` on both sides. Keras/TF "same" pads (0, 1) for a 3x3 stride-2 conv on an
even size, and the LCE converter folds a *symmetric* explicit pad + stride-2 VALID conv back
into TF "same" (measured with larq-compute-engine 0.16, see docs/deployment.md). We therefore pad ``p`` before and only as much
after as the strided window actually reads: the result is identical to symmetric padding
(the rows/columns dropped are never read) and, being asymmetric, the pad stays a PAD op.
"""

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


def pair(value):
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)
