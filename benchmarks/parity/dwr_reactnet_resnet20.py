"""Step parity, case 3: DWR ResNet-20 + ReActNet on CIFAR-10 against the official DWR code.

    pip install -e ".[torch]"
    python benchmarks/parity/dwr_reactnet_resnet20.py \
        --official-repo PATH/TO/DWR [--data cifar10_test.npz] [--check-only]

The official ``CIFAR-10/ResNet-20+ReActNet/resnet.py`` (``resnet20_1w1a``: widths 30/86/154,
one block per stage, ``alg2`` 154 -> 64) and its ``modules/ir_1w1a.py`` are imported from
``--official-repo`` at run time. Initial weights: drawn with numpy for our
``dwr_reactnet_resnet20`` (``_common.random_weights``, seed 0: kaiming-normal kernels and
shifts, PReLU slopes and BN parameters/statistics away from their initial values, as in the
middle of training), converted to the official model's state dict (and back, exactly); the
test draws the same weights, so they are not stored. In float64 on both sides, train-mode BN, no
augmentation, the official trainer's optimizer ``SGD(model.parameters(), lr, momentum=0.9,
weight_decay=1e-4)``: step 1 on test images 0-63 at the cosine lr of epoch 250 of 400, step 2
on images 64-127 at epoch 350.

Writes ``tests/data/parity/dwr_reactnet_resnet20.npz``, replays our side, prints the table of
docs/parity.md and the float32 sign-flip count. ``--check-only`` compares against the stored
file without writing it.
"""

import argparse
import contextlib
import copy
import io
import math
import os
import re
import sys
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import larq_adaptive  # noqa: E402,F401  (first: Keras 2)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

from _common import (  # noqa: E402
    REFERENCE_DIR,
    TOLERANCE,
    cifar_batches,
    default_cifar_test,
    keras_weights,
    markdown_table,
    preprocess,
    random_weights,
    read_reference,
    run_our_steps,
    sample,
    sum_of_squares,
    summary_rows,
    write_reference,
)
from _torch import NameMap, TorchStep, official_modules, sign_flips, torch_input  # noqa: E402
from larq_adaptive.introspect import binary_conv_layers  # noqa: E402
from larq_adaptive.models import get_model  # noqa: E402
from larq_adaptive.quantizers import RSign  # noqa: E402

CASE = "dwr_reactnet_resnet20"
CODE_DIR = Path("CIFAR-10", "ResNet-20+ReActNet")
BATCH = 64
EPOCHS, EPOCH1, EPOCH2 = 400, 250, 350
LR0, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
SEED = 0


def cosine_lr(epoch):
    return LR0 * 0.5 * (1.0 + math.cos(math.pi * epoch / EPOCHS))


_FIXED = {"stem_conv": "conv1", "stem_bn": "bn1", "alg2_conv": "alg2.convalg.0",
          "alg2_bn": "alg2.convalg.1", "head_bn": "bn2", "logits": "linear"}
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
       "moving_variance": "running_var"}
_ACT = {"bias_in": "s{i}1.bias", "alpha": "nonlinear{i}.weight", "bias_out": "s{i}2.bias"}
_BLOCK = re.compile(r"stage(\d+)_block(\d+)_(conv|bn|act)([12])")


def official_name(key):
    """Our weight key -> (official state-dict name, layout kind)."""
    layer, weight = key.rsplit(".", 1)
    if layer in _FIXED:
        module = _FIXED[layer]
        if layer.endswith("_bn"):
            return f"{module}.{_BN[weight]}", "same"
        if layer == "logits":
            return (f"{module}.weight", "dense") if weight == "kernel" else (f"{module}.bias",
                                                                               "same")
        return f"{module}.weight", "conv"
    stage, block, kind, i = _BLOCK.fullmatch(layer).groups()
    prefix = f"layer{stage}.{int(block) - 1}."
    if kind == "conv":  # the RSign shift is the LearnableBias s{i}0 before the conv
        return (prefix + f"conv{i}.weight", "conv") if weight == "kernel" else (
            prefix + f"s{i}0.bias", "same")
    if kind == "bn":
        return prefix + f"bn{i}.{_BN[weight]}", "same"
    return prefix + _ACT[weight].format(i=i), "same"


def name_map(model, state_dict):
    entries = {}
    for key, variable in keras_weights(model).items():
        name, kind = official_name(key)
        entries[name] = (key, kind, tuple(variable.shape))
    names = NameMap(entries, {n: tuple(t.shape) for n, t in state_dict.items()})
    names.check_complete(keras_weights(model), state_dict)
    return names


def official_model(repo):
    """``resnet20_1w1a()`` of the official code, seeded. Its ``resnet.py`` imports a
    ``modules.recalibration_modules`` that the repository does not contain and never uses:
    an empty stand-in module is provided for the import."""
    code = Path(repo) / CODE_DIR
    sys.path.insert(0, str(code))
    try:
        import modules  # noqa: F401  (the official namespace package)

        stub = types.ModuleType("modules.recalibration_modules")
        sys.modules[stub.__name__] = stub
        modules.recalibration_modules = stub
    finally:
        sys.path.remove(str(code))
    with official_modules(code, ["modules.ir_1w1a", "resnet"]) as (ir_1w1a, resnet):
        torch.manual_seed(SEED)
        with contextlib.redirect_stdout(io.StringIO()):  # _weights_init prints class names
            model = resnet.resnet20_1w1a()
        conv_class = ir_1w1a.IRConv2d
    for name in [n for n in sys.modules if n == "modules" or n.startswith("modules.")]:
        del sys.modules[name]
    return model, conv_class


def keras_model(dtype):
    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy(dtype)
    return get_model(CASE)


def assign(model, arrays):
    variables = keras_weights(model)
    for key, value in arrays.items():
        variables[key].assign(value.astype(variables[key].dtype.as_numpy_dtype))


def float32_flips(torch_model, conv_class, init, images):
    """Sign flips of the binarized activations, float32 in both frameworks (a report)."""
    captured = {}
    hooks = [m.register_forward_pre_hook(
        lambda module, inputs, name=name: captured.__setitem__(name, inputs[0].detach().numpy()))
        for name, m in torch_model.named_modules() if isinstance(m, conv_class)]
    torch_model.train()
    with torch.no_grad():
        torch_model(torch_input(images).float())
    for hook in hooks:
        hook.remove()
    model = keras_model("float32")
    assign(model, init)
    convs = binary_conv_layers(model)
    probe = tf.keras.Model(model.inputs, [layer.input for layer in convs])
    ours = []
    for layer, x in zip(convs, probe(preprocess(images).astype(np.float32), training=True)):
        shift = layer.input_quantizer.bias.numpy() if isinstance(
            layer.input_quantizer, RSign) else 0.0
        ours.append(x.numpy() + shift)  # RSign: sign(x + b); the official bias comes first
    theirs = [captured[official_name(f"{layer.name}.kernel")[0][: -len(".weight")]]
              for layer in convs]
    tf.keras.mixed_precision.set_global_policy("float64")
    return sign_flips(theirs, ours, [0.0] * len(convs)), sum(x.size for x in ours)


def make_reference(repo, data):
    torch_model, conv_class = official_model(repo)
    model = keras_model("float64")
    init = random_weights({k: v.shape for k, v in keras_weights(model).items()}, SEED)
    assign(model, init)
    names = name_map(model, torch_model.state_dict())
    # Keras -> PyTorch
    torch_model.load_state_dict({**torch_model.state_dict(), **names.torch(init)})
    state_dict = {k: v.clone() for k, v in torch_model.state_dict().items()}
    back = names.keras(state_dict)  # and back: bit for bit
    worst = max(float(np.max(np.abs(back[k] - init[k]))) for k in init)
    if worst != 0.0:
        raise SystemExit(f"weight conversion is not exact: {worst}")
    float32_model = copy.deepcopy(torch_model)
    torch_model.double()

    images1, labels1, images2, labels2 = cifar_batches(data, BATCH)
    optimizer = torch.optim.SGD(torch_model.parameters(), cosine_lr(EPOCH1), momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    step = TorchStep(torch_model, optimizer, names)
    reference = {
        "cifar_batch": BATCH,  # the inputs: rows of the shared CIFAR-10 test set
        "lr1": cosine_lr(EPOCH1), "lr2": cosine_lr(EPOCH2), "weight_decay": WEIGHT_DECAY,
        "momentum": MOMENTUM, "logits0": step.logits(images1),
        "official_parameters": sum(p.numel() for p in torch_model.parameters()),
    }
    reference["seed"] = np.int64(SEED)
    reference.update(sum_of_squares(init))
    for s, images, labels in ((1, images1, labels1), (2, images2, labels2)):
        loss, grads, deltas = step(images, labels, reference[f"lr{s}"])
        reference[f"step{s}.loss"] = loss
        reference.update({f"step{s}.grad.{key}": sample(v) for key, v in grads.items()})
        reference.update({f"step{s}.delta.{key}": sample(v) for key, v in deltas.items()})
        reference[f"logits{s}"] = step.logits(images1)
    flips, total = float32_flips(float32_model, conv_class, init, images1)
    return reference, (flips, total)


def check(reference):
    """Our side from the stored reference (what tests/test_parity_official.py does)."""
    model = keras_model("float64")
    init = random_weights({k: v.shape for k, v in keras_weights(model).items()},
                          int(reference["seed"]))
    for key, value in sum_of_squares(init).items():
        if abs(value - float(reference[key])) > 1e-9 * float(reference[key]):
            raise SystemExit(f"numpy drew different initial weights for {key}")
    assign(model, init)
    return run_our_steps(model, reference, lambda m, s: None)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True,
                        help="checkout of github.com/pingxue-hfut/DWR")
    parser.add_argument("--data", default=str(default_cifar_test()),
                        help="cifar10_test.npz (images uint8 NHWC, labels)")
    parser.add_argument("--output", default=str(REFERENCE_DIR / f"{CASE}.npz"))
    parser.add_argument("--check-only", action="store_true",
                        help="compare with the stored reference, write nothing")
    args = parser.parse_args(argv)
    for path, what in ((Path(args.official_repo) / CODE_DIR / "resnet.py", "official resnet.py"),
                       (Path(args.data), "CIFAR-10 test set")):
        if not path.is_file():
            parser.error(f"{what} not found: {path}")
    if not args.check_only:
        reference, (flips, total) = make_reference(args.official_repo, args.data)
        size = write_reference(args.output, reference)
        print(f"wrote {args.output} ({size / 1e6:.2f} MB); official trainable parameters "
              f"{int(reference['official_parameters']):,}, ours "
              f"{sum(int(np.prod(v.shape)) for v in keras_model('float64').trainable_weights):,}")
        print(f"float32 sign flips (binarized activations, step-1 batch, train mode): "
              f"{sum(flips)} of {total}; per layer {flips}")
    results = check(read_reference(args.output, args.data))
    print(markdown_table(results))
    worst = max(value for _, value, _, _ in summary_rows(results))
    print(f"max relative difference {worst:.1e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
