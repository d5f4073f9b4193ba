"""Batch normalization with PyTorch's running statistics."""

import tensorflow as tf

from larq_adaptive.serialization import register

__all__ = ["TorchBatchNormalization"]


def fused_alignment(dtype):
    """The channel multiple at which oneDNN's fused batch-norm kernels take their fast path on
    CPU: 8 for float32, 16 for 16-bit types (``python benchmarks/bfloat16_ops.py --channels 24``:
    24 channels are fast in float32, slow in bfloat16)."""
    return 8 if tf.as_dtype(dtype).size == 4 else 16


def _pad_channels(t, extra, value=0.0):
    return tf.pad(t, [[0, 0]] * (t.shape.rank - 1) + [[0, extra]], constant_values=value)


@register
class TorchBatchNormalization(tf.keras.layers.BatchNormalization):
    r"""``BatchNormalization`` whose training mode matches PyTorch's ``BatchNorm1d/2d``.

    Over the ``n`` values of each channel in the batch (all axes but the last):

    .. math::
        y = \gamma \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta, \qquad
        \hat\mu \leftarrow m \hat\mu + (1 - m) \mu_B, \qquad
        \hat\sigma^2 \leftarrow m \hat\sigma^2 + (1 - m) \frac{n}{n - 1} \sigma_B^2

    (``sigma_B^2`` the biased batch variance; Keras ``momentum`` ``m`` = 1 - PyTorch's).
    Keras' fused kernel (4-D inputs in float32/float16/bfloat16) already tracks the unbiased
    variance; its non-fused path (2-D inputs such as pooled features, and every input in
    float64) tracks the biased one, which this layer replaces.

    Training speed: on CPU, TensorFlow's fused kernel takes a slow path when the channel
    count is not a multiple of 8 (float32) or 16 (bfloat16/float16), common in DWR's pruned
    widths (30, 86, 154): 5-12x the time of the next multiple. In training this layer then
    zero-pads 4-D inputs' channels to that multiple, normalizes with the fused kernel and
    slices the result back (3-8x faster, pad and slice included): the extra channels change
    no other channel's statistics, and gradients flow through the pad and slice. Inference is
    Keras' own (same graph, same LCE export). Channels must be the last axis; renorm, virtual
    batches, ``adjustment`` and synchronized BN are not supported.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.renorm or self.virtual_batch_size or self.adjustment or self.synchronized:
            raise ValueError("TorchBatchNormalization supports neither renorm, "
                             "virtual_batch_size, adjustment nor synchronized")

    def build(self, input_shape):
        super().build(input_shape)
        rank = len(input_shape)
        if list(self.axis) != [rank - 1]:
            raise ValueError(f"TorchBatchNormalization normalizes the last axis only, got "
                             f"axis={self.axis} for rank {rank}")

    def call(self, inputs, training=None):
        if training is None:
            training = tf.keras.backend.learning_phase()
        if isinstance(training, int):
            training = bool(training)
        if not self.trainable:
            training = False  # as Keras: a frozen BN runs in inference mode
        train_step = self._own_train_step(inputs)
        if train_step is None or training is False:
            return super().call(inputs, training=training)
        return tf.__internal__.smart_cond.smart_cond(
            training,
            lambda: train_step(inputs),
            lambda: super(TorchBatchNormalization, self).call(inputs, training=False),
        )

    def _own_train_step(self, inputs):
        """This layer's training computation for ``inputs``, or None for Keras' fused one."""
        if not self.fused:
            return self._moments_train_step
        if inputs.shape.rank == 4 and inputs.shape[-1] % fused_alignment(self.compute_dtype):
            return self._padded_fused_train_step
        return None

    def _update_running_statistics(self, inputs, mean, unbiased_variance):
        """Moves the running statistics towards the batch's; an empty batch (a replica's share
        of a short last batch under ``tf.distribute``), whose statistics are NaN, leaves them."""
        decay = tf.constant(1.0 - self.momentum, self.moving_mean.dtype)  # not via float32
        nonempty = tf.shape(inputs)[0] > 0
        for variable, value in ((self.moving_mean, mean), (self.moving_variance, unbiased_variance)):
            step = (variable - value) * decay
            variable.assign_sub(tf.where(nonempty, step, tf.zeros_like(step)))

    def _moments_train_step(self, inputs):
        x = tf.cast(inputs, self.moving_mean.dtype)  # statistics in the variable dtype
        axes = list(range(len(x.shape) - 1))
        mean, variance = tf.nn.moments(x, axes)
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        outputs = tf.nn.batch_normalization(
            x, mean, variance, self.beta, self.gamma, self.epsilon
        )
        self._update_running_statistics(
            x, mean, variance * count / tf.maximum(count - 1.0, 1.0))
        return tf.cast(outputs, self.compute_dtype)

    def _padded_fused_train_step(self, inputs):
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        extra = -channels % fused_alignment(x.dtype)
        gamma = self.gamma if self.scale else tf.ones([channels], self._param_dtype)
        beta = self.beta if self.center else tf.zeros([channels], self._param_dtype)
        outputs, mean, unbiased_variance = tf.compat.v1.nn.fused_batch_norm(
            _pad_channels(x, extra), _pad_channels(gamma, extra, 1.0), _pad_channels(beta, extra),
            epsilon=self.epsilon, is_training=True,
        )[:3]  # the fused kernel returns the batch variance with Bessel's correction
        self._update_running_statistics(x, mean[:channels], unbiased_variance[:channels])
        return tf.slice(outputs, [0] * x.shape.rank, [-1] * (x.shape.rank - 1) + [channels])
