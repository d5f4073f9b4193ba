"""Optimizers with PyTorch's update conventions (registered for serialization).

``TorchSGD``: the official AdaBin and DWR trainers use ``torch.optim.SGD``; its momentum
buffer accumulates raw gradients and the learning rate multiplies the whole buffer at each
step, while Keras' ``SGD`` folds the learning rate into the velocity when it is accumulated.
The two agree while the learning rate is constant and differ as soon as a per-epoch schedule
changes it (the last epochs of a cosine schedule: up to ~4x).

``TorchAdam``: the official ReActNet, DyBNN and DWR ImageNet trainers use ``torch.optim.Adam``,
which adds epsilon after the bias correction; Keras' ``Adam`` adds it before.
"""

import tensorflow as tf

from larq_adaptive.serialization import register

__all__ = ["TorchAdam", "TorchSGD"]


@register
class TorchSGD(tf.keras.optimizers.SGD):
    r"""SGD with momentum in ``torch.optim.SGD``'s form (``dampening=0``):

    .. math::
        b_t = \mu\, b_{t-1} + g_t, \qquad
        \theta_t = \theta_{t-1} - \eta_t\, b_t
        \quad(\text{Nesterov: } \theta_t = \theta_{t-1} - \eta_t (g_t + \mu\, b_t))

    with ``b_0 = 0`` (PyTorch's first step sets ``b_1 = g_1``: the same). Keras' ``SGD``
    keeps ``v_t = \mu v_{t-1} - \eta_t g_t``, which equals ``-\eta b_t`` only while ``\eta``
    is constant. Coupled L2 weight decay is part of ``g`` (a loss term), as PyTorch's
    ``weight_decay`` is. Same arguments, slots (``m`` = ``b``) and config as
    ``tf.keras.optimizers.SGD``.
    """

    def update_step(self, gradient, variable):
        lr = tf.cast(self.learning_rate, variable.dtype)
        momentum = tf.constant(self.momentum, variable.dtype)  # float64: not via float32
        buffer = self.momentums[self._index_dict[self._var_key(variable)]]
        gradient = tf.convert_to_tensor(gradient)  # IndexedSlices -> dense (PyTorch's sum)
        buffer.assign(momentum * buffer + gradient)
        if self.nesterov:
            variable.assign_sub(lr * (gradient + momentum * buffer))
        else:
            variable.assign_sub(lr * buffer)


@register
class TorchAdam(tf.keras.optimizers.Adam):
    r"""``torch.optim.Adam``'s update (``amsgrad`` included), step ``t`` = 1, 2, ...:

    .. math::
        m \leftarrow \beta_1 m + (1 - \beta_1) g, \qquad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \qquad
        \theta \leftarrow \theta - \frac{\eta}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Keras' ``Adam`` adds its epsilon to ``sqrt(v)`` *before* the bias correction
    (``epsilon_hat = epsilon sqrt(1 - beta_2^t)``, the paper's Algorithm 1 footnote): with
    ``epsilon=1e-8`` its first step behaves like PyTorch's with ``epsilon = 3.2e-7``, which
    changes updates of parameters whose gradients are small (the ReActNet shifts). Weight
    decay stays outside (``larq_adaptive.training.stages.CoupledWeightDecay`` adds
    PyTorch's coupled L2 to the gradient). Defaults are PyTorch's (``epsilon=1e-8``).
    ``m``/``v`` are the Keras Adam slots (same names), so checkpoints keep their layout.
    """

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 amsgrad=False, name="TorchAdam", **kwargs):
        super().__init__(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, amsgrad=amsgrad, name=name, **kwargs)

    def update_step(self, gradient, variable):
        dtype = variable.dtype
        lr = tf.cast(self.learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        # tf.constant, not tf.cast: tf.cast of a Python float goes through float32
        beta_1 = tf.constant(self.beta_1, dtype)
        beta_2 = tf.constant(self.beta_2, dtype)
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        gradient = tf.convert_to_tensor(gradient)  # IndexedSlices: dense, as PyTorch's Adam
        m.assign_add((gradient - m) * (1 - beta_1))
        v.assign(beta_2 * v + (1 - beta_2) * tf.square(gradient))
        if self.amsgrad:
            v_max = self._velocity_hats[key]
            v_max.assign(tf.maximum(v_max, v))
            v = v_max
        step_size = lr / (1 - tf.pow(beta_1, step))
        epsilon = tf.constant(self.epsilon, dtype)
        denominator = tf.sqrt(v) / tf.sqrt(1 - tf.pow(beta_2, step)) + epsilon
        variable.assign_sub(step_size * m / denominator)
