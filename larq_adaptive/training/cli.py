"""``python train.py``: every registered model and recipe through ``model.fit``.

``main(argv)`` returns the exit status: 0 done, 1 training stopped on a NaN/inf loss or weight
(the last good checkpoint is kept) or by a failed worker of a multi-worker run, 2 bad input
(one ``train.py: error: ...`` line on stderr), 143 / 130 stopped by SIGTERM / SIGINT (the
finished epochs are kept: re-run to continue).
"""

import argparse
import inspect
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive import export
from larq_adaptive.callbacks import Stopped
from larq_adaptive.command_line import Parser
from larq_adaptive.keras2 import set_random_seed
from larq_adaptive.models import available_models, get_model, model_entry
from larq_adaptive.quantizers import SwitchableQuantizer
from larq_adaptive.saving import read_metadata, replace_atomically, save_model
from larq_adaptive.introspect import iter_quantizers
from larq_adaptive.training import pipeline, runtime
from larq_adaptive.training.distribute import is_chief, make_strategy, shard_by_data
from larq_adaptive.training.reports import epoch_records, test_results, write_summary
from larq_adaptive.training.distillation import Distiller
from larq_adaptive.training.recipes import RECIPES, available_recipes, get_recipe, learning_rate
from larq_adaptive.training.stages import CoupledWeightDecay, NaNLoss, run_stages

PROG = "train.py"
DEFAULT_MODEL = "adabin_resnet20"
# The no-argument run (`make train`): short enough for < 5 minutes on 2 CPU cores.
DIGITS_DEFAULTS = {"epochs": 8, "batch_size": 64}
# Flags that do not change what is trained (may differ when resuming).
RUN_ONLY_FLAGS = ("resume", "overwrite", "verbose", "output_dir", "export_tflite",
                  "keep_checkpoints", "threads", "inter_op_threads")
SIGNAL_EXIT = {"SIGTERM": 143, "SIGINT": 130}  # 128 + signal number, as a shell reports it


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
    add("--teacher", help="knowledge-distillation teacher: a model.keras saved by this script "
        "(e.g. the float twin's; it records its preprocessing) or a registered model name; "
        "its input size and preprocessing must match the student's")
    add("--force-teacher", action="store_true", help="use --teacher although its input size "
        "or recorded preprocessing differs from the student's or is not recorded (a different "
        "size: the teacher sees the batch resized)")
    add("--output-dir", help="default: runs/<model>_<dataset>_<recipe>")
    add("--keep-checkpoints", type=int, default=2, metavar="N",
        help="per stage, keep the weights of the last N finished epochs plus the best one by "
        "validation accuracy (0: every epoch; default 2)")
    add("--resume", action="store_true", help="continue the run in --output-dir (re-running "
        "the same command does the same)")
    add("--overwrite", action="store_true", help="delete an existing run in --output-dir")
    add("--seed", type=int, default=0)
    add("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    add("--mixed-precision", nargs="?", const="float16", choices=tuple(runtime.POLICIES),
        help="train under Keras' mixed_float16 or mixed_bfloat16 policy (bare flag: float16): "
        "convolutions and activations in 16 bits, variables, quantizer statistics, the head "
        "and the loss in float32. bfloat16 pays off on CPUs with AVX512-BF16 or AMX only "
        "(a note says so on others)")
    add("--threads", type=int, metavar="N", help="TensorFlow intra-op threads (default or "
        "0: TensorFlow's, one per core; benchmarks/threads.py times the alternatives)")
    add("--inter-op-threads", type=int, metavar="N", help="TensorFlow inter-op threads "
        "(default or 0: TensorFlow's, one per core)")
    add("--steps-per-epoch", type=int, help="limit the steps of each epoch (smoke runs)")
    add("--validation-freq", type=int, default=1, help="validate every N epochs (0: never)")
    add("--verbose", type=int, choices=(0, 1, 2), default=1, help="1: progress bar")
    add("--export-tflite", metavar="PATH", help="after training, convert the model with "
        "larq-compute-engine to PATH and print which binary convs became LceBconv2d "
        "(exit 1 if one stayed float)")
    return parser


def recipe_mismatch(recipe, model, method, chosen):
    """The one line for a recipe that cannot train ``model`` binarized with ``method``: what
    does not fit and the recipes that do (those of the same augmentation first)."""
    fitting = [name for name in available_recipes()
               if get_recipe(name).fits(method) and get_recipe(name).methods]
    fitting.sort(key=lambda name: get_recipe(name).augmentation != recipe.augmentation)
    which = f"--recipe {recipe.name}" if chosen else f"{model}'s recipe {recipe.name!r}"
    return (f"{which} is for {'/'.join(recipe.methods)} networks, not method {method!r}; "
            f"pass one for {method} networks: --recipe {' or '.join(fitting[:3])}")


def resolve(args):
    """Fill recipe-dependent defaults; UsageError if the combination cannot work."""
    entry = model_entry(args.model)
    args.recipe = args.recipe or entry.recipe
    recipe = get_recipe(args.recipe)
    method = args.method or entry.method
    if not recipe.fits(method):
        raise UsageError(recipe_mismatch(recipe, args.model, method, chosen=args.recipe
                                         != entry.recipe))
    defaults = DIGITS_DEFAULTS if args.dataset == "digits" and not args.data_dir else {}
    if args.epochs is None:
        args.epochs = defaults.get("epochs")
    if args.batch_size is None:
        args.batch_size = defaults.get("batch_size") or recipe.batch_size
    args.lr = args.lr if args.lr is not None else recipe.learning_rate
    args.optimizer = args.optimizer or recipe.optimizer
    for flag in ("keep_checkpoints", "threads", "inter_op_threads"):
        value = getattr(args, flag)
        if value is not None and value < 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {value}")
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
        if isinstance(old.get("mixed_precision"), bool):  # runs of 0.x: a bare switch
            old["mixed_precision"] = "float16" if old["mixed_precision"] else None
        changed = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k)
                         and (k in old or config[k]))  # a flag added since: default is same
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


def load_teacher(args, num_classes, log):
    """The frozen ``--teacher``: a registered model (built untrained) or a model file. It must
    predict ``num_classes`` classes and expect the student's input size and preprocessing
    (recorded in a ``.keras`` saved by train.py / :func:`larq_adaptive.saving.save_model`);
    ``--force-teacher`` accepts a different or unrecorded preprocessing and a different input
    size (the teacher then sees the batch resized to its own size)."""
    spec, student = args.teacher, model_entry(args.model)
    if spec is None:
        return None
    if Path(spec).exists():
        try:
            teacher = lqa.load_model(spec, compile=False)
        except Exception as error:  # corrupt or foreign file
            raise UsageError(f"cannot load teacher {spec}: {type(error).__name__}: "
                             f"{str(error).splitlines()[0] if str(error) else ''}") from None
        preprocessing = read_metadata(spec).get("preprocessing")
    elif spec in available_models():
        log(f"note: teacher {spec!r} is built untrained (no download here); train it first and "
            "pass its model.keras for real distillation")
        entry = model_entry(spec)
        teacher = get_model(spec, input_shape=entry.input_shape, num_classes=num_classes)
        preprocessing = entry.preprocessing
    else:
        raise UsageError(f"--teacher {spec!r} is neither a file nor a registered model")
    classes = teacher.output_shape[-1]
    if classes != num_classes:
        raise UsageError(f"mismatched classes: teacher {spec} predicts {classes} classes, the "
                         f"data has {num_classes}")
    shape = tuple(teacher.input_shape[1:])
    if len(shape) != 3 or shape[-1] != student.input_shape[-1]:
        raise UsageError(f"teacher {spec} takes inputs of shape {shape}, the student "
                         f"{student.input_shape}: a teacher needs images with as many channels")
    problems = []
    if shape != tuple(student.input_shape):
        problems.append(f"input size {shape[:2]} (student: {tuple(student.input_shape[:2])})")
    if preprocessing is None:
        problems.append("no recorded preprocessing (not saved by train.py)")
    elif preprocessing != student.preprocessing:
        problems.append(f"preprocessing {preprocessing!r} (student: {student.preprocessing!r})")
    if problems and not args.force_teacher:
        raise UsageError(f"teacher {spec} has {' and '.join(problems)}; it would see inputs "
                         "unlike its training data. Pass --force-teacher to use it anyway")
    for problem in problems:
        log(f"note: --force-teacher: teacher {spec} has {problem}")
    return teacher


def run(args, extra_callbacks=()):
    """Train as ``args`` (parsed flags) say; returns the results dict. Raises UsageError,
    pipeline.DataError or NaNLoss."""
    recipe = resolve(args)
    stages = stages_of(recipe, args)
    if not runtime.set_threads(args.threads, args.inter_op_threads):
        print("note: --threads/--inter-op-threads ignored: TensorFlow was already running")
    strategy = make_strategy(args.strategy)  # first: collective ops are set up at startup
    out = Path(args.output_dir)
    chief = is_chief(strategy)
    if chief:
        resumed, write_dir = prepare_output_dir(args), out
    else:  # reads the chief's run (finished stages, backup), writes to a temporary folder
        resumed = (out / "config.json").exists()
        write_dir = Path(tempfile.mkdtemp(prefix="larq-adaptive-worker-"))
    log = print
    log(f"{'resuming' if resumed else 'starting'} run in {out}: model {args.model}, recipe "
        f"{recipe.name}, dataset {args.data_dir or args.dataset}"
        f"{'' if chief else f' (non-chief worker: writing to {write_dir})'}")
    tf.keras.backend.clear_session()
    set_random_seed(args.seed)
    policy = tf.keras.mixed_precision.global_policy()
    if args.mixed_precision:
        tf.keras.mixed_precision.set_global_policy(runtime.POLICIES[args.mixed_precision])
        note = runtime.bfloat16_note() if args.mixed_precision == "bfloat16" else None
        if note:
            log(note)
    try:
        return _run(args, recipe, stages, strategy, out, write_dir, log, extra_callbacks)
    except (UsageError, pipeline.DataError):  # raised while setting up, before any epoch
        if chief and not resumed:
            _remove_failed_start(out)
        raise
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
        if not chief:
            shutil.rmtree(write_dir, ignore_errors=True)


def _run(args, recipe, stages, strategy, out, write_dir, log, extra_callbacks):
    entry = model_entry(args.model)
    image_size = entry.input_shape[:2]
    name = ("MultiWorkerMirroredStrategy" if isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy) else type(strategy).__name__)
    log(f"strategy: {name}, {strategy.num_replicas_in_sync} replica(s)")
    if args.batch_size % strategy.num_replicas_in_sync:
        raise UsageError(f"--batch-size {args.batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas")
    train_source, val_source = pipeline.load_sources(
        args.dataset, args.data_dir, args.val_data_dir, args.tfds_data_dir, image_size, args.seed,
        skip_corrupt=args.skip_corrupt, log=log)
    train_source = pipeline.decoded_in_memory(train_source, log=log)
    num_classes = train_source.num_classes
    if len(train_source) < args.batch_size and not args.steps_per_epoch:
        raise UsageError(f"only {len(train_source)} training images for batch size "
                         f"{args.batch_size}")
    common = dict(preprocessing=entry.preprocessing, image_size=image_size,
                  augmentation=recipe.augmentation, flip=args.dataset != "digits" or
                  bool(args.data_dir), seed=args.seed)
    steps_per_epoch = args.steps_per_epoch or len(train_source) // args.batch_size

    def train_data(steps_done):
        """The training stream from the step after ``steps_done``: a resumed stage sees
        exactly the batches an uninterrupted one would (same seed)."""
        data = pipeline.make_dataset(train_source, batch_size=args.batch_size, training=True,
                                     repeat=True, start_step=steps_done, **common)
        return shard_by_data(data) if multiworker else data

    val_data = pipeline.make_dataset(val_source, batch_size=args.batch_size, training=False,
                                     **common)
    multiworker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    use_kd = args.teacher is not None
    if recipe.loss == "kd" and not use_kd:
        log(f"note: recipe {recipe.name} distils from a teacher; without --teacher it trains "
            "on hard labels (cross-entropy)")
    with strategy.scope():
        student = build_student(args, recipe, num_classes)
        teacher = load_teacher(args, num_classes, log)
        model = Distiller(student, teacher, name="distiller") if use_kd else student
        decay = CoupledWeightDecay(student, recipe.decay)
    write_summary(student, write_dir / "summary.txt", deployed=True, echo=True)
    plan = {
        "optimizer": args.optimizer, "lr": args.lr, "schedule": recipe.schedule,
        "ede": recipe.ede,
        "loss": tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "weight_decay": decay, "steps_per_epoch": steps_per_epoch,
        "validation_freq": args.validation_freq or None, "verbose": args.verbose,
        "keep_checkpoints": args.keep_checkpoints, "mid_epoch_backup": not multiworker,
        "describe": lambda stage_dir: write_summary(student, stage_dir / "summary.txt"),
    }
    if not args.validation_freq:
        plan["validation_freq"], val_for_fit = 1, None
    else:
        val_for_fit = shard_by_data(val_data) if multiworker else val_data
    start = time.time()
    histories = run_stages(model, student, stages, plan, out, strategy, train_data, val_for_fit,
                           log=log, extra_callbacks=extra_callbacks, write_dir=write_dir)
    save_model(student, write_dir / "model.keras", model_name=args.model,
               preprocessing=entry.preprocessing)
    validation_freq = plan["validation_freq"] if val_for_fit else 0
    results = {**test_results(student, val_data, args.batch_size, recipe),
               "train_seconds": round(time.time() - start, 1),
               "stages": [s.name for s in stages],
               **epoch_records(stages, histories, validation_freq), "histories": histories}
    accuracy = results["test_accuracy"]
    text = json.dumps(results, indent=2, default=float) + "\n"
    replace_atomically(lambda tmp: Path(tmp).write_text(text), write_dir / "results.json")
    log(f"test accuracy: {accuracy:.4f} ({len(val_source)} images); model saved to "
        f"{out / 'model.keras'}")
    if args.export_tflite and write_dir == out:  # the chief exports
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
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        first = str(error.message).strip().splitlines()[0] if error.message else ""
        print(f"{PROG}: a process of the distributed run failed ({type(error).__name__}: "
              f"{first[:200]}); restart every worker with the same command to continue from "
              "the last finished epoch", file=sys.stderr)
        return 1
    except Stopped as error:
        print(f"{PROG}: {error}; the finished epochs are saved: run the same command again "
              "to continue", file=sys.stderr)
        return SIGNAL_EXIT[error.signal_name]
    return 0
