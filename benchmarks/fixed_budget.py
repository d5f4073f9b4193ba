"""Fixed-budget comparison on real CIFAR-10 (CPU): the adaptive ResNet-20s against the same
network with larq's plain quantizers, each trained for the same number of epochs with its
recipe's schedule spanning exactly those epochs; test accuracy (10,000 lossless test
images) after every epoch.

    python benchmarks/fixed_budget.py --epochs 10                 # hours on 2 CPU cores
    python benchmarks/fixed_budget.py --policy mixed_bfloat16 --models adabin_resnet20
    python benchmarks/fixed_budget.py --report-only               # table + plot from the runs

Runs go to ``--output-root`` (default runs/fixed_budget/<name>/, or <name>_<policy>/ with
``--policy mixed_bfloat16`` / ``mixed_float16``: train.py ``--mixed-precision``), one
``train.py`` run each: re-running the command after an interruption continues where it
stopped. The report lists every run found, float32 and mixed precision side by side. Two-step recipes
get ``epochs / 2`` per step, so every model sees the same number of epochs. The table goes
to stdout and ``<output-root>/fixed_budget.md``, the curves to ``--plot``.
"""

import argparse
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# name -> (registered model, extra train.py flags)
RUNS = {
    "adabin_resnet20": ("adabin_resnet20", ["--recipe", "adabin_cifar"]),
    "reactnet_resnet20": ("reactnet_resnet20", ["--recipe", "reactnet_cifar"]),
    "dybnn_resnet20": ("dybnn_resnet20", ["--recipe", "reactnet_cifar"]),
    "plain_ste_sign_resnet20": (
        "reactnet_resnet20", ["--method", "ste_sign", "--recipe", "dwr_cifar"]
    ),
}
TWO_STEP = ("reactnet_cifar",)
# --policy -> train.py --mixed-precision value (float32: none)
POLICIES = {"float32": None, "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def run_name(name, policy="float32"):
    """The run folder of ``name`` under ``policy``."""
    return name if policy == "float32" else f"{name}_{policy}"


def train_argv(name, args):
    model, flags = RUNS[name]
    epochs = args.epochs // 2 if any(r in flags for r in TWO_STEP) else args.epochs
    argv = [
        "--model", model, *flags, "--epochs", str(epochs),
        "--data-dir", str(args.data_dir), "--val-data-dir", str(args.val_data_dir),
        "--output-dir", str(Path(args.output_root) / run_name(name, args.policy)),
        "--seed", str(args.seed), "--verbose", "2",
    ]
    if POLICIES[args.policy]:
        argv += ["--mixed-precision", POLICIES[args.policy]]
    if args.steps_per_epoch:
        argv += ["--steps-per-epoch", str(args.steps_per_epoch)]
    return argv


def curve(run_dir):
    """Test accuracy after each epoch, over all stages in order."""
    accuracies = []
    for log in sorted(Path(run_dir).glob("stage_*/log.csv")):
        with open(log) as handle:
            accuracies += [float(row["val_accuracy"]) for row in csv.DictReader(handle)]
    return accuracies


def report(args):
    root = Path(args.output_root)
    curves = {run_name(name, policy): curve(root / run_name(name, policy))
              for name in RUNS for policy in POLICIES
              if policy == "float32" or (root / run_name(name, policy)).is_dir()}
    epochs = max((len(c) for c in curves.values()), default=0)
    lines = ["| model | " + " | ".join(str(e + 1) for e in range(epochs)) + " | best |",
             "|---" * (epochs + 2) + "|"]
    for name, values in curves.items():
        cells = [f"{100 * v:.1f}" for v in values] + [""] * (epochs - len(values))
        best = f"{100 * max(values):.1f}" if values else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {best} |")
    table = "\n".join(lines)
    print(table)
    Path(args.output_root).mkdir(parents=True, exist_ok=True)
    (Path(args.output_root) / "fixed_budget.md").write_text(table + "\n")
    (Path(args.output_root) / "fixed_budget.json").write_text(json.dumps(curves, indent=2))
    if args.plot and any(curves.values()):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(6, 4))
        for name, values in curves.items():
            if values:
                axes.plot(range(1, len(values) + 1), [100 * v for v in values], "o-", label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel("CIFAR-10 test accuracy (%)")
        axes.set_title(f"ResNet-20 1W1A, {args.epochs} epochs each (CPU)")
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        figure.savefig(args.plot, dpi=120)
    return curves


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=SHARED / "cifar10-train-original")
    parser.add_argument("--val-data-dir", default=SHARED / "cifar10-test-original")
    parser.add_argument("--output-root", default="runs/fixed_budget")
    parser.add_argument("--models", "--only", dest="only", nargs="*", choices=sorted(RUNS),
                        metavar="NAME", help=f"subset of the runs: {', '.join(RUNS)}")
    parser.add_argument("--policy", choices=tuple(POLICIES), default="float32",
                        help="train under this Keras policy (runs go to <name>_<policy>/)")
    parser.add_argument("--steps-per-epoch", type=int, help="smoke runs only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="docs/training_fixed_budget.png")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    if not args.report_only:
        from larq_adaptive.training.cli import main as train

        for name in args.only or RUNS:
            status = train(train_argv(name, args))
            if status:
                print(f"{name}: train.py exited with {status}")
    report(args)


if __name__ == "__main__":
    main()
