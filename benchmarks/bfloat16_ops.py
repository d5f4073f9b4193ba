"""Why binary networks gain less from bfloat16 than their float twins on CPU: the time of
each TensorFlow op a ResNet-20 training step spends its time in, float32 against bfloat16,
on one activation-sized tensor (batch x 32 x 32 x 16, the first stage of a CIFAR ResNet-20).

    python benchmarks/bfloat16_ops.py [--batch-size 128] [--channels 16] [--size 32]
                                      [--rounds 7] [--calls 20] [--json out.json]

Convolutions (oneDNN) get faster in bfloat16 on a CPU with AVX512-BF16 or AMX; TensorFlow's
element-wise kernels (Eigen) convert every element to float32 and back, so they get slower.
A float twin's step is mostly convolutions; a binary network's adds a sign, its
straight-through gradient, learnable shifts and PReLUs per convolution, about as much op time
again, so its step gains much less. Three rows time the sign's straight-through backward
(ApproxSign) as larq writes it (a comparison and a ``tf.where``: ``SelectV2``), as three
element-wise ops (``dy * relu(2 - 2|x|)``, the same values) and as
``larq_adaptive.ste.approx_sign`` does (the same, in bfloat16 with ``relu(2 - 2|x|)`` one
fused depthwise convolution: ``larq_adaptive.channelwise``), which RSign, DySign and
``ApproxSignQuantizer`` use; two more HardTanh's backward through
``tf.clip_by_value`` and as ``larq_adaptive.layers.HardTanh`` writes it (a mask multiply);
two more Maxout's forward and backward by automatic differentiation of
``p relu(x) - n relu(-x)`` and as ``larq_adaptive.layers.activations.two_slope`` writes it;
two more RPReLU's PReLU in training through ``two_slope`` and through
``larq_adaptive.layers.activations.prelu``; and a per-channel product as TensorFlow's
broadcasting ``Mul`` and as the 1x1 depthwise convolution those two use; a per-channel add
(RSign's and RPReLU's shifts) as TensorFlow's broadcasting ``AddV2`` and as
``larq_adaptive.channelwise.shift_channels`` (in bfloat16 a depthwise convolution with a
fused ``BiasAdd``). Three pairs time forms that matter at channel counts that are not a
multiple of 8 or 16 (DWR's pruned widths; ``--channels 30``): batch normalization's training
forward and backward as TensorFlow's fused kernel and as
``larq_adaptive.layers.TorchBatchNormalization`` (which pads the channels to the kernel's
fast multiple), a channel slice (``x[..., 2:-4]``) and option A's 2x subsample
(``x[:, ::2, ::2, :]``), forward and backward, as strided slices and as
``larq_adaptive.layers.ChannelSlice`` and ``larq_adaptive.layers.reshaping.subsample`` (whose
gradients are a ``Pad``, not a ``StridedSliceGrad``). A per-channel sum of products (a
slope's gradient) as a ``Mul`` and a ``Sum`` and as ``larq_adaptive.channelwise.channel_dot``;
a zero-padded 3x3 convolution forward and backward as an explicit ``Pad`` and a VALID conv
and as a "same" conv (``PaddedQuantConv2D`` where PyTorch's padding equals it); and AdaBin's
activation binarizer forward and backward (``larq_adaptive.ste.adabin_activation_sign``).
Two more time a 3x3 convolution's filter gradient (the op that gains least of the
convolutions') in two other forms: one forward convolution of transposed tensors, and image
patches times a matrix product. ``--size 16 --channels 32`` and ``--size 8 --channels 64``
give the shapes of a CIFAR ResNet-20's later stages.
Ops are timed in interleaved rounds (each op once in float32, once in bfloat16, per round),
each call a ``tf.function``; the ratio is float32 time / bfloat16 time (> 1: bfloat16 is
faster). The CPU's bfloat16 flags are printed.
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import larq_adaptive  # noqa: E402,F401  (first: makes tf.keras Keras 2 on TF >= 2.16)
import larq as lq  # noqa: E402
import tensorflow as tf  # noqa: E402

from larq_adaptive.layers import ChannelSlice, HardTanh, TorchBatchNormalization  # noqa: E402
from larq_adaptive.layers.reshaping import subsample  # noqa: E402
from larq_adaptive.channelwise import (  # noqa: E402
    channel_dot,
    scale_channels,
    shift_channels,
    sum_but_channels,
)
from larq_adaptive.layers.activations import prelu, two_slope  # noqa: E402
from larq_adaptive.ste import adabin_activation_sign, approx_sign  # noqa: E402
from larq_adaptive.training.runtime import bfloat16_cpu_line  # noqa: E402


def _step(function):
    """x, dy, kernel -> ``function(x)`` and its gradient at x times dy (forward + backward;
    where ``function`` changes the shape, times its output: a constant such as ones would let
    Grappler fold the backward of a small enough tensor away)."""

    def step(x, dy, kernel):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        gradient = tf.cast(dy, y.dtype) if y.shape == dy.shape else y
        return y, tape.gradient(y, x, output_gradients=gradient)

    return step


def _backward(function):
    """x, dy, kernel -> the gradient of ``function`` at x times dy (one backward pass)."""
    step = _step(function)
    return lambda x, dy, kernel: step(x, dy, kernel)[1]


def _two_slope_step(function):
    """x, dy, kernel -> ``function(x, pos, neg)`` and the gradients of x and of both
    per-channel slopes (one Maxout forward and backward pass)."""

    def step(x, dy, kernel):
        channels = x.shape[-1]
        pos, neg = tf.ones([channels], x.dtype), tf.fill([channels], tf.cast(0.25, x.dtype))
        with tf.GradientTape() as tape:
            tape.watch([x, pos, neg])
            y = function(x, pos, neg)
        return [y, *tape.gradient(y, [x, pos, neg], output_gradients=dy,
                                  unconnected_gradients="zero")]

    return step


def _fused_batch_norm(x):
    channels = x.shape[-1]
    return tf.compat.v1.nn.fused_batch_norm(
        x, tf.ones([channels]), tf.zeros([channels]), is_training=True)[0]


_BATCH_NORMS = {}


def _torch_batch_norm(x):
    """``TorchBatchNormalization`` in training, one layer per dtype (variables in float32)."""
    if x.dtype not in _BATCH_NORMS:
        policy = "mixed_bfloat16" if x.dtype == tf.bfloat16 else "float32"
        _BATCH_NORMS[x.dtype] = TorchBatchNormalization(dtype=policy)
    return _BATCH_NORMS[x.dtype](x, training=True)


def _conv_step(conv):
    """x, dy, kernel -> ``conv(x, kernel)`` and its input and kernel gradients."""

    def step(x, dy, kernel):
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
        return [y, *tape.gradient(y, [x, kernel], output_gradients=dy)]

    return step


def _adabin_step(x, dy, kernel):
    """AdaBin's activation binarizer forward and its x, alpha, beta gradients."""
    alpha, beta = tf.constant(0.8), tf.constant(0.1)
    with tf.GradientTape() as tape:
        tape.watch([x, alpha, beta])
        y = adabin_activation_sign(x, alpha, beta)
    return [y, *tape.gradient(y, [x, alpha, beta], output_gradients=dy)]


def _filter_gradient_by_conv(x, dy):
    """A stride-1 "same" 3x3 conv's filter gradient as one forward convolution: channels as
    the batch, the batch as channels, the output gradient as a (H, W, N, C) filter."""
    padded = tf.transpose(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), [3, 1, 2, 0])
    out = tf.nn.conv2d(padded, tf.transpose(dy, [1, 2, 0, 3]), 1, "VALID")
    return tf.transpose(out, [1, 2, 0, 3])


def _filter_gradient_by_patches(x, dy):
    """The same filter gradient as 3x3 image patches (N H W, 9 C) times dy (N H W, C)."""
    channels = x.shape[-1]
    patches = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "SAME")
    product = tf.matmul(tf.reshape(patches, [-1, 9 * channels]), tf.reshape(dy, [-1, channels]),
                        transpose_a=True)
    return tf.reshape(product, [3, 3, channels, channels])


@tf.custom_gradient
def _element_wise_approx_sign(x):
    """``approx_sign`` with its derivative as three element-wise ops (before channelwise)."""
    return lq.math.sign(x), lambda dy: dy * tf.nn.relu(2.0 - 2.0 * tf.math.abs(x))


# name -> f(x, dy, kernel): one op (or one op's gradient) on activation-sized tensors
OPS = {
    "Conv2D 3x3": lambda x, dy, w: tf.nn.conv2d(x, w, 1, "SAME"),
    "Conv2DBackpropInput": lambda x, dy, w: tf.raw_ops.Conv2DBackpropInput(
        input_sizes=tf.shape(x), filter=w, out_backprop=dy, strides=[1, 1, 1, 1],
        padding="SAME"),
    "Conv2DBackpropFilter": lambda x, dy, w: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 1, 1, 1],
        padding="SAME"),
    "FusedBatchNormV3": lambda x, dy, w: _fused_batch_norm(x),
    "AddV2": lambda x, dy, w: x + dy,
    "Mul": lambda x, dy, w: x * dy,
    "Relu": lambda x, dy, w: tf.nn.relu(x),
    "ReluGrad": _backward(tf.nn.relu),
    "Sign": lambda x, dy, w: tf.sign(x),
    "SelectV2": lambda x, dy, w: tf.where(x > 0, x, dy),
    # the sign's straight-through backward as larq writes it (a comparison and a tf.where)
    # and as larq_adaptive.ste.approx_sign does (dy * relu(2 - 2|x|)), same values
    "ApproxSign backward, larq": _backward(lq.quantizers.approx_sign),
    "ApproxSign backward, element-wise": _backward(_element_wise_approx_sign),
    "ApproxSign backward, larq_adaptive": _backward(approx_sign),
    # HardTanh's backward through tf.clip_by_value (two comparisons, LogicalOr, SelectV2)
    # and as larq_adaptive.layers.HardTanh writes it (dy * cast(|x| < 1)), PyTorch's mask
    "HardTanh backward, clip_by_value": _backward(lambda x: tf.clip_by_value(x, -1.0, 1.0)),
    "HardTanh backward, larq_adaptive": _backward(lambda x: HardTanh(dtype=x.dtype)(x)),
    # Maxout (and, with pos = 1, RPReLU's PReLU in training) by automatic differentiation
    # of p relu(x) - n relu(-x), and as larq_adaptive.layers.activations.two_slope writes it
    "Maxout forward + backward, autodiff": _two_slope_step(
        lambda x, pos, neg: pos * tf.nn.relu(x) - neg * tf.nn.relu(-x)),
    "Maxout forward + backward, larq_adaptive": _two_slope_step(two_slope),
    # RPReLU's PReLU in training (pos = 1): two_slope, and prelu with one product fewer
    "PReLU forward + backward, two_slope": _two_slope_step(
        lambda x, pos, neg: two_slope(x, tf.ones_like(neg), neg)),
    "PReLU forward + backward, larq_adaptive": _two_slope_step(
        lambda x, pos, neg: prelu(x, neg)),
    # a per-channel product (Maxout's and PReLU's slopes): TensorFlow's broadcasting Mul,
    # and the 1x1 depthwise convolution larq_adaptive uses on NHWC tensors (same values)
    "Mul by a per-channel vector": lambda x, dy, w: x * w[0, 0, 0],
    "Mul by a per-channel vector, 1x1 depthwise": lambda x, dy, w: scale_channels(x, w[0, 0, 0]),
    # a per-channel add (RSign's and RPReLU's shifts): TensorFlow's broadcasting AddV2, and
    # shift_channels (in bfloat16 a 1x1 depthwise convolution with fused BiasAdd)
    "Add a per-channel vector": lambda x, dy, w: x + w[0, 0, 0],
    "Add a per-channel vector, shift_channels": lambda x, dy, w: shift_channels(x, w[0, 0, 0]),
    # batch normalization in training, TensorFlow's fused kernel and TorchBatchNormalization
    # (channels padded to the kernel's fast multiple; the same at a multiple of 8 / 16)
    "BatchNorm forward + backward, FusedBatchNormV3": _step(_fused_batch_norm),
    "BatchNorm forward + backward, TorchBatchNormalization": _step(_torch_batch_norm),
    # channels 2 .. C-4 and option A's 2x subsample: strided slices (gradient StridedSliceGrad)
    # and larq_adaptive's tf.slice forms (gradient Pad)
    "Channel slice forward + backward, strided slice": _step(lambda x: x[..., 2:-4]),
    "Channel slice forward + backward, ChannelSlice": _step(
        lambda x: ChannelSlice(2, x.shape[-1] - 4, dtype=x.dtype)(x)),
    "Subsample 2x forward + backward, strided slice": _step(lambda x: x[:, ::2, ::2, :]),
    "Subsample 2x forward + backward, subsample": _step(lambda x: subsample(x, 2)),
    # a per-channel slope's gradient sum(dy * x): a Mul and a Sum, and channel_dot (the
    # 1x1 depthwise convolution's filter gradient: one pass, nothing full-size written)
    "Per-channel sum of products, Mul + Sum": lambda x, dy, w: sum_but_channels(x * dy),
    "Per-channel sum of products, channel_dot": lambda x, dy, w: channel_dot(x, dy),
    # a zero-padded 3x3 conv forward + backward (input and kernel gradients): an explicit
    # Pad and a VALID conv (the Pad's gradient a Slice), and the conv's own "same" padding
    # (PaddedQuantConv2D where PyTorch's padding equals it)
    "Conv 3x3 forward + backward, Pad + VALID": _conv_step(
        lambda x, w: tf.nn.conv2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), w, 1, "VALID")),
    "Conv 3x3 forward + backward, SAME": _conv_step(lambda x, w: tf.nn.conv2d(x, w, 1, "SAME")),
    # AdaBin's activation binarizer (alpha 0.8, beta 0.1), forward and the x, alpha, beta
    # gradients: in bfloat16 one fused affine map of min(sign(u), 0) and channel_dot sums
    "AdaBin activation binarizer forward + backward": _adabin_step,
    # the same 3x3 filter gradient in two other forms (both slower where measured):
    # a forward convolution of the transposed, padded input with the transposed output
    # gradient as its filter, and image patches times the output gradient
    "Conv2DBackpropFilter as a forward conv": lambda x, dy, w: _filter_gradient_by_conv(x, dy),
    "Conv2DBackpropFilter as patches x matmul": lambda x, dy, w: _filter_gradient_by_patches(
        x, dy),
    "Cast (to the other dtype)": lambda x, dy, w: tf.cast(
        x, tf.float32 if x.dtype == tf.bfloat16 else tf.bfloat16),
}


def time_ops(args):
    """{op: {dtype: median ms}}: interleaved rounds of ``calls`` calls."""
    channels = args.channels
    shape = (args.batch_size, args.size, args.size, channels)
    tensors = {}
    for dtype in (tf.float32, tf.bfloat16):
        x, dy = (tf.cast(tf.random.stateless_normal(shape, [seed, 0]), dtype) for seed in (1, 2))
        w = tf.cast(tf.random.stateless_normal((3, 3, channels, channels), [3, 0]), dtype)
        tensors[dtype.name] = (x, dy, w)
    functions = {(op, dtype): tf.function(lambda f=f, t=t: f(*t))
                 for op, f in OPS.items() for dtype, t in tensors.items()}
    for function in functions.values():  # trace + warm up
        function()
    samples = {key: [] for key in functions}
    for _ in range(args.rounds):
        for key, function in functions.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                function()
            samples[key].append((time.perf_counter() - start) / args.calls)
    return {op: {dtype: 1e3 * statistics.median(samples[op, dtype]) for dtype in tensors}
            for op in OPS}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=16,
                        help="the tensor's channels (30: a DWR width, not a multiple of 8)")
    parser.add_argument("--size", type=int, default=32,
                        help="the tensor's height and width (8 with --channels 64: the last "
                             "stage of a CIFAR ResNet-20)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    cpu = bfloat16_cpu_line()
    if args.channels < 8:
        parser.error("--channels must be at least 8")
    if args.size < 4 or args.size % 2:
        parser.error("--size must be an even number of at least 4")
    print(f"tensor {args.batch_size}x{args.size}x{args.size}x{args.channels}, "
          f"{args.rounds} rounds x "
          f"{args.calls} calls, {os.cpu_count()} CPU(s), TensorFlow {tf.__version__}")
    print(cpu)
    results = time_ops(args)
    print("| op | float32 (ms) | bfloat16 (ms) | speed-up |")
    print("|---|---|---|---|")
    for op, row in results.items():
        row["speedup"] = row["float32"] / row["bfloat16"]
        print(f"| {op} | {row['float32']:.3f} | {row['bfloat16']:.3f} | {row['speedup']:.2f}x |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"batch_size": args.batch_size, "channels": args.channels, "cpu": cpu,
                       "tensorflow": tf.__version__, "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
