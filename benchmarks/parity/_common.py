"""Shared pieces of the step-parity harness (no PyTorch here: the tests import this module).

A parity case runs ONE training step (then a second one after a learning-rate change) of an
official PyTorch code base and of larq-adaptive from the same weights on the same fixed batch,
in float64 on both sides, and compares everything the step produces. The case scripts
(``benchmarks/parity/<case>.py``, PyTorch needed) write the official side's tensors into
``tests/data/parity/<case>.npz``; ``tests/test_parity_official.py`` replays our side with
:class:`KerasStep` and compares with :func:`relative_differences`.

Reference file layout (``np.load(..., allow_pickle=False)``; ``<key>`` = ``"<keras layer
name>.<weight name>"``, tensors in Keras layout, stored as float32 (relative rounding 6e-8),
scalars as float64):
``cifar_batch`` (the batch size ``B``: the inputs are rows ``0..B-1`` and ``B..2B-1`` of the
shared lossless CIFAR-10 test set, which is never copied into the project; :func:`read_reference`
loads them as ``images1``/``labels1``, ``images2``/``labels2``), ``lr1``, ``lr2``,
``weight_decay``, ``momentum`` and per-case scalars; ``init_sumsq.<key>`` (the sum of squares
of every weight before step 1, which the test's own initial weights must match: the official
checkpoint of the shared folder, or :func:`random_weights`), ``step{s}.loss`` (cross entropy), ``step{s}.grad.<key>`` (gradient of
the cross entropy, without weight decay), ``step{s}.delta.<key>`` (change of every weight,
BN running statistics included), ``logits{0,1,2}`` (eval-mode logits on ``images1`` before
step 1, after step 1, after step 2). PyTorch's momentum buffer after step ``s`` is
``-delta / lr_s`` (``p -= lr * buf``). Gradients and changes of tensors with more than
:data:`SAMPLE_CAP` elements are stored as :func:`sample` (a strided sample that still
covers every output channel) to keep the files small.
"""

import math
import os
from pathlib import Path

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "parity"
TOLERANCE = 1e-5  # max relative difference, float64 on both sides
SAMPLE_CAP = 16384  # gradients/changes of larger tensors are stored as a strided sample


def shared_dir():
    """The project's shared folder (``../shared``, or ``$LQA_SHARED_DIR``)."""
    return Path(os.environ.get("LQA_SHARED_DIR") or Path(__file__).resolve().parents[3] / "shared")


def default_cifar_test():
    """The lossless CIFAR-10 test set of the shared data folder (``../shared/data``)."""
    return shared_dir() / "data" / "cifar10-test-original" / "cifar10_test.npz"


def sum_of_squares(weights):
    """``{"init_sumsq.<key>": sum(w^2)}`` of initial weights (float64), as stored."""
    return {f"init_sumsq.{k}": float(np.sum(np.square(v, dtype=np.float64)))
            for k, v in weights.items()}


def cifar_batches(path, size):
    """Two fixed batches of ``size`` real CIFAR-10 test images (rows 0.. and size..):
    ``(images1, labels1, images2, labels2)``, uint8 NHWC and int64."""
    with np.load(path, allow_pickle=False) as data:
        images, labels = data["images"][: 2 * size], data["labels"][: 2 * size]
    return images[:size], labels[:size].astype(np.int64), images[size:], labels[size:].astype(
        np.int64)


def preprocess(images):
    """The official CIFAR input pipeline without augmentation, in float64, NHWC:
    ``ToTensor()`` (x / 255) then ``Normalize(ImageNet mean, std)``."""
    return (images.astype(np.float64) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def sample(array):
    """``array`` itself if it has at most :data:`SAMPLE_CAP` elements, else every
    ``stride``-th element of its Keras-layout flattening, with ``stride`` coprime to the
    last (output-channel) axis so that every output channel is sampled."""
    array = np.asarray(array)
    if array.size <= SAMPLE_CAP:
        return array
    stride = -(-array.size // SAMPLE_CAP)
    while math.gcd(stride, array.shape[-1]) != 1:
        stride += 1
    return array.reshape(-1)[::stride]


def random_weights(shapes, seed):
    """Mid-training-like initial weights drawn with numpy (``RandomState``: a stream that
    stays the same across numpy versions), by weight name, float32-valued: kernels
    ``kaiming_normal_`` (fan in), ``logits.bias`` ``U(+-1/sqrt(fan_in))``, learnable shifts
    ``N(0, 0.2)``, PReLU slopes ``0.25 + N(0, 0.05)``, BN gamma ``1 + N(0, 0.1)``, beta
    ``N(0, 0.1)``, running mean ``N(0, 0.2)``, running variance ``exp(N(0, 0.3))``."""
    rng = np.random.RandomState(seed)
    weights = {}
    for key in sorted(shapes):
        shape, weight = tuple(shapes[key]), key.rsplit(".", 1)[1]
        normal = rng.standard_normal(shape)
        if weight == "kernel":
            value = normal * np.sqrt(2.0 / int(np.prod(shape[:-1])))
        elif key == "logits.bias":
            bound = 1.0 / np.sqrt(shapes["logits.kernel"][0])
            value = rng.uniform(-bound, bound, shape)
        elif weight in ("bias", "bias_in", "bias_out", "moving_mean"):
            value = 0.2 * normal
        elif weight == "alpha":
            value = 0.25 + 0.05 * normal
        elif weight == "gamma":
            value = 1.0 + 0.1 * normal
        elif weight == "beta":
            value = 0.1 * normal
        elif weight == "moving_variance":
            value = np.exp(0.3 * normal)
        else:
            raise ValueError(f"no initial distribution for {key}")
        weights[key] = value.astype(np.float32)
    return weights


def short_name(variable):
    return variable.name.split("/")[-1].split(":")[0]


def keras_weights(model):
    """``{"<layer>.<weight>": variable}`` for every weight of ``model`` (quantizer
    variables included), in layer order."""
    found = {}
    for layer in model.layers:
        for variable in layer.weights:
            key = f"{layer.name}.{short_name(variable)}"
            if key in found:
                raise ValueError(f"two weights are named {key}")
            found[key] = variable
    return found


# ---------------------------------------------------------------------------------------
# Keras <-> PyTorch tensor layouts


def to_keras(tensor, kind, shape):
    """A PyTorch tensor (numpy) in the layout of a Keras weight of ``shape``: ``"conv"``
    OIHW -> HWIO, ``"dense"`` (out, in) -> (in, out), ``"same"`` reshaped."""
    if kind == "conv":
        return np.transpose(tensor, (2, 3, 1, 0))
    if kind == "dense":
        return np.transpose(tensor)
    return np.reshape(tensor, shape)


def to_torch(array, kind, shape):
    """Inverse of :func:`to_keras` (``shape``: the PyTorch tensor's)."""
    if kind == "conv":
        return np.transpose(array, (3, 2, 0, 1))
    if kind == "dense":
        return np.transpose(array)
    return np.reshape(array, shape)


# ---------------------------------------------------------------------------------------
# Our side of a step


class KerasStep:
    """larq-adaptive's training step as ``train.py`` runs it: ``make_optimizer(optimizer)``
    (``"sgd"``: :class:`~larq_adaptive.optimizers.TorchSGD`, momentum 0.9), cross entropy on
    logits (or ``loss_fn(labels, logits)``),
    :class:`~larq_adaptive.training.stages.CoupledWeightDecay` with ``rule``. Momentum
    buffers: :meth:`momentum_buffers` (SGD only)."""

    def __init__(self, model, weight_decay, rule="all", optimizer="sgd", loss_fn=None):
        import tensorflow as tf

        from larq_adaptive.training.stages import CoupledWeightDecay, make_optimizer

        self.tf = tf
        self.model = model
        self.decay = CoupledWeightDecay(model, rule)
        self.decay.coefficient.assign(weight_decay)
        self.optimizer = make_optimizer(optimizer, 1.0)
        self.loss_fn = loss_fn or tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=True)
        self.names = {id(v): k for k, v in keras_weights(model).items()}

    def __call__(self, x, y, lr):
        """One step; returns ``(cross entropy, {key: gradient of the cross entropy})``."""
        tf = self.tf
        self.optimizer.learning_rate.assign(lr)
        variables = self.model.trainable_variables
        with tf.GradientTape(persistent=True) as tape:
            logits = self.model(x, training=True)
            loss = self.loss_fn(y, logits)
            total = loss + tf.add_n(self.model.losses)
        grads = tape.gradient(loss, variables)
        total_grads = tape.gradient(total, variables)
        del tape
        self.optimizer.apply_gradients(zip(total_grads, variables))
        return float(loss), {self.names[id(v)]: g.numpy() for v, g in zip(variables, grads)}

    def momentum_buffers(self):
        """``{key: buffer}`` (TorchSGD's ``m`` = PyTorch's ``momentum_buffer``)."""
        return {self.names[id(v)]: m.numpy()
                for v, m in zip(self.model.trainable_variables, self.optimizer.momentums)}


def weights_numpy(model):
    return {key: v.numpy() for key, v in keras_weights(model).items()}


# ---------------------------------------------------------------------------------------
# Comparison


def relative_difference(ours, reference):
    """``max |ours - reference| / max |reference|`` (0 if both are all zero)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        raise ValueError(f"shape {ours.shape} != reference shape {reference.shape}")
    scale = np.max(np.abs(reference)) if reference.size else 0.0
    error = np.max(np.abs(ours - reference)) if reference.size else 0.0
    if scale == 0.0:
        return 0.0 if error == 0.0 else float("inf")
    return float(error / scale)


def relative_differences(ours, reference):
    """``{key: relative difference}`` over ``reference``'s keys (KeyError if ours lacks one)."""
    return {key: relative_difference(ours[key], value) for key, value in reference.items()}


def subset(reference, prefix):
    """``{key: array}`` of the entries of an npz dict named ``prefix + key``."""
    return {k[len(prefix):]: v for k, v in reference.items() if k.startswith(prefix)}


def run_our_steps(model, reference, set_step_state, rule="all"):
    """Replay both SGD steps of ``reference`` with our code on ``model`` (already holding
    its initial weights). ``set_step_state(model, step)`` sets per-step constants (EDE's k,
    t). Cases with another optimizer or loss build their own loop from :class:`KerasStep`,
    :func:`relative_difference` and :func:`sample`.
    Returns ``{category: {key: relative difference}}`` for the categories of docs/parity.md:
    ``loss``, ``logits``, ``gradients``, ``updates`` (trainable weights: change in the step),
    ``buffers`` (momentum), ``bn statistics`` (running mean/variance change)."""
    step = KerasStep(model, float(reference["weight_decay"]), rule)
    results = {name: {} for name in
               ("loss", "logits", "gradients", "updates", "buffers", "bn statistics")}
    trainable = {step.names[id(v)] for v in model.trainable_variables}

    def logits(s):
        x = preprocess(reference["images1"])
        results["logits"][f"logits{s}"] = relative_difference(
            model(x, training=False).numpy(), reference[f"logits{s}"])

    logits(0)
    for s in (1, 2):
        set_step_state(model, s)
        before = weights_numpy(model)
        loss, grads = step(preprocess(reference[f"images{s}"]), reference[f"labels{s}"],
                           float(reference[f"lr{s}"]))
        after = weights_numpy(model)
        results["loss"][f"step{s}"] = relative_difference(loss, reference[f"step{s}.loss"])
        for key, value in subset(reference, f"step{s}.grad.").items():
            results["gradients"][f"step{s}.{key}"] = relative_difference(
                sample(grads[key]), value)
        deltas = subset(reference, f"step{s}.delta.")
        lr = float(reference[f"lr{s}"])
        buffers = step.momentum_buffers()
        for key, delta in deltas.items():
            ours = sample(after[key] - before[key])
            if key in trainable:
                results["updates"][f"step{s}.{key}"] = relative_difference(ours, delta)
                results["buffers"][f"step{s}.{key}"] = relative_difference(
                    sample(buffers[key]), -delta.astype(np.float64) / lr)
            else:
                results["bn statistics"][f"step{s}.{key}"] = relative_difference(ours, delta)
        logits(s)
    return results


def summary_rows(results):
    """``[(category, max relative difference, worst key, count)]``."""
    rows = []
    for category, values in results.items():
        if values:
            worst = max(values, key=values.get)
            rows.append((category, values[worst], worst, len(values)))
    return rows


def markdown_table(results):
    lines = ["| compared | tensors | max relative difference | worst |", "|---|---|---|---|"]
    for category, value, worst, count in summary_rows(results):
        lines.append(f"| {category} | {count} | {value:.1e} | `{worst}` |")
    return "\n".join(lines)


def write_reference(path, arrays):
    """Save ``arrays`` compressed (float tensors as float32, scalars as float64); returns
    the file size."""
    stored = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind == "f":
            value = value.astype(np.float32 if value.ndim else np.float64)
        stored[key] = value
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **stored)
    return os.path.getsize(path)


def read_reference(path, data=None):
    """The stored reference, with its CIFAR-10 inputs loaded from ``data`` (default: the
    shared test set) when it names them by ``cifar_batch``."""
    with np.load(path, allow_pickle=False) as stored:
        reference = {key: stored[key] for key in stored.files}
    if "cifar_batch" in reference:
        batches = cifar_batches(data or default_cifar_test(), int(reference["cifar_batch"]))
        reference.update(zip(("images1", "labels1", "images2", "labels2"), batches))
    return reference
