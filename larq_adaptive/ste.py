"""Straight-through sign estimators that larq does not ship.

Forward passes use ``larq.math.sign`` (sign(0) = +1): the LCE converter recognises it as a
binarizer, whereas ``tf.sign`` blocks binary convolutions (docs/deployment.md).
larq's own ``ste_sign`` is reused elsewhere.
"""

import larq as lq
import tensorflow as tf

from larq_adaptive.channelwise import relu_affine, sum_but_channels


def approx_sign_derivative(x):
    r"""Bi-Real's ApproxSign derivative \( \max(0, 2 - 2|x|) \) (one fused op after ``Abs``
    in bfloat16: :func:`larq_adaptive.channelwise.relu_affine`)."""
    return relu_affine(tf.math.abs(x), -2.0, 2.0)


@tf.custom_gradient
def approx_sign(x):
    r"""Sign with Bi-Real's ApproxSign as backward pass.

    \[ q(x) = \operatorname{sign}(x), \qquad
       \frac{\partial q}{\partial x} = \max(0, 2 - 2|x|). \]

    The same values as ``larq.quantizers.approx_sign`` (bit for bit, tests), with the
    backward as ``dy * relu(2 - 2|x|)`` (:func:`approx_sign_derivative`) instead of a
    comparison and a ``tf.where``: 2.8x cheaper in float32 and bfloat16, where ``SelectV2``
    is 3x slower than in float32 on CPU (docs/training.md, "Mixed precision").
    """

    def grad(dy):
        return dy * approx_sign_derivative(x)

    return lq.math.sign(x), grad


@tf.custom_gradient
def ede_sign(x, k, t):
    r"""Sign with IR-Net's Error Decay Estimator (EDE) as backward pass.

    \[ q(x) = \operatorname{sign}(x), \qquad
       \frac{\partial q}{\partial x} = k\,t\,\bigl(1 - \tanh^2(t\,x)\bigr). \]

    `k` and `t` are scalars passed as inputs (not closed over), so they can live in
    non-trainable variables updated by a callback; they receive zero gradient.
    """

    def grad(dy):
        tanh = tf.math.tanh(t * x)
        return dy * k * t * (1.0 - tanh * tanh), tf.zeros_like(k), tf.zeros_like(t)

    return lq.math.sign(x), grad


@tf.custom_gradient
def adabin_activation_sign(x, alpha, beta):
    r"""AdaBin's activation binarizer with its gradients written out (one fused backward).

    \[ u = \frac{x - \beta}{\alpha}, \qquad q = \alpha\,(\operatorname{sign}(u) + \beta), \]
    \[ \partial_x q = P'(u), \quad \partial_\beta q = \alpha - P'(u), \quad
       \partial_\alpha q = \operatorname{sign}(u) + \beta - u\,P'(u), \quad
       P'(u) = \max(0, 2 - 2|u|) \]

    (Bi-Real's ApproxSign as the sign's backward). This is exactly the chain rule through
    ``alpha * (approx_sign((x - beta) / alpha) + beta)``; writing it out skips the full-size
    negations, divisions and broadcasts that automatic differentiation emits for the scalar
    ``alpha`` and ``beta`` (docs/training.md, "Train-step time"). ``alpha`` and ``beta`` are
    scalars; they may be wider than ``x`` (float32 for a float16/bfloat16 ``x``): the
    element-wise math runs in ``x``'s dtype, and their gradients are accumulated per channel
    in ``x``'s dtype (TensorFlow sums reduced-precision tensors in float32), then across
    channels in theirs, and returned in their dtype.
    """
    a, b = tf.cast(alpha, x.dtype), tf.cast(beta, x.dtype)
    u = (x - b) / a
    signs = lq.math.sign(u)

    def total(t):
        """Sum of ``t`` in ``alpha``'s dtype: per channel first (a small vector)."""
        return tf.reduce_sum(tf.cast(sum_but_channels(t), alpha.dtype))

    def grad(dy):
        slope = approx_sign_derivative(u)
        dx = dy * slope
        sum_dy = total(dy)
        d_alpha = total(dy * signs - dx * u) + beta * sum_dy
        d_beta = alpha * sum_dy - total(dx)
        return dx, d_alpha, d_beta

    return a * (signs + b), grad


@tf.custom_gradient
def channel_scaled_sign(w):
    r"""ReActNet's weight binarizer for an HWIO kernel.

    \[ q(W)_{:,:,:,o} = s_o \operatorname{sign}(W_{:,:,:,o}), \quad
       s_o = \operatorname{mean}|W_{:,:,:,o}| \text{ (no gradient)}, \qquad
       \frac{\partial q}{\partial W} = 1_{|W| \le 1}. \]

    Unlike ``larq.quantizers.magnitude_aware_sign`` the gradient is *not* multiplied by
    the scale (the official ReActNet ``HardBinaryConv`` does not).
    """
    reduce_axes = list(range(w.shape.rank - 1))
    scale = tf.stop_gradient(tf.reduce_mean(tf.abs(w), axis=reduce_axes, keepdims=True))

    def grad(dy):
        return tf.where(tf.abs(w) <= 1.0, dy, tf.zeros_like(dy))

    return scale * lq.math.sign(w), grad
