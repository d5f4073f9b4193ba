"""Render the docs' measured numbers from the stored benchmark results.

    python benchmarks/report.py            # rewrite docs/benchmarks.md and README's generated blocks
    python benchmarks/report.py --check    # exit 1 if any of them differs from the rendering

Sources: ``benchmarks/results/*.json`` (written by the benchmarks, each with its
environment, see ``_results.py``), ``docs/models.md`` (written by ``larq-adaptive-report``)
and the model registry and recipes (paper figures, epochs). Nothing here is typed by hand:
a number that no stored result holds is rendered as "not measured".

README.md holds generated blocks between ``<!-- generated: NAME -->`` and
``<!-- end generated -->``; NAME is a key of :data:`BLOCKS`.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _results  # noqa: E402  (this directory)

ROOT = _results.ROOT
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- end generated -->)", re.S)
NOT_MEASURED = "not measured"
CIFAR_TRAIN_IMAGES = 50_000
FIXED_BUDGET_COMMAND = "python benchmarks/fixed_budget.py --epochs 10 --seeds 0 1 --policy mixed_bfloat16"


class Results:
    """The stored records, read once (``directory``: default benchmarks/results)."""

    def __init__(self, directory=None):
        self.directory = Path(directory or _results.RESULTS)
        self.records = {path.stem: json.loads(path.read_text())
                        for path in sorted(self.directory.glob("*.json"))}

    def __getitem__(self, name):
        return self.records.get(name)

    def results(self, name):
        record = self.records.get(name)
        return record["results"] if record else None


# ---------------------------------------------------------------- formatting helpers

def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def quartiles(samples):
    """(q25, median, q75) of ``samples`` (inclusive method)."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    q25, q50, q75 = statistics.quantiles(samples, n=4, method="inclusive")
    return q25, q50, q75


def cpu_name(record):
    cpu = record["environment"]["cpu"]
    bf16 = [f for f in cpu["flags"] if "bf16" in f]
    kind = f"{', '.join(bf16).upper()}" if bf16 else (
        "AVX-512, no BF16" if "avx512f" in cpu["flags"] else "AVX2")
    return f"{cpu['model']}, {cpu['cores']} cores ({kind})"


def stack(record):
    env = record["environment"]
    packages = env["packages"]
    parts = [f"Python {env['python']}", f"TensorFlow {packages['tensorflow']}"]
    if packages.get("tf-keras"):
        parts.append(f"tf-keras {packages['tf-keras']}")
    parts += [f"larq {packages['larq']}", f"LCE {packages['larq-compute-engine']}",
              f"numpy {packages['numpy']}"]
    return ", ".join(parts)


def environment_line(record):
    """The generated line that says where a table came from (the only place with a date)."""
    env = record["environment"]
    flags = " ".join(env["cpu"]["flags"]) or "none of " + " ".join(_results.CPU_FLAGS)
    load = " / ".join(f"{value:.2f}" for value in env["load_average"])
    threads = "; " + ", ".join(f"{k}={v}" for k, v in env["threads"].items()) if env["threads"] \
        else ""
    return (f"*Environment:* {env['cpu']['model']}, {env['cpu']['cores']} cores, flags {flags}; "
            f"{stack(record)}; commit `{env['commit']}`; {env['date']}; load average "
            f"(1/5/15 min) {load} at the start{threads}. *Command:* `{env['command']}`"
            + (f" (in `{env['cwd']}`)" if env.get("cwd", ".") != "." else ""))


def hardware_note(record):
    """Short hardware tag for a figure outside docs/benchmarks.md."""
    return f"{cpu_name(record)}; {stack(record).split(', larq')[0]}"


def missing(command):
    return f"{NOT_MEASURED} (run `{command}` to measure)"


# ---------------------------------------------------------------- one renderer per result

def render_quickstart(results):
    record = results["quickstart"]
    if not record:
        return missing("python benchmarks/quickstart.py")
    rows = record["results"]["rounds"]
    walls = [r["wall_s"] for r in rows]
    accuracy = [r["test_accuracy"] for r in rows]
    return table(
        ["rounds", "wall time (s)", "CPU time (s)", "peak memory (MB)", "test accuracy (360 digits)"],
        [[len(rows), spread(walls, "{:.0f}"), spread([r["cpu_s"] for r in rows], "{:.0f}"),
          spread([r["peak_rss_MB"] for r in rows], "{:.0f}"),
          spread([100 * a for a in accuracy], "{:.1f} %")]]) + f"\n\nOn {hardware_note(record)}."


def spread(values, fmt):
    """``median`` or ``median (min-max)`` of ``values``."""
    values = sorted(values)
    middle = fmt.format(statistics.median(values))
    if len(values) == 1:
        return middle
    return f"{middle} ({fmt.format(values[0])}-{fmt.format(values[-1])})"


def render_official_adabin(results):
    keras, decomposed = results["official_adabin_cifar10"], results[
        "official_adabin_cifar10_decomposed"]
    if not keras:
        return missing("python benchmarks/official_adabin_cifar10.py")
    rows = []
    for test_set, title in (("lossless", "lossless test set (10,000)"),
                            ("jpeg", "JPEG copy (10,000)")):
        mine = keras["results"].get(test_set)
        if not mine:
            continue
        deployable = decomposed["results"].get(test_set) if decomposed else None
        rows.append([title, f"{mine['top1']:.2f} % ({mine['correct']:,})",
                     f"{mine['top1_first_9984']:.2f} %",
                     f"{deployable['top1']:.2f} %" if deployable else NOT_MEASURED,
                     f"{mine['official_pytorch_top1']:.2f} %"])
    return table(["CIFAR-10 test images", "this package (Keras)", "first 9,984 (official loader)",
                  "decomposed (LCE) form", "official PyTorch code"], rows)


def train_step_rows(record):
    """Rows of a train_step result, every ratio computed from the stored per-step samples."""
    rows_in = record["results"]["results"]
    plain = "+ste_sign"
    reference = quartiles(rows_in["plain_ste_sign_resnet20"]["samples_ms"])[1]
    rows = []
    for name, row in rows_in.items():
        q25, median, q75 = quartiles(row["samples_ms"])
        same = rows_in.get(name + plain)
        if same:
            other = quartiles(same["samples_ms"])
            ratio = f"{median / other[1]:.2f}x / {q25 / other[0]:.2f}x"
        else:
            ratio = "-"
        rows.append([f"`{name}`", f"{median:.0f} ({q25:.0f}-{q75:.0f})", ratio,
                     f"{median / reference:.2f}x"])
    return rows


def render_train_step(results):
    record = results["train_step"]
    if not record:
        return missing("python benchmarks/train_step.py")
    return table(["model (batch 128, float32)", "step (ms): median (IQR)",
                  "vs same network with `ste_sign` (medians / lower quartiles)",
                  "vs plain ste_sign ResNet-20"], train_step_rows(record))


def speedups(row, policy):
    """(float32 / ``policy`` step time) of the medians and of the lower quartiles of a
    train_step row's samples (> 1: the policy is faster)."""
    full, reduced = quartiles(row["samples_ms"]["float32"]), quartiles(row["samples_ms"][policy])
    return full[1] / reduced[1], full[0] / reduced[0]


def policy_rows(record, policy):
    rows = []
    for name, row in record["results"]["results"].items():
        f25, f50, f75 = quartiles(row["samples_ms"]["float32"])
        r25, r50, r75 = quartiles(row["samples_ms"][policy])
        median, lower = speedups(row, policy)
        rows.append([f"`{name}`", f"{f50:.0f} ({f25:.0f}-{f75:.0f})",
                     f"{r50:.0f} ({r25:.0f}-{r75:.0f})", f"**{median:.2f}x** / {lower:.2f}x"])
    return rows


def render_policy(results, policy):
    record = results[f"train_step_{policy}"]
    if not record:
        return missing(f"python benchmarks/train_step.py --policy {policy}")
    return table(["model (batch 128)", "float32 step (ms): median (IQR)",
                  f"{policy} step (ms): median (IQR)",
                  "speed-up (medians / lower quartiles)"], policy_rows(record, policy))


def fixed_budget_rows(record):
    """Per run: seeds, final top-1 median (min-max) and the spread, best first."""
    rows = []
    for name, seeds in record["results"]["runs"].items():
        finals = [100 * s["curve"][-1] for s in seeds.values()]
        rows.append([f"`{name}`", ", ".join(seeds), spread(finals, "{:.1f}"),
                     f"{max(finals) - min(finals):.1f}" if len(finals) > 1 else "-"])
    rows.sort(key=lambda row: -float(row[2].split()[0]))
    return rows


def render_fixed_budget(results):
    """The final top-1 per model over seeds (the runs' wall times stay in the stored result:
    seeds train side by side, so they are no speed measurement)."""
    record = results["fixed_budget"]
    if not record:
        return missing(FIXED_BUDGET_COMMAND)
    epochs = record["results"]["epochs"]
    policies = {s["policy"] for seeds in record["results"]["runs"].values()
                for s in seeds.values()}
    header = [f"ResNet-20, 1-bit weights and activations, {epochs} epochs "
              f"({', '.join(sorted(policies))})", "seeds",
              "test top-1 after the last epoch: median (min-max)", "seed spread (points)"]
    return (table(header, fixed_budget_rows(record))
            + f"\n\nTrained on {hardware_note(record)}.")


def render_fixed_budget_curves(results):
    record = results["fixed_budget"]
    if not record:
        return missing(FIXED_BUDGET_COMMAND)
    runs = record["results"]["runs"]
    epochs = max(len(s["curve"]) for seeds in runs.values() for s in seeds.values())
    rows = []
    for name, seeds in runs.items():
        for seed, run in seeds.items():
            rows.append([f"`{name}`", seed] + [f"{100 * v:.1f}" for v in run["curve"]]
                        + [""] * (epochs - len(run["curve"])))
    return table(["model", "seed"] + [str(e + 1) for e in range(epochs)], rows)


def render_fixed_budget_section(results):
    text = render_fixed_budget(results)
    if not results["fixed_budget"]:
        return text
    return (text + "\n\nTest top-1 after each epoch:\n\n" + render_fixed_budget_curves(results)
            + FIXED_BUDGET_FIGURE)


def lce_rows(record):
    rows = []
    sizes = record["results"]["sizes"]
    bireal = next((row for row in sizes if row["model"].endswith("BiRealNet")), None)
    for row in sizes:
        ratio = f"{row['tflite_MiB'] / bireal['tflite_MiB']:.3f}" if bireal else "-"
        rows.append([f"`{row['model']}`", row.get("weights", "untrained"),
                     f"{row['lce_bconv2d']}/{row['binary_convs']}",
                     f"{row['binary_macs_in_bconv_pct']:.1f} %", row["float_convs_left"],
                     f"{row['tflite_MiB']:.3f}", ratio])
    return rows


def render_lce_sizes(results, name="inference"):
    record = results[name]
    if not record:
        return missing("python benchmarks/inference.py")
    return table(["model", "weights", "LceBconv2d / binary convs", "1-bit MACs in LceBconv2d",
                  "float CONV_2D left", "file (MiB)", "x Bi-Real Net"], lce_rows(record))


def render_latency(results):
    record = results["inference"]
    if not record or not record["results"]["latency"]:
        return missing("python benchmarks/inference.py --runs 30")
    rows = []
    for row in record["results"]["latency"]:
        rows.append([f"`{row['model']}`", row["threads"],
                     f"{row['median_ms']:.1f} ({row['q25_ms']:.1f}-{row['q75_ms']:.1f})",
                     f"{row['min_ms']:.1f}-{row['max_ms']:.1f}",
                     f"{row['ratio_of_medians']:.2f}" if "ratio_of_medians" in row else "-",
                     f"{row['paired_ratio_median']:.2f} ({row['paired_ratio_q25']:.2f}-"
                     f"{row['paired_ratio_q75']:.2f})" if "paired_ratio_median" in row else "-"])
    return table(["model", "threads", "latency (ms): median (IQR)", "min-max (ms)",
                  "median / Bi-Real Net's", "per-round ratio to Bi-Real Net: median (IQR)"], rows)


# ---------------------------------------------------------------- docs/benchmarks.md

# fixed_budget.py --plot draws it from the same runs as its stored result
# sections rendered from more than one stored result (each gets its environment line)
RECORDS_ALSO = {"official_adabin_cifar10": ("official_adabin_cifar10_decomposed",)}
FIXED_BUDGET_FIGURE = ("\n\n![test top-1 after each epoch, mean and min-max over seeds]"
                       "(training_fixed_budget.png)")
SECTIONS = (  # (result, title, how to reproduce, what it measures, renderer)
    ("quickstart", "Quickstart job", "python benchmarks/quickstart.py",
     "`python train.py` (what `make train` runs) in a fresh process and folder, timed from "
     "outside: `adabin_resnet20` trained for 8 epochs on scikit-learn's digits, evaluated on the "
     "360 held-out images.", render_quickstart),
    ("official_adabin_cifar10", "Official AdaBin checkpoint",
     "python benchmarks/official_adabin_cifar10.py; "
     "python benchmarks/official_adabin_cifar10.py --decomposed",
     "Top-1 of `get_model(\"adabin_resnet20\", weights=\"model.th\")` (the official checkpoint, "
     "imported) on both CIFAR-10 test copies of `../shared/data`; the official PyTorch figures "
     "are what the official code computes on the same images. The decomposed form is the "
     "network as it deploys to LCE (`decomposed=True`).", render_official_adabin),
    ("train_step_mixed_bfloat16", "Training step: bfloat16 vs float32",
     "python benchmarks/train_step.py --policy mixed_bfloat16 --rounds 7 --steps 3",
     "One model per method plus a float twin, each built under `mixed_bfloat16` and under "
     "float32 and trained as `model.fit` runs its steps (batch 128, SGD with momentum and coupled "
     "weight decay), the models interleaved in rounds so that a change of load hits all alike; "
     "every step is timed. Speed-up = float32 step time / bfloat16 step time (> 1: bfloat16 is "
     "faster).", lambda results: render_policy(results, "mixed_bfloat16")),
    ("train_step_mixed_float16", "Training step: float16 vs float32",
     "python benchmarks/train_step.py --policy mixed_float16 --models adabin_resnet20 "
     "--rounds 2 --steps 1",
     "As above under `mixed_float16`: what `--mixed-precision float16` costs on a CPU.",
     lambda results: render_policy(results, "mixed_float16")),
    ("train_step", "Training step: adaptive quantizers vs ste_sign",
     "python benchmarks/train_step.py",
     "Each adaptive ResNet-20 against the same network with larq's plain `ste_sign` as input "
     "and kernel quantizer of every binary convolution (the cost of the adaptive quantizers), "
     "and against the plain ste_sign baseline ResNet-20 (`reactnet_resnet20(method=\"ste_sign\")` "
     "with HardTanh: the cost of the whole method). float32, batch 128, interleaved rounds.",
     render_train_step),
    ("fixed_budget", "Fixed budget on CIFAR-10",
     FIXED_BUDGET_COMMAND,
     "Four ResNet-20s with 1-bit weights and activations, each trained for the same number of "
     "epochs with its recipe's schedule spanning exactly those epochs (two-step recipes: half "
     "per step), on the 50,000 lossless training images; top-1 on the 10,000 lossless test "
     "images after the last epoch, per seed. The runs' wall times are stored with the result "
     "but not shown: seeds train side by side and other work shares the machine, so the "
     "training-step tables are the speed measurement.",
     render_fixed_budget_section),
    ("inference", "Deployment: LCE files and latency",
     "python benchmarks/inference.py --runs 30 "
     "--weights adabin_resnet20=../shared/reference/adabin_resnet20_cifar10/model.th",
     "Each model converted with `lqa.export.to_tflite` (larq-zoo's Bi-Real Net and QuickNet "
     "through the same converter), its binary convolutions counted as `LceBconv2d`; then "
     "single-image latency in LCE's x86 interpreter, the models interleaved round by round. On "
     "x86 this interpreter runs LCE's reference binary kernels, not the optimised ARM ones: read "
     "the latencies as ratios to Bi-Real Net (the same network as `reactnet_resnet18`). ARM: "
     f"{NOT_MEASURED}.",
     lambda results: render_lce_sizes(results) + "\n\n" + render_latency(results)),
    ("inference_sizes", "Deployment: LCE file of every binary model",
     "python benchmarks/inference.py --runs 0 --models NAME ...",
     "File size and `LceBconv2d` coverage of each registered binary model (untrained weights "
     "unless the weights column names a file).",
     lambda results: render_lce_sizes(results, "inference_sizes")),
)


def render_benchmarks_md(results):
    parts = ["# Benchmarks", "",
             "Generated by `python benchmarks/report.py` from the stored results in "
             "`benchmarks/results/` (do not edit by hand; a test re-renders it). Each section says "
             "what the benchmark measures and how, gives its table and the environment it ran in. "
             "Ratios are measured within one run, on one machine, with the models interleaved.",
             ""]
    for name, title, command, what, render in SECTIONS:
        parts += [f"## {title}", "", what, "", f"Reproduce: `{command}`", "", render(results), ""]
        for record_name in [name, *RECORDS_ALSO.get(name, ())]:
            record = results[record_name]
            parts += [environment_line(record) if record else
                      f"*Environment:* {NOT_MEASURED}.", ""]
            if not record:
                break
    return "\n".join(parts)


# ---------------------------------------------------------------- README blocks

def _registry():
    import larq_adaptive  # noqa: F401  (first: Keras 2 on every TensorFlow)
    from larq_adaptive.models import registry
    from larq_adaptive.training import recipes

    return registry, recipes


def models_md_rows():
    """``{model: {column: cell}}`` of docs/models.md (the generated zoo table)."""
    lines = [line for line in (ROOT / "docs" / "models.md").read_text().splitlines()
             if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def lce_size(results, name):
    """(MiB, weights) of ``name``'s LCE file: trained weights where a result has them."""
    found = []
    for source in ("inference", "inference_sizes"):
        record = results[source]
        for row in record["results"]["sizes"] if record else ():
            if row["model"] == name:
                found.append((row.get("weights", "untrained") != "untrained",
                              row["tflite_MiB"], row.get("weights", "untrained")))
    if not found:
        return NOT_MEASURED
    trained, size, weights = max(found)
    return f"{size:.3f} ({'trained' if trained else 'untrained'})"


def render_models(results):
    registry, _ = _registry()
    zoo = models_md_rows()
    rows = []
    for name in registry.available_models():
        entry = registry.model_entry(name)
        if entry.float_twin:
            continue
        paper = entry.paper
        rows.append([f"`{name}`", "x".join(map(str, entry.input_shape[:2])), entry.provenance,
                     zoo[name]["params"], f"{int(zoo[name]['1-bit MACs'].replace(',', '')) / 1e6:,.0f} M",
                     lce_size(results, name),
                     f"{paper.top1:.1f} % ({paper.dataset}; {paper.source})" if paper else "none published"])
    return table(["model", "input", "provenance", "parameters", "binary MACs", "LCE file (MiB)",
                  "paper top-1 (source)"], rows)


def render_results(results):
    """One table per dataset: each model with a published top-1 against what was measured."""
    registry, _ = _registry()
    official = results.results("official_adabin_cifar10")
    tables = {}
    for name in registry.available_models():
        entry = registry.model_entry(name)
        if entry.float_twin or entry.paper is None:
            continue
        if name == "adabin_resnet20" and official:
            measured = (f"{official['lossless']['top1']:.2f} %: the official checkpoint, "
                        "imported (lossless test set)")
        elif entry.paper.dataset == "ImageNet":
            measured = "not reproduced here: needs ImageNet and a GPU"
        else:
            measured = "not reproduced here: the full recipe needs a GPU (see Training)"
        tables.setdefault(entry.paper.dataset, []).append(
            [f"`{name}`", entry.provenance, f"{entry.paper.top1:.1f} % ({entry.paper.source})",
             measured])
    return "\n\n".join(
        f"**{dataset}**\n\n" + table(["model", "provenance", "paper top-1 (source)",
                                      "measured by this package"], rows)
        for dataset, rows in sorted(tables.items()))


def epoch_estimates(results):
    """Rows: model, recipe, step time, epoch estimate, full-recipe estimate (CIFAR models
    whose float32 and bfloat16 step times are stored)."""
    registry, recipes = _registry()
    policy = results.results("train_step_mixed_bfloat16")
    if not policy:
        return []
    rows = []
    steps = math.floor(CIFAR_TRAIN_IMAGES / 128)
    for name, row in policy["results"].items():
        entry = registry.model_entry(name)
        recipe = recipes.get_recipe(entry.recipe)
        epochs = sum(stage.epochs for stage in recipe.stages)
        cells = [f"`{name}`", f"`{recipe.name}` ({epochs} epochs)"]
        for key in ("float32_ms", "mixed_bfloat16_ms"):
            epoch_s = steps * row[key] / 1e3
            cells.append(f"{epoch_s / 60:.1f} min / {epoch_s * epochs / 3600:.0f} h")
        rows.append(cells)
    return rows


def render_training_time(results):
    rows = epoch_estimates(results)
    if not rows:
        return missing("python benchmarks/train_step.py --policy mixed_bfloat16")
    record = results["train_step_mixed_bfloat16"]
    return (table(["model", "recipe", "float32: epoch / full recipe", "bfloat16: epoch / full recipe"],
                  rows)
            + f"\n\nEstimated as {math.floor(CIFAR_TRAIN_IMAGES / 128)} steps per CIFAR-10 epoch times "
            f"the median training step measured on {hardware_note(record)} (batch 128, SGD, a "
            "repeated batch): the estimate leaves out the evaluation after each epoch, the input "
            "pipeline, Adam's and a distillation "
            "teacher's extra cost, and that step 1 of a two-step recipe trains real-valued "
            "kernels.")


def render_precision(results):
    bf16 = results.results("train_step_mixed_bfloat16")
    fp16 = results.results("train_step_mixed_float16")

    def ratios(result, policy):
        return [speedups(row, policy)[0] for row in result["results"].values()]

    def faster(result):
        if not result:
            return NOT_MEASURED
        values = sorted(ratios(result, "mixed_bfloat16"))
        span = f"{values[0]:.2f}" if len(values) == 1 else f"{values[0]:.2f}-{values[-1]:.2f}"
        return f"{span}x faster than float32 (measured)"

    def slower(result):
        if not result:
            return NOT_MEASURED
        values = sorted(1 / ratio for ratio in ratios(result, "mixed_float16"))
        span = f"{values[0]:.0f}" if len(values) == 1 else f"{values[0]:.0f}-{values[-1]:.0f}"
        return f"{span}x slower than float32 (measured: emulated float16)"

    rows = [["CPU with AVX512-BF16 or AMX (`avx512_bf16` / `amx_bf16` in /proc/cpuinfo)",
             "`--mixed-precision bfloat16`", faster(bf16)],
            ["CPU without them (e.g. AVX2 only)", "float32 (no flag)",
             f"bfloat16 is emulated there: slower than float32 ({NOT_MEASURED} by this package)"],
            ["any CPU", "never float16", slower(fp16)],
            ["NVIDIA GPU", "`--mixed-precision float16` (bfloat16 on Ampere or newer)",
             f"{NOT_MEASURED}: no GPU here"]]
    notes = sorted({hardware_note(results[name]) for name in
                    ("train_step_mixed_bfloat16", "train_step_mixed_float16") if results[name]})
    return table(["hardware", "use", "what it does to a training step"], rows) + (
        f"\n\nMeasured on {' and on '.join(notes)}." if notes else "")


def render_deployment(results):
    record = results["inference"]
    if not record:
        return missing("python benchmarks/inference.py --runs 30")
    sizes = {row["model"]: row for row in record["results"]["sizes"]}
    latency = {(row["model"], row["threads"]): row for row in record["results"]["latency"]}
    threads = sorted({row["threads"] for row in record["results"]["latency"]})
    rows = []
    for name, row in sizes.items():
        cells = [f"`{name}`", row.get("weights", "untrained"), f"{row['tflite_MiB']:.3f}",
                 f"{row['lce_bconv2d']}/{row['binary_convs']}"]
        for count in threads:
            timing = latency.get((name, count))
            cells.append(f"{timing['ratio_of_medians']:.2f}" if timing and
                         "ratio_of_medians" in timing else "-")
        rows.append(cells)
    header = (["model", "weights", "`.tflite` (MiB)", "LceBconv2d / binary convs"]
              + [f"x86 latency / Bi-Real Net's, {count} thread{'s' * (count > 1)}"
                 for count in threads])
    return table(header, rows) + (
        f"\n\nMeasured on {hardware_note(record)} in LCE's x86 interpreter (reference kernels), "
        f"{record['results']['environment']['runs']} interleaved rounds; ARM: {NOT_MEASURED}.")


BLOCKS = {
    "quickstart": render_quickstart,
    "models": render_models,
    "results-official": render_official_adabin,
    "results": render_results,
    "fixed-budget": render_fixed_budget,
    "training-time": render_training_time,
    "precision": render_precision,
    "deployment": render_deployment,
}


def render_blocks(text, results, path="README.md"):
    """``text`` with every generated block re-rendered."""
    def replace(match):
        name = match.group(2)
        if name not in BLOCKS:
            raise SystemExit(f"report.py: error: {path}: unknown generated block {name!r}; "
                             f"known: {', '.join(BLOCKS)}")
        return match.group(1) + BLOCKS[name](results).rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(replace, text)


def rendered(results, root=ROOT):
    """``{path: text}`` of every generated file under ``root`` as ``results`` render it."""
    readme = Path(root) / "README.md"
    return {Path(root) / "docs" / "benchmarks.md": render_benchmarks_md(results),
            readme: render_blocks(readme.read_text(), results)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare instead of writing; exit 1 if a file differs")
    parser.add_argument("--results", default=_results.RESULTS,
                        help="folder of the stored results (default: benchmarks/results)")
    parser.add_argument("--root", default=ROOT,
                        help="folder holding README.md and docs/ (default: this repository)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered(Results(args.results), args.root).items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale.append(os.path.relpath(path, args.root))
        if not args.check:
            path.write_text(text)
            print(f"wrote {stale[-1]}")
    if args.check and stale:
        print(f"report.py: {', '.join(stale)} differ from the stored results; run "
              "`python benchmarks/report.py` and commit the result", file=sys.stderr)
        return 1
    if not stale:
        print("docs are up to date with the stored results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
