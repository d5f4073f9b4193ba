"""Parameter-free layers that pad, subsample or slice NHWC tensors (all serialisable, no
``Lambda``)."""

import tensorflow as tf

from larq_adaptive.padding import pad_nhwc, padded_shape, pair
from larq_adaptive.serialization import register

__all__ = ["ChannelSlice", "OptionAShortcut", "TorchPadding2D"]


@register
class TorchPadding2D(tf.keras.layers.Layer):
    """Pads NHWC inputs as PyTorch would for a following VALID conv or pool.

    ``value=0.0`` for convolutions, ``value=float("-inf")`` for max-pooling (PyTorch pads
    max-pool windows with -inf).
    """

    def __init__(self, kernel_size, strides=1, pad=None, value=0.0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = pair(kernel_size)
        self.strides = pair(strides)
        self.pad = pair(pad) if pad is not None else tuple(k // 2 for k in self.kernel_size)
        self.value = float(value)

    def call(self, inputs):
        return pad_nhwc(inputs, self.kernel_size, self.strides, self.pad, self.value)

    def compute_output_shape(self, input_shape):
        return padded_shape(input_shape, self.kernel_size, self.strides, self.pad)

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "pad": self.pad,
            "value": self.value,
        }


def subsample(x, strides):
    """``x[:, ::strides, ::strides, :]`` of an NHWC tensor. When ``strides`` divides the
    static height and width, as a reshape that moves each window's rows and columns next to
    the channels, a ``tf.slice`` and a reshape back: forward and backward (a ``Pad``) 5-12x
    faster on CPU than the strided slice's (``StridedSliceGrad``; ``benchmarks/bfloat16_ops.py``)."""
    _, height, width, channels = x.shape
    if strides == 1:
        return x
    if None in (height, width, channels) or height % strides or width % strides:
        return x[:, ::strides, ::strides, :]
    # (n, s i + a, s j + b, c) -> [n H/s + i, a, j, b C + c]; keep a = 0 and b = 0
    windows = tf.reshape(x, [-1, strides, width // strides, strides * channels])
    kept = tf.slice(windows, [0, 0, 0, 0], [-1, 1, -1, channels])
    return tf.reshape(kept, [-1, height // strides, width // strides, channels])


@register
class OptionAShortcut(tf.keras.layers.Layer):
    """Parameter-free ResNet shortcut ("option A"): keep rows/columns 0, s, 2s, ... and
    zero-pad the channel axis to ``filters``, ``(filters - C_in) // 2`` zeros before and the
    rest after (AdaBin: C_out // 4 on each side; DWR: the same rule for any widths)."""

    def __init__(self, filters, strides=2, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def call(self, inputs):
        x = subsample(inputs, self.strides)
        extra = self.filters - inputs.shape[-1]
        if extra < 0:
            raise ValueError(f"OptionAShortcut cannot reduce {inputs.shape[-1]} to {self.filters}")
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        n, h, w, _ = tf.TensorShape(input_shape).as_list()
        s = self.strides
        return tf.TensorShape(
            [n, None if h is None else -(-h // s), None if w is None else -(-w // s), self.filters]
        )

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}


@register
class ChannelSlice(tf.keras.layers.Layer):
    """Keeps channels ``start:stop`` of an NHWC tensor (a serialisable ``x[..., start:stop]``)."""

    def __init__(self, start, stop, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = int(stop)

    def _kept(self, channels):
        """The kept channel indices, as Python slices them (negative and large bounds too)."""
        return range(channels)[self.start : self.stop]

    def call(self, inputs):
        # tf.slice, not inputs[..., start:stop]: a strided slice's forward and backward
        # (StridedSliceGrad) take ~10x as long on CPU as tf.slice's (a Pad)
        channels, rank = inputs.shape[-1], inputs.shape.rank
        if channels is None:
            return inputs[..., self.start : self.stop]
        kept = self._kept(channels)
        return tf.slice(inputs, [0] * (rank - 1) + [kept.start], [-1] * (rank - 1) + [len(kept)])

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        channels = shape[-1]
        return shape[:-1].concatenate([None if channels is None else len(self._kept(channels))])

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}
