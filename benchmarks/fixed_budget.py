"""Fixed-budget comparison on real CIFAR-10 (CPU): the adaptive ResNet-20s against the same
network with larq's plain quantizers, each trained for the same number of epochs with its
recipe's schedule spanning exactly those epochs; test accuracy (10,000 lossless test
images) after every epoch, for one or more seeds.

    python benchmarks/fixed_budget.py --epochs 10 --seeds 0 1     # hours on 2 CPU cores
    python benchmarks/fixed_budget.py --policy mixed_bfloat16 --models adabin_resnet20
    python benchmarks/fixed_budget.py --report-only               # table + plot from the runs

Runs go to ``<output-root>/seed<N>/<name>`` (default output root runs/fixed_budget;
``<name>_<policy>`` with ``--policy mixed_bfloat16`` / ``mixed_float16``: train.py
``--mixed-precision``), one ``train.py`` run each: re-running the command after an
interruption continues where it stopped. Two-step recipes get ``epochs / 2`` per step, so
every model sees the same number of epochs. The report covers every run found under the
output root (all seeds of ``--policy``): the table goes to stdout and
``<output-root>/fixed_budget.md``, the curves (median over seeds, min-max band) to ``--plot``,
and the result to ``benchmarks/results/fixed_budget.json``.
"""

import argparse
import csv
import json
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

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


def run_dir(root, seed, name, policy="float32"):
    return Path(root) / f"seed{seed}" / run_name(name, policy)


def environment_file(run_folder):
    """Beside a run folder: the environment in which its training started."""
    return run_folder.with_name(run_folder.name + ".environment.json")


def train_argv(name, args, seed):
    model, flags = RUNS[name]
    epochs = args.epochs // 2 if any(r in flags for r in TWO_STEP) else args.epochs
    argv = [
        "--model", model, *flags, "--epochs", str(epochs),
        "--data-dir", str(args.data_dir), "--val-data-dir", str(args.val_data_dir),
        "--output-dir", str(run_dir(args.output_root, seed, name, args.policy)),
        "--seed", str(seed), "--verbose", "2",
    ]
    if args.threads:
        argv += ["--threads", str(args.threads), "--inter-op-threads", str(args.threads)]
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


def finished(run_dir):
    """``results.json`` of a finished run (None while it is unfinished)."""
    path = Path(run_dir) / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def collect(root, policy):
    """``{run name: {seed: {"curve", "finished", "test_accuracy", ...}}}`` of every run under
    ``policy`` found under ``root`` (``environment``: where its training started, when the
    run recorded it)."""
    runs = {}
    for seed_dir in sorted(Path(root).glob("seed*")):
        seed = seed_dir.name[len("seed"):]
        for name in RUNS:
            folder = seed_dir / run_name(name, policy)
            if not (folder / "config.json").is_file():
                continue
            done = finished(folder)
            config = json.loads((folder / "config.json").read_text())
            started = environment_file(folder)
            entry = {"curve": curve(folder), "finished": done is not None, "policy": policy,
                     "mixed_precision": config.get("mixed_precision"),
                     "environment": json.loads(started.read_text()) if started.exists() else None}
            if done:
                epochs = len(entry["curve"])
                entry.update(test_accuracy=done["test_accuracy"], epochs=epochs,
                             train_seconds=done["train_seconds"],
                             seconds_per_epoch=round(done["train_seconds"] / epochs, 1))
            runs.setdefault(run_name(name, policy), {})[seed] = entry
    return runs


def table(runs):
    """Markdown: per run, the median test accuracy (%) over seeds after each epoch, and the
    final one with its min-max."""
    epochs = max((len(s["curve"]) for seeds in runs.values() for s in seeds.values()), default=0)
    lines = ["| model | seeds | " + " | ".join(str(e + 1) for e in range(epochs))
             + " | final: median (min-max) |", "|---" * (epochs + 3) + "|"]
    for name, seeds in runs.items():
        curves = [s["curve"] for s in seeds.values()]
        cells = [f"{100 * statistics.median(c[e] for c in curves if len(c) > e):.1f}"
                 if any(len(c) > e for c in curves) else "" for e in range(epochs)]
        last = [c[-1] for c in curves if c]
        final = (f"{100 * statistics.median(last):.1f} ({100 * min(last):.1f}-"
                 f"{100 * max(last):.1f})" if last else "-")
        lines.append(f"| {name} | {', '.join(seeds)} | " + " | ".join(cells) + f" | {final} |")
    return "\n".join(lines)


def plot(runs, path, epochs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, seeds in runs.items():
        curves = [s["curve"] for s in seeds.values() if s["curve"]]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        x = range(1, length + 1)
        values = [[100 * c[e] for c in curves] for e in range(length)]
        axes.plot(x, [statistics.median(v) for v in values], "o-",
                  label=f"{name} ({len(curves)} seed{'s' * (len(curves) > 1)})")
        axes.fill_between(x, [min(v) for v in values], [max(v) for v in values], alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel("CIFAR-10 test accuracy (%)")
    axes.set_title(f"ResNet-20 1W/1A, {epochs} epochs: median and min-max over seeds",
                   fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def report(args, env):
    """Print and write the table of the runs found; when every one of them has finished, also
    the stored result and the figure."""
    root = Path(args.output_root)
    runs = collect(root, args.policy)
    if not runs:
        print(f"no {args.policy} runs found under {root}/seed*/: train them first "
              f"(python benchmarks/fixed_budget.py --epochs {args.epochs})")
        return runs
    text = table(runs)
    print(text)
    root.mkdir(parents=True, exist_ok=True)
    (root / "fixed_budget.md").write_text(text + "\n")
    (root / "fixed_budget.json").write_text(json.dumps(runs, indent=2))
    if not all(s["finished"] for seeds in runs.values() for s in seeds.values()):
        print("some runs are unfinished: benchmarks/results/fixed_budget.json and the figure "
              "are left as they are")
        return runs
    epochs = max(len(s["curve"]) for seeds in runs.values() for s in seeds.values())
    _results.write("fixed_budget", {"epochs": epochs, "threads": args.threads, "runs": runs}, env)
    if args.plot:
        plot(runs, args.plot, epochs)
    return runs


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
    parser.add_argument("--seeds", "--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="train.py --threads and --inter-op-threads (0: TensorFlow's default)")
    parser.add_argument("--plot", default="docs/training_fixed_budget.png")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args(argv)
    env = _results.environment(__file__, argv)
    if not args.report_only:
        from larq_adaptive.training.cli import main as train

        for seed in args.seeds:
            for name in args.only or RUNS:
                folder = run_dir(args.output_root, seed, name, args.policy)
                if finished(folder):  # train.py would only evaluate it again
                    print(f"fixed budget: {name}, seed {seed}: finished, kept", flush=True)
                    continue
                print(f"fixed budget: {name}, seed {seed}", flush=True)
                started = environment_file(folder)
                if not started.exists():  # where its training starts (train.py wants the
                    started.parent.mkdir(parents=True, exist_ok=True)  # run folder its own)
                    started.write_text(json.dumps(env, indent=1) + "\n")
                status = train(train_argv(name, args, seed))
                if status:
                    print(f"{name}, seed {seed}: train.py exited with {status}")
    report(args, env)


if __name__ == "__main__":
    main()
