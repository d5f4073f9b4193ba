"""Our side of the ReActNet / DyBNN step parity (no PyTorch): the reduced configuration,
weight conversion between the official ``state_dict`` naming and our Keras variables (both
directions), one training step with our training code, and the comparison.

Used by ``reactnet_step.py --check``, ``dybnn_step.py --check`` and
``tests/test_parity_official.py``. The official side (``reactnet_step.py``
without ``--check``) writes the references this module reads.
"""

import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "tests" / "data" / "parity"

# Reduced ReActNet-A: every block type of the official network. block1 8->16 stride 2
# (doubling, pooled shortcut), block2 16->16 stride 1, block3 16->32 stride 2, block4 32->64
# stride 1 doubling (the official "except 64" rule), stem stride 2, GAP -> FC.
CHANNELS = (8, 16, 16, 32, 64)


# Reduced ReAct-ResNet-18: the official BiRealNet class with one BasicBlock per stage
# (stride-1 block without shortcut, three stride-2 blocks with AvgPool -> 1x1 conv -> BN).
RESNET18_BLOCKS = (1, 1, 1, 1)
MODELS = ("reactnet_a", "reactnet_resnet18")


def config(step, model="reactnet_a"):
    """The run: ``mobilenet/run.sh`` (Adam 1.25e-3; weight decay 1e-5 in step 1, 0 in step
    2) or ``resnet/run.sh`` (Adam 2.5e-3), with ``--epochs 4`` so that the LambdaLR lr changes
    by a third between the two steps (one step per epoch). The ResNet-18 references are too
    large to store whole: its initial state comes from :func:`random_state` and its results
    are stored as ``projections`` random projections per tensor (:func:`project`)."""
    if model == "reactnet_a":
        return dict(step=step, channels=list(CHANNELS), num_classes=10, size=32, batch=4,
                    lr=1.25e-3, epochs=4, weight_decay=1e-5 if step == 1 else 0.0)
    if model == "reactnet_resnet18":
        return dict(model=model, step=step, blocks=list(RESNET18_BLOCKS), num_classes=10,
                    size=64, batch=4, lr=2.5e-3, epochs=4,
                    weight_decay=1e-5 if step == 1 else 0.0, projections=4, seed=2020 + step)
    raise ValueError(f"unknown parity model {model!r}")


def random_state(shapes, step, seed):
    """A non-trivial initial ``state_dict`` (name -> float64 array) for the official
    parameter names and shapes ``shapes`` (list of [name, shape]): BN and running statistics,
    shifts and slopes away from their init, kernels at PyTorch's default scale, in step 2 5 %
    of the binary kernels outside [-1, 1]. NumPy only, so both sides can regenerate it."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, shape in shapes:
        shape = tuple(shape)
        leaf = name.rsplit(".", 1)[-1]
        parent = name.rsplit(".", 1)[0]
        is_bn = ".bn" in name or name.startswith("bn") or parent.endswith("downsample.2")
        if leaf == "running_var" or is_bn and leaf == "weight":
            value = 0.5 + rng.random(shape)
        elif leaf == "running_mean" or is_bn and leaf == "bias":
            value = 0.1 * rng.normal(size=shape)
        elif ".move" in name:
            value = 0.2 * rng.normal(size=shape)
        elif ".prelu" in name:
            value = 0.1 + 0.3 * rng.random(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            bound = 1.0 / np.sqrt(fan_in)
            value = (2 * rng.random(shape) - 1) * bound
            if step == 2 and "binary" in name:
                value = np.where(rng.random(shape) < 0.05, value * 3.0 / bound, value)
        state[name] = value
    return state


_PROJECTIONS = {}


def project(name, value, count):
    """``count`` fixed random projections <r_k, value> (r_k ~ N(0, 1), seeded by ``name``):
    a stored fingerprint of a tensor that any element's change moves."""
    value = np.asarray(value, np.float64).ravel()
    key = (name, value.size, count)
    if key not in _PROJECTIONS:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        _PROJECTIONS[key] = rng.standard_normal((count, value.size))
    return _PROJECTIONS[key] @ value


def load_reference(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["config"] = json.loads(str(arrays["config"]))
    return arrays


# ---------------------------------------------------------------------------------------
# Weight conversion: one Entry per Keras variable, its official tensor(s) and layouts.


@dataclasses.dataclass
class Entry:
    names: tuple  # official state_dict names (two for a merged doubling-block 1x1 conv / BN)
    variable: object  # our tf.Variable
    kind: str  # "conv" | "dense" | "vector"

    def to_keras(self, tensors):
        """Official arrays (by name) -> our layout."""
        parts = []
        for name in self.names:
            t = np.asarray(tensors[name])
            if self.kind == "conv":
                kh, kw, cin, cout = self.variable.shape
                t = t.reshape(cout // len(self.names), cin, kh, kw).transpose(2, 3, 1, 0)
            elif self.kind == "dense":
                t = t.T
            else:
                t = t.reshape(-1)
            parts.append(t)
        value = np.concatenate(parts, axis=-1)
        return value.reshape(self.variable.shape)

    def to_official(self, value, shapes):
        """Our array -> official arrays (``shapes``: official shape by name)."""
        value = np.asarray(value)
        if self.kind == "conv":
            value = value.transpose(3, 2, 0, 1)  # (out, in, kh, kw)
        elif self.kind == "dense":
            value = value.T
        else:
            value = value.reshape(-1)
        parts = np.split(value, len(self.names), axis=0)
        return {n: p.reshape(shapes[n]) for n, p in zip(self.names, parts)}


def _bn(layer, official):
    return [Entry((f"{o}.weight" for o in official), layer.gamma, "vector"),
            Entry((f"{o}.bias" for o in official), layer.beta, "vector"),
            Entry((f"{o}.running_mean" for o in official), layer.moving_mean, "vector"),
            Entry((f"{o}.running_var" for o in official), layer.moving_variance, "vector")]


def _act(layer, prefix, a, b, c):
    return [Entry((f"{prefix}.{a}.bias",), layer.bias_in, "vector"),
            Entry((f"{prefix}.{b}.weight",), layer.prelu.alpha, "vector"),
            Entry((f"{prefix}.{c}.bias",), layer.bias_out, "vector")]


def entries(model, cfg):
    """The conversion table of our reduced network for the reference configuration ``cfg``."""
    if cfg.get("model", "reactnet_a") == "reactnet_resnet18":
        return entries_resnet18(model, cfg["blocks"])
    return entries_reactnet_a(model, cfg["step"], cfg["channels"])


def entries_resnet18(model, blocks=RESNET18_BLOCKS):
    """Our ``resnet18_network`` <-> the official ``BiRealNet`` (``resnet/*/birealnet.py``;
    both steps name the binary kernel ``binary_conv.weight``, 4-D)."""
    out = [Entry(("conv1.weight",), model.get_layer("stem_conv").kernel, "conv")]
    out += _bn(model.get_layer("stem_bn"), ["bn1"])
    for s, count in enumerate(blocks, start=1):
        for b in range(count):
            f, n = f"layer{s}.{b}", f"stage{s}_block{b + 1}"
            conv = model.get_layer(f"{n}_conv")
            out.append(Entry((f"{f}.move0.bias",), conv.input_quantizer.bias, "vector"))
            out.append(Entry((f"{f}.binary_conv.weight",), conv.kernel, "conv"))
            out += _bn(model.get_layer(f"{n}_bn"), [f"{f}.bn1"])
            out += _act(model.get_layer(f"{n}_act"), f, "move1", "prelu", "move2")
            if b == 0 and s > 1:
                out.append(Entry((f"{f}.downsample.1.weight",),
                                 model.get_layer(f"{n}_shortcut_conv").kernel, "conv"))
                out += _bn(model.get_layer(f"{n}_shortcut_bn"), [f"{f}.downsample.2"])
    logits = model.get_layer("logits")
    out += [Entry(("fc.weight",), logits.kernel, "dense"),
            Entry(("fc.bias",), logits.bias, "vector")]
    for e in out:
        e.names = tuple(e.names)
    return out


def entries_reactnet_a(model, step, channels=CHANNELS):
    """The conversion table of our reduced ReActNet-A (or DyBNN) ``model``: the official
    network in step ``step`` (1: ``nn.Conv2d`` ``.weight``, 2: ``HardBinaryConv``
    ``.weights``)."""
    binary = "weights" if step == 2 else "weight"
    out = [Entry(("feature.0.conv1.weight",), model.get_layer("stem_conv").kernel, "conv")]
    out += _bn(model.get_layer("stem_bn"), ["feature.0.bn1"])
    for i, (cin, cout) in enumerate(zip(channels, channels[1:]), start=1):
        f, b = f"feature.{i}", f"block{i}"
        conv1, conv2 = model.get_layer(f"{b}_conv1"), model.get_layer(f"{b}_conv2")
        out.append(Entry((f"{f}.move11.bias",), conv1.input_quantizer.bias, "vector"))
        out.append(Entry((f"{f}.binary_3x3.{binary}",), conv1.kernel, "conv"))
        out += _bn(model.get_layer(f"{b}_bn1"), [f"{f}.bn1"])
        out += _act(model.get_layer(f"{b}_act1"), f, "move12", "prelu1", "move13")
        out.append(Entry((f"{f}.move21.bias",), conv2.input_quantizer.bias, "vector"))
        if cin == cout:
            out.append(Entry((f"{f}.binary_pw.{binary}",), conv2.kernel, "conv"))
            out += _bn(model.get_layer(f"{b}_bn2"), [f"{f}.bn2"])
        else:  # the two official 1x1 convs / BNs are halves of our one
            out.append(Entry((f"{f}.binary_pw_down1.{binary}", f"{f}.binary_pw_down2.{binary}"),
                             conv2.kernel, "conv"))
            out += _bn(model.get_layer(f"{b}_bn2"), [f"{f}.bn2_1", f"{f}.bn2_2"])
        out += _act(model.get_layer(f"{b}_act2"), f, "move22", "prelu2", "move23")
    logits = model.get_layer("logits")
    out += [Entry(("fc.weight",), logits.kernel, "dense"), Entry(("fc.bias",), logits.bias,
                                                                   "vector")]
    for e in out:
        e.names = tuple(e.names)
    return out


def load_official(model, table, tensors):
    """Assign official ``tensors`` (name -> array) to our variables."""
    for e in table:
        e.variable.assign(e.to_keras(tensors).astype(e.variable.dtype.as_numpy_dtype))


def export_official(table, shapes):
    """Our variables -> official ``state_dict`` arrays."""
    result = {}
    for e in table:
        result.update(e.to_official(e.variable.numpy(), shapes))
    return result


# ---------------------------------------------------------------------------------------
# Our model and our training step


def build(method, step, dtype="float64", channels=CHANNELS, num_classes=10, size=32,
          model="reactnet_a", blocks=RESNET18_BLOCKS):
    """Our reduced ReActNet-A / ReAct-ResNet-18 (``method="reactnet"``) or its DyBNN version
    (``"dybnn"``, its hyper-functions left at their zero initialisation and frozen, so every
    DySign is an RSign and every DyPReLU an RPReLU), built for two-step training
    (``binary_weights=False``) and switched to step ``step`` as ``BinaryWeightsSwitch``
    does."""
    import tensorflow as tf

    from larq_adaptive.hyper import HyperFunction
    from larq_adaptive.introspect import iter_layers, iter_quantizers
    from larq_adaptive.models import reactnet
    from larq_adaptive.models.methods import get_method
    from larq_adaptive.quantizers import SwitchableQuantizer

    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy(dtype)
    common = dict(method=get_method(method, method, binary_weights=False),
                  input_shape=(size, size, 3), input_tensor=None, weights=None,
                  include_top=True, num_classes=num_classes)
    try:
        if model == "reactnet_resnet18":
            model = reactnet.resnet18_network(name=f"{method}_resnet18_parity",
                                              blocks=tuple(blocks), **common)
        else:
            model = reactnet.reactnet_a_network(name=f"{method}_a_parity",
                                                channels=tuple(channels), **common)
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")
    for quantizer in iter_quantizers(model, SwitchableQuantizer):
        quantizer.active.assign(float(step == 2))
    hyper = []
    for layer in iter_layers(model):
        for sub in [layer, getattr(layer, "input_quantizer", None)]:
            for attr in ("threshold", "shift"):
                found = getattr(sub, attr, None)
                if isinstance(found, HyperFunction):
                    found.trainable = False
                    hyper.append(found)
    if method == "dybnn" and not hyper:
        raise RuntimeError("no hyper-function found in the DyBNN model")
    return model, hyper


class FixedTeacher:
    """A Keras 'teacher' whose output is the stored teacher logits (the parity harness
    distills against a fixed output, not a network)."""

    @staticmethod
    def model(logits, input_shape):
        import tensorflow as tf

        class Fixed(tf.keras.layers.Layer):
            def call(self, inputs):
                return tf.constant(logits)

        inputs = tf.keras.Input(input_shape)
        return tf.keras.Model(inputs, Fixed(dtype="float64")(inputs))


def build_for(cfg, method, dtype="float64"):
    """:func:`build` for the reference configuration ``cfg``."""
    return build(method, cfg["step"], dtype=dtype, channels=cfg.get("channels", CHANNELS),
                 num_classes=cfg["num_classes"], size=cfg["size"],
                 model=cfg.get("model", "reactnet_a"),
                 blocks=cfg.get("blocks", RESNET18_BLOCKS))


def initial_state(reference):
    """The official initial ``state_dict`` of a reference (stored, or regenerated)."""
    stored = {k[len("init/"):]: v for k, v in reference.items() if k.startswith("init/")}
    if stored:
        return stored
    cfg = reference["config"]
    return random_state(cfg["shapes"], cfg["step"], cfg["seed"])


def hyper_offsets(model, channels, seed=7):
    """DyBNN with *non-zero* constant hyper-function outputs: every FC2 bias gets a random
    value ``t`` (FC2 kernel stays 0, so ``t`` is the generated threshold/shift for every
    input) and the static shift absorbs it (DySign ``b = b_official + t``; DyPReLU
    ``bias_in = b_in + gamma``, ``bias_out = b_out - zeta``), so the network is still the
    official RSign/RPReLU one. Returns {official name: offset of our static shift}."""
    rng = np.random.default_rng(seed)
    offsets = {}

    def shift(fc2, size):
        value = rng.normal(scale=0.3, size=size)
        fc2.bias.assign(value)
        return value

    for i in range(1, len(channels)):
        f, b = f"feature.{i}", f"block{i}"
        for conv, move in ((f"{b}_conv1", "move11"), (f"{b}_conv2", "move21")):
            sign = model.get_layer(conv).input_quantizer
            t = shift(sign.threshold.fc2, sign.bias.shape[0])
            sign.bias.assign_add(t)
            offsets[f"{f}.{move}.bias"] = t
        for act, (move_in, move_out) in ((f"{b}_act1", ("move12", "move13")),
                                         (f"{b}_act2", ("move22", "move23"))):
            layer = model.get_layer(act)
            gamma, zeta = np.split(shift(layer.shift.fc2, 2 * layer.bias_in.shape[0]), 2)
            layer.bias_in.assign_add(gamma)
            layer.bias_out.assign_sub(zeta)
            offsets[f"{f}.{move_in}.bias"] = gamma
            offsets[f"{f}.{move_out}.bias"] = -zeta
    return offsets


def run_ours(reference, method="reactnet", offsets=False):
    """Our two steps from the reference's initial weights: the results in the official
    naming and layout (``grad``, ``exp_avg``, ``exp_avg_sq`` by parameter, ``param`` by
    state_dict entry), like the reference. ``offsets`` (DyBNN only): constant non-zero
    hyper-function outputs, see :func:`hyper_offsets`."""
    import tensorflow as tf

    from larq_adaptive.optimizers import TorchAdam
    from larq_adaptive.training.distillation import Distiller, soft_target_cross_entropy
    from larq_adaptive.training.recipes import learning_rate
    from larq_adaptive.training.stages import CoupledWeightDecay, make_optimizer

    cfg = reference["config"]
    model, _ = build_for(cfg, method)
    table = entries(model, cfg)
    init = initial_state(reference)
    shapes = {name: value.shape for name, value in init.items()}
    count = cfg.get("projections")

    def stored(name, value):  # what the reference keeps of a tensor
        return project(name, value, count) if count else value
    load_official(model, table, init)
    shifted = hyper_offsets(model, cfg["channels"]) if offsets else {}
    images = reference["images"].transpose(0, 2, 3, 1)  # NCHW -> NHWC
    teacher_logits = reference["teacher_logits"]
    labels = np.zeros(len(images), "int64")

    by_variable = {id(e.variable): e for e in table}
    trainable = model.trainable_variables
    missing = [v.name for v in trainable if id(v) not in by_variable]
    if missing:
        raise RuntimeError(f"trainable variables without an official counterpart: {missing}")

    def official(values):  # our variable -> value dict, converted to official names
        out = {}
        for variable, value in values:
            out.update(by_variable[id(variable)].to_official(value, shapes))
        return out

    decay = CoupledWeightDecay(model, "reactnet")
    decay.coefficient.assign(cfg["weight_decay"])
    optimizer = make_optimizer("adam", cfg["lr"])
    assert isinstance(optimizer, TorchAdam)
    distiller = Distiller(model, FixedTeacher.model(teacher_logits, images.shape[1:]))
    distiller.compile(optimizer=optimizer,
                      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    results = {"eval_logits/0": model(images, training=False).numpy(),
               "decayed": official((v, v.numpy()) for v in decay.variables),
               "hyper_outputs": max([float(np.max(np.abs(t))) for t in shifted.values()] or [0])}
    for k in (1, 2):
        lr = learning_rate("linear", cfg["lr"], k - 1, cfg["epochs"])
        optimizer.learning_rate.assign(lr)
        results[f"step{k}/lr"] = lr
        # The loss gradient alone (PyTorch's p.grad), then the real step: Distiller.train_step.
        saved = [v.numpy() for v in model.non_trainable_variables]
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(soft_target_cross_entropy(teacher_logits, logits))
        grads = tape.gradient(loss, trainable)
        for v, value in zip(model.non_trainable_variables, saved):
            v.assign(value)
        # a tensor: Keras' data adapter would cast a float64 NumPy batch to float32
        logs = distiller.train_on_batch(tf.constant(images), labels, return_dict=True)
        results[f"step{k}/loss"] = float(logs["loss"])
        results[f"step{k}/loss_tape"] = float(loss)
        for key, values in (("grad", grads),
                            ("exp_avg", [optimizer._momentums[optimizer._index_dict[
                                optimizer._var_key(v)]] for v in trainable]),
                            ("exp_avg_sq", [optimizer._velocities[optimizer._index_dict[
                                optimizer._var_key(v)]] for v in trainable])):
            converted = official(
                (v, np.asarray(g)) for v, g in zip(trainable, values))
            for name, value in converted.items():
                results[f"step{k}/{key}/{name}"] = stored(name, value)
        for name, value in official((e.variable, e.variable.numpy()) for e in table).items():
            offset = shifted.get(name)
            results[f"step{k}/param/{name}"] = stored(
                name, value if offset is None else value - np.reshape(offset, value.shape))
        results[f"eval_logits/{k}"] = model(images, training=False).numpy()
    return results


# ---------------------------------------------------------------------------------------
# Comparison


def rel_diff(ours, theirs):
    """max |ours - theirs| / max |theirs| (0 if both are 0)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    scale = np.max(np.abs(theirs)) if theirs.size else 0.0
    err = np.max(np.abs(ours - theirs.reshape(ours.shape))) if theirs.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


GROUPS = ("loss", "gradients", "Adam m", "Adam v", "updated parameters",
          "BN running mean", "BN running var", "eval logits before", "eval logits after")


def compare(reference, ours):
    """{group: (max relative difference, tensor name)} over both steps."""
    worst = {g: (0.0, "") for g in GROUPS}

    def note(group, value, name):
        if value >= worst[group][0]:
            worst[group] = (value, name)

    for k in (1, 2):
        # our soft_target_cross_entropy in float64 (the Distiller's logged kd_loss is a
        # float32 Keras metric)
        note("loss", rel_diff(ours[f"step{k}/loss_tape"], reference[f"step{k}/loss"]),
             f"step{k}")
        for key, group in (("grad", "gradients"), ("exp_avg", "Adam m"),
                           ("exp_avg_sq", "Adam v")):
            prefix = f"step{k}/{key}/"
            names = [n[len(prefix):] for n in reference if n.startswith(prefix)]
            for name in names:
                note(group, rel_diff(ours[prefix + name], reference[prefix + name]),
                     f"step{k} {name}")
        prefix = f"step{k}/param/"
        for name in [n[len(prefix):] for n in reference if n.startswith(prefix)]:
            group = ("BN running mean" if name.endswith("running_mean") else
                     "BN running var" if name.endswith("running_var") else
                     "updated parameters")
            note(group, rel_diff(ours[prefix + name], reference[prefix + name]),
                 f"step{k} {name}")
    for k in (0, 1, 2):
        note("eval logits after" if k else "eval logits before",
             rel_diff(ours[f"eval_logits/{k}"], reference[f"eval_logits/{k}"]),
             f"after step {k}" if k else "initial weights")
    return worst


def decay_set_matches(reference, ours):
    """Our coupled-decay variables == the official decayed parameter group (step 1)."""
    return set(ours["decayed"]) == set(reference["decayed_names"].tolist())


def float32_sign_flips(reference, method="reactnet"):
    """(flipped, total) binarized activations of our float32 forward (train-mode BN) vs the
    official float32 forward, from the same weights and batch."""
    import tensorflow as tf

    from larq_adaptive.introspect import binary_conv_layers

    cfg = reference["config"]
    model, _ = build_for(cfg, method, dtype="float32")
    load_official(model, entries(model, cfg), initial_state(reference))
    convs = binary_conv_layers(model)
    probe = tf.keras.Model(model.inputs, [c.input for c in convs])
    images = reference["images"].transpose(0, 2, 3, 1).astype("float32")
    inputs = probe(images, training=True)
    ours = []
    for conv, x in zip(convs, inputs):
        shifted = x.numpy() + conv.input_quantizer.bias.numpy()
        ours.append(np.where(shifted >= 0, 1, -1))  # larq: sign(0) = +1
    theirs = [np.sign(reference[f"f32_presign/{i}"]).transpose(0, 2, 3, 1)
              for i in range(len(ours))]
    flipped = sum(int(np.sum(a != b)) for a, b in zip(ours, theirs))
    return flipped, sum(a.size for a in ours)


def format_table(worst):
    lines = ["| quantity | max relative difference | where |", "|---|---|---|"]
    for group, (value, name) in worst.items():
        lines.append(f"| {group} | {value:.1e} | {name} |")
    return "\n".join(lines)


def check_main(data_dir, method="reactnet", tolerance=1e-5):
    """``--check``: compare our steps with the stored references, print a table per step
    configuration; exit 1 if a difference exceeds ``tolerance``. DyBNN also runs the step-2
    configuration with non-zero constant hyper-function outputs (:func:`hyper_offsets`)."""
    import larq_adaptive  # noqa: F401  (Keras 2)

    status = 0
    runs = [("reactnet_a", 1, False), ("reactnet_a", 2, False)]
    runs += [("reactnet_a", 2, True)] if method == "dybnn" else []
    runs += [("reactnet_resnet18", 1, False), ("reactnet_resnet18", 2, False)]
    titles = {"reactnet_a": "ReActNet-A", "reactnet_resnet18": "ReAct-ResNet-18"}
    for model, step, offsets in runs:
        path = Path(data_dir) / f"{model}_step{step}.npz"
        if not path.is_file():
            print(f"error: {path} not found; generate it with reactnet_step.py "
                  "--official-repo PATH", file=__import__("sys").stderr)
            return 2
        reference = load_reference(path)
        ours = run_ours(reference, method, offsets=offsets)
        worst = compare(reference, ours)
        flips, total = float32_sign_flips(reference, method)
        kind = "binary activations, real weights" if step == 1 else "binary weights too"
        hyper = {"reactnet": "", "dybnn": " (hyper-function outputs 0)"}[method]
        if offsets:
            hyper = f" (hyper-function outputs constant, up to {ours['hyper_outputs']:.2f})"
        print(f"\n{method}{hyper} vs official {titles[model]}, step {step} configuration "
              f"({kind}), float64:")
        print(format_table(worst))
        if step == 1:  # step 2 decays nothing (run.sh --weight_decay=0)
            print(f"decayed parameter set equals the official group: "
                  f"{decay_set_matches(reference, ours)}")
        print(f"float32: {flips} of {total} binarized activations differ in sign "
              f"(ours vs official, same weights and batch)")
        if max(v for v, _ in worst.values()) > tolerance or (
                step == 1 and not decay_set_matches(reference, ours)):
            status = 1
    return status
