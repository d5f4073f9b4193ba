"""Pictures of what a binary network learned, and of how it trained.

    python -m larq_adaptive.plot binary-sets MODEL.keras OUT.png [--images CIFAR.npz]
    python -m larq_adaptive.plot curves RUN_DIR OUT.png

``binary-sets``: per binary conv, the learned binary sets. Top panel, the weights: each
filter ``o`` binarizes to ``{center_o - scale_o, center_o + scale_o}``
(:func:`larq_adaptive.export.binary_weights`); boxes (quartiles, whiskers at min and max)
show the lower and upper values across filters (AdaBin's "adaptive binary sets"; symmetric
methods give mirror images). Bottom panel, the activations: AdaBin's two levels
``alpha (beta - 1)``, ``alpha (beta + 1)`` and threshold ``beta`` per layer; for RSign the
per-channel thresholds ``-b_c``; for DySign the thresholds ``tau(x)_c - b_c`` over a batch
of images (real ones with ``--images``, an ``.npz`` with uint8 ``images`` such as the
CIFAR-10 test set; Gaussian noise otherwise, which the legend then says).

``curves``: loss and accuracy (train and validation) from a ``train.py`` run directory
(``stage_k/log.csv`` files of Keras' CSVLogger, or a single ``log.csv``), with the stage
boundaries marked.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot, no global backend change).
"""

import csv
import json
import math
import re
import sys
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from larq_adaptive.command_line import (Parser, load_model_argument, make_parent_folders,
                                        output_path_argument)
from larq_adaptive.introspect import binary_conv_layers, binary_weights, final_quantizer
from larq_adaptive.preprocessing import normalize
from larq_adaptive.quantizers import AdaBinActivationQuantizer, DySign, RSign

__all__ = ["binary_sets_figure", "curves_figure", "read_run_logs"]

LOW, HIGH, THRESHOLD = "tab:blue", "tab:red", "tab:gray"


def _figure(rows, width):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.2 * rows), layout="constrained")
    return fig, fig.subplots(rows, 1, squeeze=False)[:, 0]


# --------------------------------------------------------------------------- binary sets


def _normalise(images, size, preprocessing="imagenet"):
    x = tf.cast(images, tf.float32)
    if tuple(x.shape[1:3]) != tuple(size):
        x = tf.image.resize(x, size)
    return normalize(x, preprocessing).numpy()


def activation_sets(model, images=None):
    """Per binary conv: ``(name, kind, data)`` describing its activation binarizer.

    kind ``"adabin"``: data = (low level, high level, threshold) scalars;
    kind ``"static"`` (RSign): data = per-channel thresholds ``-b``;
    kind ``"dynamic"`` (DySign): data = thresholds ``tau(x) - b`` over images x channels;
    kind ``None``: a fixed binarizer (sign at 0), data = None.
    """
    layers = binary_conv_layers(model)
    dynamic = [
        layer for layer in layers if isinstance(final_quantizer(layer.input_quantizer), DySign)
    ]
    conv_inputs = {}
    if dynamic:
        probe = tf.keras.Model(model.inputs, [layer.input for layer in dynamic])
        outputs = probe(images, training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        conv_inputs = {layer.name: out for layer, out in zip(dynamic, outputs)}
    result = []
    for layer in layers:
        quantizer = final_quantizer(layer.input_quantizer)
        if isinstance(quantizer, AdaBinActivationQuantizer):
            alpha, beta = float(quantizer.alpha.numpy()), float(quantizer.beta.numpy())
            result.append((layer.name, "adabin", (alpha * (beta - 1), alpha * (beta + 1), beta)))
        elif isinstance(quantizer, DySign):
            tau = quantizer.threshold(conv_inputs[layer.name])
            result.append((layer.name, "dynamic", np.ravel(tau - quantizer.bias)))
        elif isinstance(quantizer, RSign):
            result.append((layer.name, "static", -quantizer.bias.numpy()))
        else:
            result.append((layer.name, None, None))
    return result


def _boxes(ax, values, positions, color, label):
    """One box per position (quartiles; whiskers at the min and max), labelled once."""
    parts = ax.boxplot(
        values, positions=positions, widths=0.5, whis=(0, 100), showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": color, "alpha": 0.45, "edgecolor": color},
        medianprops={"color": color}, whiskerprops={"color": color}, capprops={"color": color},
    )
    parts["boxes"][0].set_label(label)


def binary_sets_figure(model, images=None, title=None):
    """Figure of the learned weight and activation binary sets of every binary conv.

    ``images``: uint8 NHWC images in 0-255 for DySign thresholds (default: 16 Gaussian
    noise inputs in normalised space).
    """
    size = model.input_shape[1:3]
    if images is None:
        rng = np.random.default_rng(0)
        inputs, source = rng.normal(size=(16, *model.input_shape[1:])).astype(np.float32), "noise"
    else:
        inputs, source = _normalise(images, size), f"{len(images)} images"
    kernels = binary_weights(model)
    acts = activation_sets(model, inputs)
    names = [name for name, _, _ in acts]
    positions = np.arange(1, len(names) + 1)
    fig, (ax_w, ax_a) = _figure(2, max(10.0, 0.42 * len(names) + 4))

    lows = [kernels[n].center - kernels[n].scale for n in names]
    highs = [kernels[n].center + kernels[n].scale for n in names]
    for values, color, label in (
        (lows, LOW, "lower value center - scale"), (highs, HIGH, "upper value center + scale")
    ):
        _boxes(ax_w, values, positions, color, f"{label} across filters")
    centers = [np.median(kernels[n].center) for n in names]
    ax_w.plot(positions, centers, "_", color="k", markersize=12, label="median center")
    ax_w.axhline(0, color=THRESHOLD, linewidth=0.6)
    ax_w.set_ylabel("binary weight value")
    ax_w.set_title("weights: per-filter binary sets {center - scale, center + scale}")
    ax_w.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)

    adabin = [(p, data) for p, (_, kind, data) in zip(positions, acts) if kind == "adabin"]
    if adabin:
        xs = [p for p, _ in adabin]
        ax_a.vlines(xs, [d[0] for _, d in adabin], [d[1] for _, d in adabin], color="k",
                    linewidth=0.8)
        ax_a.plot(xs, [d[0] for _, d in adabin], "v", color=LOW,
                  label="lower level alpha(beta - 1)")
        ax_a.plot(xs, [d[1] for _, d in adabin], "^", color=HIGH,
                  label="upper level alpha(beta + 1)")
        ax_a.plot(xs, [d[2] for _, d in adabin], "x", color="k", label="threshold beta")
    for kind, color, label in (
        ("static", "tab:green", "RSign thresholds -b across channels"),
        ("dynamic", "tab:purple", f"DySign thresholds tau(x) - b, channels x {source}"),
    ):
        spread = [(p, data) for p, (_, k, data) in zip(positions, acts) if k == kind]
        if spread:
            _boxes(ax_a, [d for _, d in spread], [p for p, _ in spread], color, label)
    fixed = [p for p, (_, kind, _) in zip(positions, acts) if kind is None]
    if fixed:
        ax_a.plot(fixed, [0.0] * len(fixed), "o", color=THRESHOLD, label="fixed threshold 0 (sign)")
    ax_a.axhline(0, color=THRESHOLD, linewidth=0.6)
    ax_a.set_ylabel("activation value")
    ax_a.set_title("activations: binary levels and thresholds")
    ax_a.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for ax in (ax_w, ax_a):
        ax.set_xticks(positions)
        ax.set_xticklabels(names if ax is ax_a else [], rotation=70, fontsize=7)
        ax.set_xlim(0.3, len(names) + 0.7)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"{model.name}: learned binary sets of {len(names)} binary convs")
    return fig


# --------------------------------------------------------------------------- curves


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = {}
    for row in rows:
        for key, value in row.items():
            if key is not None:
                columns.setdefault(key.strip(), []).append(_float(value))
    return {key: np.asarray(values) for key, values in columns.items()}


def _stage_number(path):
    match = re.search(r"(\d+)$", path.parent.name)
    return int(match.group(1)) if match else 0


def read_run_logs(run_dir):
    """``[(stage label, {column: array})]`` from a train.py run directory.

    Reads ``stage_k/log.csv`` (k = 1, 2, ... in numeric order; labels from ``state.json``'s
    ``finished_stages`` when present) or a single ``log.csv``. Empty cells (epochs without
    validation) become NaN. Raises FileNotFoundError if there is no log.
    """
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("stage_*/log.csv"), key=_stage_number)
    if not files and (run_dir / "log.csv").exists():
        files = [run_dir / "log.csv"]
    if not files:
        raise FileNotFoundError(f"no stage_*/log.csv or log.csv in {run_dir}")
    names = []
    state = run_dir / "state.json"
    if state.exists():
        try:
            names = list(json.loads(state.read_text()).get("finished_stages", []))
        except (json.JSONDecodeError, AttributeError):
            names = []
    logs = []
    for index, path in enumerate(files):
        label = f"stage {_stage_number(path) or index + 1}" if len(files) > 1 else "training"
        if index < len(names):
            label += f" ({names[index]})"
        logs.append((label, _read_csv(path)))
    return logs


def _metric_columns(columns, word):
    train = [k for k in columns if word in k and not k.startswith("val_") and k != "epoch"]
    return [(k, k) for k in train] + [
        (f"val_{k}", f"val_{k}") for k in train if f"val_{k}" in columns
    ]


def curves_figure(run_dir, title=None):
    """Loss and accuracy against the global epoch, one colour per curve, stages marked."""
    from matplotlib.ticker import MaxNLocator

    logs = read_run_logs(run_dir)
    fig, (ax_loss, ax_acc) = _figure(2, 8.0)
    offset = 0
    boundaries = []
    styles = {}
    for label, columns in logs:
        n = len(next(iter(columns.values()))) if columns else 0
        epochs = offset + (columns["epoch"] + 1 if "epoch" in columns else np.arange(1, n + 1))
        for ax, word in ((ax_loss, "loss"), (ax_acc, "acc")):
            for key, legend in _metric_columns(columns, word):
                values = columns[key]
                if np.all(np.isnan(values)):
                    continue
                keep = ~np.isnan(values)
                style = styles.setdefault(key, {"color": f"C{len(styles)}"})
                first = legend not in [line.get_label() for line in ax.get_lines()]
                ax.plot(epochs[keep], values[keep], ".-", markersize=5,
                        label=legend if first else "_", **style)
        boundaries.append((offset, label))
        offset = float(np.nanmax(epochs)) if n else offset
    for ax, ylabel in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for start, label in boundaries:
            if len(boundaries) > 1:
                ax.axvline(start + 0.5, color="k", linestyle="--", linewidth=0.8)
                ax.annotate(label, (start + 0.6, 1.0), xycoords=("data", "axes fraction"),
                            va="top", fontsize=8)
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(loc="center right", fontsize=8)
    ax_acc.set_xlabel("epoch (all stages)")
    fig.suptitle(title or f"training curves: {Path(run_dir).resolve().name}")
    return fig


# --------------------------------------------------------------------------- CLI


def _load_images(parser, path, count):
    """uint8 ``images`` (N, H, W, 3) of an ``.npz`` (no pickles), or a one-line error."""
    try:
        with np.load(path, allow_pickle=False) as data:
            images = data["images"][:count]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        parser.error(f"--images {path!r}: not an .npz with an `images` array ({error})")
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        parser.error(f"--images {path!r}: expected uint8 images (N, H, W, 3), got "
                     f"{images.dtype} {images.shape}")
    return images


def main(argv=None):
    """``larq-adaptive-plot`` / ``python -m larq_adaptive.plot``: 0 written, 2 bad input (one
    line on stderr)."""
    parser = Parser(prog="larq-adaptive-plot", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sets = commands.add_parser("binary-sets", help="learned binary sets of every binary conv")
    sets.add_argument("model", help="a .keras / .h5 / SavedModel file")
    sets.add_argument("output", help="the .png to write")
    sets.add_argument("--images", help=".npz with uint8 `images` (N,H,W,3) for DySign thresholds")
    sets.add_argument("--count", type=int, default=64, help="images to use (default 64)")
    curves = commands.add_parser("curves", help="training curves of a train.py run directory")
    curves.add_argument("run_dir")
    curves.add_argument("output", help="the .png to write")
    args = parser.parse_args(argv)
    output = output_path_argument(parser, args.output)
    if not output.lower().endswith((".png", ".pdf", ".svg", ".jpg", ".jpeg")):
        parser.error(f"output {output!r}: use a .png, .pdf, .svg or .jpg file name")

    if args.command == "binary-sets":
        if args.count < 1:
            parser.error(f"--count must be >= 1, got {args.count}")
        images = _load_images(parser, args.images, args.count) if args.images else None
        model = load_model_argument(parser, args.model)
        if not binary_conv_layers(model):
            parser.error(f"{args.model!r} has no binary convolution to plot")
        fig = binary_sets_figure(model, images)
    else:
        try:
            fig = curves_figure(args.run_dir)
        except (FileNotFoundError, NotADirectoryError) as error:
            parser.error(f"{error} (pass a train.py run directory)")
    make_parent_folders(output)
    fig.savefig(output, dpi=120)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
