"""Step parity, case 1: AdaBin ResNet-20 on CIFAR-10 against the official AdaBin code.

    pip install -e ".[torch]"
    python benchmarks/parity/adabin_resnet20.py \
        --official-repo PATH/TO/Efficient-Computing [--data cifar10_test.npz] [--check-only]

From the official checkpoint (``BinaryNetworks/AdaBin/cifar10/checkpoints/resnet20_1w1a/
model.th``), in float64 on both sides, train-mode BN, no augmentation: step 1 on test images
0-63 at epoch 250 of 400 of the official schedule (cosine lr, EDE ``Log_UP`` k and t), step 2
on images 64-127 at epoch 350 (lr / 7.3: the momentum convention matters), with the official
trainer's optimizer (``torch.optim.SGD(model.parameters(), lr, momentum=0.9,
weight_decay=1e-4)``: every parameter decayed). The official ``nets/resnet20.py`` and
``utils/binarylib.py`` are imported from ``--official-repo`` at run time.

Writes ``tests/data/parity/adabin_resnet20.npz`` (see ``_common.py`` for its layout), then
replays our side and prints the comparison table of docs/parity.md, and the float32 sign-flip
count (both frameworks in float32 from the same weights on the same batch). ``--check-only``
compares against the stored file without writing it.
"""

import argparse
import copy
import math
import os
import sys
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
    read_reference,
    run_our_steps,
    sample,
    sum_of_squares,
    summary_rows,
    weights_numpy,
    write_reference,
)
from _torch import (  # noqa: E402
    NameMap,
    TorchStep,
    cpu_only_cuda,
    official_modules,
    sign_flips,
    torch_input,
)
from larq_adaptive.introspect import iter_quantizers  # noqa: E402
from larq_adaptive.layers import AdaBinConv2D, Maxout  # noqa: E402
from larq_adaptive.models import get_model  # noqa: E402
from larq_adaptive.models.official_adabin import torch_module_name  # noqa: E402
from larq_adaptive.quantizers import AdaBinWeightQuantizer  # noqa: E402

CASE = "adabin_resnet20"
CODE_DIR = Path("BinaryNetworks", "AdaBin", "cifar10")
CHECKPOINT = CODE_DIR / "checkpoints" / "resnet20_1w1a" / "model.th"
BATCH = 64
EPOCHS, EPOCH1, EPOCH2 = 400, 250, 350
LR0, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4


def cosine_lr(epoch):
    """``CosineAnnealingLR(T_max=400, eta_min=0)`` after ``epoch`` scheduler steps."""
    return LR0 * 0.5 * (1.0 + math.cos(math.pi * epoch / EPOCHS))


_SHORT = {  # (Keras layer type, weight) -> (official suffix, layout kind)
    (AdaBinConv2D, "kernel"): ("weight", "conv"),
    (AdaBinConv2D, "alpha"): ("binary_a.alpha_a", "same"),
    (AdaBinConv2D, "beta"): ("binary_a.beta_a", "same"),
    (tf.keras.layers.Conv2D, "kernel"): ("weight", "conv"),
    (tf.keras.layers.BatchNormalization, "gamma"): ("weight", "same"),
    (tf.keras.layers.BatchNormalization, "beta"): ("bias", "same"),
    (tf.keras.layers.BatchNormalization, "moving_mean"): ("running_mean", "same"),
    (tf.keras.layers.BatchNormalization, "moving_variance"): ("running_var", "same"),
    (Maxout, "pos_scale"): ("pos_scale", "same"),
    (Maxout, "neg_scale"): ("neg_scale", "same"),
    (tf.keras.layers.Dense, "kernel"): ("weight", "dense"),
    (tf.keras.layers.Dense, "bias"): ("bias", "same"),
}


def name_map(model, state_dict):
    entries = {}
    for layer in model.layers:
        module = torch_module_name(layer.name)
        for variable in layer.weights:
            short = variable.name.split("/")[-1].split(":")[0]
            for (cls, weight), (suffix, kind) in _SHORT.items():
                if isinstance(layer, cls) and weight == short:
                    entries[f"{module}.{suffix}"] = (f"{layer.name}.{short}", kind,
                                                     tuple(variable.shape))
                    break
    names = NameMap(entries, {n: tuple(t.shape) for n, t in state_dict.items()})
    names.check_complete(keras_weights(model), state_dict)
    return names


def ede_constants(log_up, epoch):
    """The official trainer's ``--progressive`` (k, t) of ``epoch`` (float32 tensors)."""
    t = log_up(epoch, EPOCHS)
    k = 1 / t if t < 1 else torch.tensor([1]).float()
    return k, t


def set_torch_ede(model, conv_class, k, t):
    for module in model.modules():
        if isinstance(module, conv_class):
            module.k, module.t = k, t


def set_keras_ede(model, k, t):
    for quantizer in iter_quantizers(model, AdaBinWeightQuantizer):
        quantizer.k.assign(k)
        quantizer.t.assign(t)


def keras_model(checkpoint, dtype):
    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy(dtype)
    return get_model(CASE, weights=str(checkpoint))  # the library's checkpoint import


def float32_flips(official, state_dict, images, checkpoint, k, t):
    """Sign flips of the binarized activations, float32 in both frameworks (a report)."""
    torch_model, conv_class = official
    torch_model.float()
    torch_model.load_state_dict(state_dict)
    set_torch_ede(torch_model, conv_class, k, t)
    captured = {}
    hooks = [m.register_forward_pre_hook(
        lambda module, inputs, name=name: captured.__setitem__(name, inputs[0].detach().numpy()))
        for name, m in torch_model.named_modules() if isinstance(m, conv_class)]
    torch_model.train()
    with torch.no_grad():
        torch_model(torch_input(images).float())
    for hook in hooks:
        hook.remove()
    model = keras_model(checkpoint, "float32")
    set_keras_ede(model, float(k), float(t))
    convs = [layer for layer in model.layers if isinstance(layer, AdaBinConv2D)]
    probe = tf.keras.Model(model.inputs, [layer.input for layer in convs])
    ours = [x.numpy() for x in probe(preprocess(images).astype(np.float32), training=True)]
    theirs = [captured[torch_module_name(layer.name)] for layer in convs]
    thresholds = [float(layer.input_quantizer.beta.numpy()) for layer in convs]
    tf.keras.mixed_precision.set_global_policy("float64")
    return sign_flips(theirs, ours, thresholds), sum(x.size for x in ours)


def make_reference(repo, data):
    code = Path(repo) / CODE_DIR
    cpu_only_cuda()
    with official_modules(code, ["utils.binarylib", "utils.utils", "nets.resnet20"]) as (
            binarylib, utils, nets):
        torch_model = nets.resnet20_1w1a()
        conv_class, log_up = binarylib.AdaBin_Conv2d, utils.Log_UP
    raw = torch.load(Path(repo) / CHECKPOINT, map_location="cpu", weights_only=True)
    state_dict = {k.removeprefix("module."): v for k, v in raw["state_dict"].items()}
    torch_model.load_state_dict(state_dict)
    float32_model = copy.deepcopy(torch_model)
    torch_model.double()

    model = keras_model(Path(repo) / CHECKPOINT, "float64")
    names = name_map(model, state_dict)
    init = weights_numpy(model)
    back = names.torch(init)  # Keras -> PyTorch: must give the checkpoint back exactly
    worst = max(float((back[n].double() - state_dict[n].double()).abs().max()) for n in back)
    if worst != 0.0:
        raise SystemExit(f"weight conversion is not exact: {worst}")

    images1, labels1, images2, labels2 = cifar_batches(data, BATCH)
    optimizer = torch.optim.SGD(torch_model.parameters(), cosine_lr(EPOCH1), momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    step = TorchStep(torch_model, optimizer, names)
    reference = {
        "cifar_batch": BATCH,  # the inputs: rows of the shared CIFAR-10 test set
        "lr1": cosine_lr(EPOCH1), "lr2": cosine_lr(EPOCH2), "weight_decay": WEIGHT_DECAY,
        "momentum": MOMENTUM, "logits0": step.logits(images1),
    }
    # the initial weights are the official checkpoint's: checked by their sums of squares
    reference.update(sum_of_squares({k: v for k, v in init.items()
                                     if not k.endswith(("ede_k", "ede_t"))}))
    for s, epoch, images, labels in ((1, EPOCH1, images1, labels1), (2, EPOCH2, images2, labels2)):
        k, t = ede_constants(log_up, epoch)
        set_torch_ede(torch_model, conv_class, k, t)
        reference[f"ede_k{s}"], reference[f"ede_t{s}"] = float(k), float(t)
        loss, grads, deltas = step(images, labels, reference[f"lr{s}"])
        reference[f"step{s}.loss"] = loss
        reference.update({f"step{s}.grad.{key}": sample(v) for key, v in grads.items()})
        reference.update({f"step{s}.delta.{key}": sample(v) for key, v in deltas.items()})
        reference[f"logits{s}"] = step.logits(images1)

    k, t = ede_constants(log_up, EPOCH1)
    flips, total = float32_flips((float32_model, conv_class), state_dict, images1,
                                 Path(repo) / CHECKPOINT, k, t)
    return reference, (flips, total)


def set_step_state(model, reference, step):
    set_keras_ede(model, float(reference[f"ede_k{step}"]), float(reference[f"ede_t{step}"]))


def check(reference, checkpoint):
    """Our side from the stored reference (what tests/test_parity_official.py does), starting
    from the official ``checkpoint``."""
    tf.keras.backend.clear_session()
    tf.keras.mixed_precision.set_global_policy("float64")
    model = get_model(CASE, weights=str(checkpoint))
    for key, value in sum_of_squares(weights_numpy(model)).items():
        if key in reference and value != float(reference[key]):
            raise SystemExit(f"{checkpoint} is not the checkpoint of the reference ({key})")
    return run_our_steps(model, reference, lambda m, s: set_step_state(m, reference, s))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official-repo", required=True,
                        help="checkout of github.com/huawei-noah/Efficient-Computing")
    parser.add_argument("--data", default=str(default_cifar_test()),
                        help="cifar10_test.npz (images uint8 NHWC, labels)")
    parser.add_argument("--output", default=str(REFERENCE_DIR / f"{CASE}.npz"))
    parser.add_argument("--check-only", action="store_true",
                        help="compare with the stored reference, write nothing")
    args = parser.parse_args(argv)
    for path, what in ((Path(args.official_repo) / CHECKPOINT, "official checkpoint"),
                       (Path(args.data), "CIFAR-10 test set")):
        if not path.is_file():
            parser.error(f"{what} not found: {path}")
    if not args.check_only:
        reference, (flips, total) = make_reference(args.official_repo, args.data)
        size = write_reference(args.output, reference)
        print(f"wrote {args.output} ({size / 1e6:.2f} MB)")
        print(f"float32 sign flips (binarized activations, step-1 batch, train mode): "
              f"{sum(flips)} of {total}; per layer {flips}")
    results = check(read_reference(args.output, args.data), Path(args.official_repo) / CHECKPOINT)
    print(markdown_table(results))
    worst = max(value for _, value, _, _ in summary_rows(results))
    print(f"max relative difference {worst:.1e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
