"""Straight-through sign estimators that larq does not ship.

Forward passes use ``larq.math.sign`` (sign(0) = +1): the LCE converter recognises it as a
binarizer, whereas ``tf.sign`` blocks binary convolutions (docs/deployment.md).
larq's own ``ste_sign`` is reused elsewhere.
"""

import larq as lq
import tensorflow as tf

from larq_adaptive.channelwise import (
    affine_channels,
    channel_dot,
    relu_affine,
    sum_but_channels,
)


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
    ``alpha`` and ``beta`` (``benchmarks/train_step.py``). ``alpha`` and ``beta`` are
    scalars; they may be wider than ``x`` (float32 for a float16/bfloat16 ``x``): the
    element-wise math runs in ``x``'s dtype, and their gradients are accumulated per channel
    (:func:`~larq_adaptive.channelwise.channel_dot`, in float32, rounded per channel to
    ``x``'s dtype), then across channels in theirs, and returned in their dtype.

    In bfloat16 the two levels come from ``m = min(sign(u), 0)`` (0 where larq's sign is +1,
    -1 where it is -1, NaN stays NaN) as ``q = 2 alpha m + alpha (1 + beta)``, one fused
    per-channel affine map (:func:`~larq_adaptive.channelwise.affine_channels`) instead of
    four element-wise ops: the same two levels up to bfloat16 rounding (each computed in
    float32 and rounded once), the same sign decisions.
    """
    a, b = tf.cast(alpha, x.dtype), tf.cast(beta, x.dtype)
    u = (x - b) / a

    def total(t):
        """Sum of a per-channel vector ``t`` in ``alpha``'s dtype."""
        return tf.reduce_sum(tf.cast(t, alpha.dtype))

    if x.dtype == tf.bfloat16:
        minus = tf.minimum(tf.sign(u), 0.0)  # sign(u) = 1 + 2 minus
        q = affine_channels(minus, 2.0 * a, a * (1.0 + b))

        def dot_signs(dy, sum_dy):
            return sum_dy + 2.0 * total(channel_dot(minus, dy))
    else:
        signs = lq.math.sign(u)
        q = a * (signs + b)

        def dot_signs(dy, sum_dy):
            return total(channel_dot(signs, dy))

    def grad(dy):
        slope = approx_sign_derivative(u)
        dx = dy * slope
        sum_dy = total(sum_but_channels(dy))
        d_alpha = dot_signs(dy, sum_dy) - total(channel_dot(u, dx)) + beta * sum_dy
        d_beta = alpha * sum_dy - total(sum_but_channels(dx))
        return dx, d_alpha, d_beta

    return q, grad


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
