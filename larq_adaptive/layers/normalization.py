"""Batch normalization with PyTorch's running statistics."""

import tensorflow as tf

from larq_adaptive.serialization import register

__all__ = ["TorchBatchNormalization"]


@register
class TorchBatchNormalization(tf.keras.layers.BatchNormalization):
    r"""``BatchNormalization`` whose training mode matches PyTorch's ``BatchNorm1d/2d``.

    Over the ``n`` values of each channel in the batch (all axes but the last):

    .. math::
        y = \gamma \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}} + \beta, \qquad
        \hat\mu \leftarrow m \hat\mu + (1 - m) \mu_B, \qquad
        \hat\sigma^2 \leftarrow m \hat\sigma^2 + (1 - m) \frac{n}{n - 1} \sigma_B^2

    (``sigma_B^2`` the biased batch variance; Keras ``momentum`` ``m`` = 1 - PyTorch's).
    Keras' fused kernel (4-D inputs in float32/float16) already tracks the unbiased
    variance and is used as is; its non-fused path (2-D inputs such as pooled features,
    and every input in float64) tracks the biased one, which this layer replaces.
    Inference is Keras' own (same graph, same LCE export). Channels must be the last axis;
    renorm, virtual batches, ``adjustment`` and synchronized BN are not supported.
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
        if self.fused or training is False:
            return super().call(inputs, training=training)
        return tf.__internal__.smart_cond.smart_cond(
            training,
            lambda: self._train_step(inputs),
            lambda: super(TorchBatchNormalization, self).call(inputs, training=False),
        )

    def _train_step(self, inputs):
        x = tf.cast(inputs, self.moving_mean.dtype)  # statistics in the variable dtype
        axes = list(range(len(x.shape) - 1))
        mean, variance = tf.nn.moments(x, axes)
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        outputs = tf.nn.batch_normalization(
            x, mean, variance, self.beta, self.gamma, self.epsilon
        )
        unbiased = variance * count / tf.maximum(count - 1.0, 1.0)
        decay = tf.constant(1.0 - self.momentum, x.dtype)  # not via float32
        self.moving_mean.assign_sub((self.moving_mean - mean) * decay)
        self.moving_variance.assign_sub((self.moving_variance - unbiased) * decay)
        return tf.cast(outputs, self.compute_dtype)
