"""Optimizers with PyTorch's update conventions (registered for serialization).

``TorchSGD``: the official AdaBin and DWR trainers use ``torch.optim.SGD``; its momentum
buffer accumulates raw gradients and the learning rate multiplies the whole buffer at each
step, while Keras' ``SGD`` folds the learning rate into the velocity when it is accumulated.
The two agree while the learning rate is constant and differ as soon as a per-epoch schedule
changes it (the last epochs of a cosine schedule: up to ~4x).
"""

import tensorflow as tf

from larq_adaptive.serialization import register

__all__ = ["TorchSGD"]


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
