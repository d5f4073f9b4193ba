"""``python train.py``: every registered model and recipe through ``model.fit``.

``main(argv)`` returns the exit status: 0 done, 1 training stopped on a NaN loss (the last
good checkpoint is kept), 2 bad input (one ``train.py: error: ...`` line on stderr).
"""

import argparse
import inspect
import json
import math
import shutil
import sys
import time
from pathlib import Path

import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive import export
from larq_adaptive.command_line import Parser
from larq_adaptive.keras2 import set_random_seed
from larq_adaptive.models import available_models, get_model, model_entry
from larq_adaptive.quantizers import SwitchableQuantizer
from larq_adaptive.introspect import iter_quantizers
from larq_adaptive.training import pipeline
from larq_adaptive.training.distillation import Distiller
from larq_adaptive.training.recipes import RECIPES, available_recipes, get_recipe, learning_rate
from larq_adaptive.training.stages import CoupledWeightDecay, NaNLoss, run_stages

PROG = "train.py"
DEFAULT_MODEL = "adabin_resnet20"
# The no-argument run (`make train`): short enough for < 5 minutes on 2 CPU cores.
DIGITS_DEFAULTS = {"epochs": 8, "batch_size": 64}
# Flags that do not change what is trained (may differ when resuming).
RUN_ONLY_FLAGS = ("resume", "overwrite", "verbose", "output_dir", "export_tflite")


class ExportIncomplete(Exception):
    """A binary convolution did not become an LceBconv2d."""


class UsageError(Exception):
    """Bad command-line input: reported in one line with exit status 2."""


def _listing():
    models = "\n".join(
        f"  {entry.name:<28} family={entry.family}, method={entry.method}, recipe={entry.recipe}"
        for entry in map(model_entry, available_models())
    )
    recipes = "\n".join(f"  {name:<28} {RECIPES[name].description}" for name in available_recipes())
    return f"models:\n{models or '  (none registered)'}\n\nrecipes:\n{recipes}"


def _pad_value(text):
    if text.strip() in ("0", "0.0", "1", "1.0"):
        return float(text)
    raise argparse.ArgumentTypeError(f"must be 0 or 1, got {text!r}")


def build_parser():
    parser = Parser(
        prog=PROG,
        description="Train a larq-adaptive model with its paper's recipe. Without arguments: "
        f"{DEFAULT_MODEL} on scikit-learn's digits (offline, a few minutes on a CPU).",
        epilog=_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", default=DEFAULT_MODEL, choices=available_models(), metavar="NAME",
        help="registered model (listed below)")
    pipeline.add_data_flags(parser)
    add("--recipe", choices=available_recipes(), metavar="RECIPE",
        help="training recipe (default: the model's own, listed below)")
    add("--method", help="builder's method knob for reactnet/dybnn/dwr models, e.g. ste_sign "
        "(larq's plain ste_sign), irnet (approx_sign inputs) or float")
    add("--pad-values", type=_pad_value, metavar="{0,1}",
        help="what binary convs pad their binarized input with: 0 (default, the official "
        "zero padding; needed to load official weights) or 1 (+1, larq convention: no border "
        "correction in LCE, for training from scratch)")
    add("--epochs", type=int, help="epochs of each stage (default: the recipe's)")
    add("--batch-size", type=int, help="global batch size (default: the recipe's)")
    add("--lr", type=float, help="base learning rate (default: the recipe's)")
    add("--optimizer", choices=("sgd", "adam"), help="default: the recipe's")
    add("--weight-decay", type=float,
        help="coupled L2 of every decaying stage (default: the recipe's; 0 stays 0)")
    add("--teacher", help="knowledge-distillation teacher: a saved .keras/.h5 model (e.g. the "
        "float twin trained with this script) or a registered model name")
    add("--output-dir", help="default: runs/<model>_<dataset>_<recipe>")
    add("--resume", action="store_true", help="continue the run in --output-dir (re-running "
        "the same command does the same)")
    add("--overwrite", action="store_true", help="delete an existing run in --output-dir")
    add("--seed", type=int, default=0)
    add("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    add("--mixed-precision", action="store_true", help="mixed_float16 with a float32 head")
    add("--steps-per-epoch", type=int, help="limit the steps of each epoch (smoke runs)")
    add("--validation-freq", type=int, default=1, help="validate every N epochs (0: never)")
    add("--verbose", type=int, choices=(0, 1, 2), default=1, help="1: progress bar")
    add("--export-tflite", metavar="PATH", help="after training, convert the model with "
        "larq-compute-engine to PATH and print which binary convs became LceBconv2d "
        "(exit 1 if one stayed float)")
    return parser


def resolve(args):
    """Fill recipe-dependent defaults; UsageError if the combination cannot work."""
    entry = model_entry(args.model)
    args.recipe = args.recipe or entry.recipe
    recipe = get_recipe(args.recipe)
    method = args.method or entry.method
    if not recipe.fits(method):
        raise UsageError(
            f"recipe {recipe.name!r} is for {'/'.join(recipe.methods)} networks, not "
            f"{args.model!r} with method {method}; its own recipe is {entry.recipe!r}"
        )
    defaults = DIGITS_DEFAULTS if args.dataset == "digits" and not args.data_dir else {}
    if args.epochs is None:
        args.epochs = defaults.get("epochs")
    if args.batch_size is None:
        args.batch_size = defaults.get("batch_size") or recipe.batch_size
    args.lr = args.lr if args.lr is not None else recipe.learning_rate
    args.optimizer = args.optimizer or recipe.optimizer
    for flag in ("epochs", "batch_size", "steps_per_epoch"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a finite number > 0, got {args.lr}")
    if args.weight_decay is not None and not (math.isfinite(args.weight_decay)
                                              and args.weight_decay >= 0):
        raise UsageError(f"--weight-decay must be a finite number >= 0, got {args.weight_decay}")
    for stage in stages_of(recipe, args):
        if not any(learning_rate(recipe.schedule, args.lr, e, stage.epochs) > 0
                   for e in range(stage.epochs)):
            raise UsageError(
                f"stage {stage.name} of recipe {recipe.name} would train {stage.epochs} epoch(s) "
                f"at learning rate 0 (its {recipe.schedule} schedule reaches 0 in the last "
                "epoch); pass --epochs 2 or more"
            )
    if args.output_dir is None:
        data = Path(args.data_dir).resolve().name if args.data_dir else args.dataset
        args.output_dir = str(Path("runs") / f"{args.model}_{data}_{args.recipe}")
    return recipe


def stages_of(recipe, args):
    stages = []
    for stage in recipe.stages:
        wd = stage.weight_decay
        if args.weight_decay is not None and wd > 0:
            wd = args.weight_decay
        stages.append(type(stage)(stage.name, args.epochs or stage.epochs, wd, stage.binary_weights))
    return stages


def prepare_output_dir(args):
    """Create the run folder with config.json; refuse different flags unless --overwrite."""
    out = Path(args.output_dir)
    config = {k: v for k, v in sorted(vars(args).items()) if k not in RUN_ONLY_FLAGS}
    config_file = out / "config.json"
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output-dir {out} is a file, not a folder")
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    if out.exists() and any(out.iterdir()):
        if not config_file.exists():
            raise UsageError(f"output dir {out} is not empty and holds no run; pass --overwrite "
                             "or another --output-dir")
        old = json.loads(config_file.read_text())
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
        if changed:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in changed)
            raise UsageError(f"output dir {out} holds a run with different flags ({diff}); "
                             "pass --overwrite or another --output-dir")
        return True
    if args.resume:
        raise UsageError(f"--resume: no run to resume in {out}")
    try:
        out.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(config, indent=2) + "\n")
    except OSError as error:
        raise UsageError(f"cannot create --output-dir {out}: {error.strerror or error}") from None
    return False


# What a start that failed before training leaves in a new run folder.
SETUP_FILES = {"config.json", "summary.txt"}


def _remove_failed_start(out):
    """Remove a run folder that this call created and that holds nothing but setup files,
    so that the corrected command is not refused; never touches a folder with training
    output."""
    if out.is_dir() and {p.name for p in out.iterdir()} <= SETUP_FILES:
        shutil.rmtree(out)


def make_strategy(name):
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def build_student(args, recipe, num_classes):
    entry = model_entry(args.model)
    kwargs = {"input_shape": entry.input_shape, "num_classes": num_classes, "weights": None}
    accepted = inspect.signature(entry.builder).parameters
    if "binary_weights" in accepted:
        kwargs["binary_weights"] = not recipe.two_step
    if args.method is not None:
        if "method" not in accepted:
            raise UsageError(f"--method: {args.model!r} has no method argument")
        kwargs["method"] = args.method
    if args.pad_values is not None:
        if "pad_values" not in accepted:
            raise UsageError(f"--pad-values: {args.model!r} has no pad_values argument")
        kwargs["pad_values"] = args.pad_values
    try:
        model = get_model(args.model, **kwargs)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if recipe.two_step and not any(iter_quantizers(model, SwitchableQuantizer)):
        raise UsageError(f"recipe {recipe.name!r} trains in two steps, but {args.model!r} has no "
                         "switchable binary kernels (builder argument binary_weights=False)")
    return model


def load_teacher(spec, num_classes, log):
    if spec is None:
        return None
    if Path(spec).exists():
        try:
            teacher = lqa.load_model(spec, compile=False)
        except Exception as error:  # corrupt or foreign file
            raise UsageError(f"cannot load teacher {spec}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}") from None
    elif spec in available_models():
        log(f"note: teacher {spec!r} is built untrained (no download here); train it first and "
            "pass its model.keras for real distillation")
        entry = model_entry(spec)
        teacher = get_model(spec, input_shape=entry.input_shape, num_classes=num_classes)
    else:
        raise UsageError(f"--teacher {spec!r} is neither a file nor a registered model")
    classes = teacher.output_shape[-1]
    if classes != num_classes:
        raise UsageError(f"mismatched classes: teacher {spec} predicts {classes} classes, the "
                         f"data has {num_classes}")
    return teacher


def _tee(path):
    handle = open(path, "w")

    def write(line=""):
        print(line)
        handle.write(line + "\n")
        handle.flush()

    return write, handle


def run(args, extra_callbacks=()):
    """Train as ``args`` (parsed flags) say; returns the results dict. Raises UsageError,
    pipeline.DataError or NaNLoss."""
    recipe = resolve(args)
    stages = stages_of(recipe, args)
    resumed = prepare_output_dir(args)
    out = Path(args.output_dir)
    log = print
    log(f"{'resuming' if resumed else 'starting'} run in {out}: model {args.model}, recipe "
        f"{recipe.name}, dataset {args.data_dir or args.dataset}")
    tf.keras.backend.clear_session()
    set_random_seed(args.seed)
    policy = tf.keras.mixed_precision.global_policy()
    if args.mixed_precision:
        tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        return _run(args, recipe, stages, out, log, extra_callbacks)
    except (UsageError, pipeline.DataError):  # raised while setting up, before any epoch
        if not resumed:
            _remove_failed_start(out)
        raise
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)


def _run(args, recipe, stages, out, log, extra_callbacks):
    entry = model_entry(args.model)
    image_size = entry.input_shape[:2]
    strategy = make_strategy(args.strategy)
    log(f"strategy: {type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)")
    if args.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(f"--batch-size {args.batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    train_source, val_source = pipeline.load_sources(
        args.dataset, args.data_dir, args.val_data_dir, args.tfds_data_dir, image_size, args.seed
    )
    num_classes = train_source.num_classes
    if len(train_source) < args.batch_size and not args.steps_per_epoch:
        raise UsageError(f"only {len(train_source)} training images for batch size "
                         f"{args.batch_size}")
    common = dict(preprocessing=entry.preprocessing, image_size=image_size,
                  augmentation=recipe.augmentation, flip=args.dataset != "digits" or
                  bool(args.data_dir), seed=args.seed)
    train_data = pipeline.make_dataset(train_source, batch_size=args.batch_size, training=True,
                                       repeat=args.steps_per_epoch is not None, **common)
    val_data = pipeline.make_dataset(val_source, batch_size=args.batch_size, training=False,
                                     **common)
    use_kd = args.teacher is not None
    if recipe.loss == "kd" and not use_kd:
        log(f"note: recipe {recipe.name} distils from a teacher; without --teacher it trains "
            "on hard labels (cross-entropy)")
    with strategy.scope():
        student = build_student(args, recipe, num_classes)
        teacher = load_teacher(args.teacher, num_classes, log)
        model = Distiller(student, teacher, name="distiller") if use_kd else student
        decay = CoupledWeightDecay(student, recipe.decay)
    write, handle = _tee(out / "summary.txt")
    try:
        lqa.summary(student, print_fn=write)
    finally:
        handle.close()
    plan = {
        "optimizer": args.optimizer, "lr": args.lr, "schedule": recipe.schedule,
        "ede": recipe.ede,
        "loss": tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "weight_decay": decay, "steps_per_epoch": args.steps_per_epoch,
        "validation_freq": args.validation_freq or None, "verbose": args.verbose,
    }
    if not args.validation_freq:
        plan["validation_freq"], val_for_fit = 1, None
    else:
        val_for_fit = val_data
    start = time.time()
    histories = run_stages(model, student, stages, plan, out, strategy, train_data, val_for_fit,
                           log=log, extra_callbacks=extra_callbacks)
    with strategy.scope():
        student.compile(loss=plan["loss"],
                        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    loss, accuracy = student.evaluate(val_data, verbose=0)
    student.save(out / "model.keras")
    results = {"test_accuracy": float(accuracy), "test_loss": float(loss),
               "test_images": len(val_source), "train_seconds": round(time.time() - start, 1),
               "stages": [s.name for s in stages], "histories": histories}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    log(f"test accuracy: {accuracy:.4f} ({len(val_source)} images); model saved to "
        f"{out / 'model.keras'}")
    if args.export_tflite:
        report = export.to_tflite(student, args.export_tflite)
        log(report.table())
        results["export_ok"] = report.ok
        if not report.ok:
            raise ExportIncomplete(f"binary convs left float in {args.export_tflite}: "
                                   f"{', '.join(report.float_convs)}")
    return results


def main(argv=None, extra_callbacks=()):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args, extra_callbacks)
    except (UsageError, pipeline.DataError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except (NaNLoss, ExportIncomplete) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0
