"""``larq-adaptive-dwr-search`` (``python -m larq_adaptive.training.dwr_cli``): the DWR
pipeline as a command.

1. :func:`~larq_adaptive.models.dwr_search.reshape` the backbone by ``--s``;
2. pre-train the naive model briefly with a recipe (default: the DWR model's own, e.g.
   ``dwr_cifar``: SGD 0.1, cosine per epoch, coupled weight decay 1e-4 on all parameters) on
   any data ``train.py`` reads (digits, ``.npz`` shards, class folders, tfds);
3. :func:`~larq_adaptive.models.dwr_search.search_widths` on validation images;

and print the final widths per stage with the binary MACs and activations against the
original backbone. The final model is then trained from scratch with ``train.py``'s builders
(``get_model("dwr_resnet20", widths=..., blocks=...)``). Bad input: one line on stderr,
exit status 2.
"""

import math
import os
import sys
import time

import numpy as np
import tensorflow as tf

from larq_adaptive.command_line import Parser
from larq_adaptive.keras2 import set_random_seed
from larq_adaptive.models import available_models, get_model, model_entry
from larq_adaptive.models.dwr_search import BACKBONES, final_backbone, reshape, search_widths
from larq_adaptive.training import pipeline
from larq_adaptive.training.recipes import available_recipes, get_recipe, learning_rate
from larq_adaptive.training.stages import CoupledWeightDecay, make_optimizer

PROG = "larq-adaptive-dwr-search"


def build_parser():
    parser = Parser(prog=PROG, description="DWR: naive reshaping -> short pre-training -> "
                     "cluster-based width search.")
    add = parser.add_argument
    add("--backbone", required=True, help=f"one of {', '.join(BACKBONES)}")
    add("--s", type=float, required=True, help="depth reduction factor (>= 1)")
    add("--width-multiplier", type=float,
        help="naive model width factor (default sqrt(s); DWR prunes a wider one)")
    add("--method", default="irnet", choices=("irnet", "reactnet", "dybnn", "ste_sign"))
    pipeline.add_data_flags(parser, val_help="search images, same formats as --data-dir "
                            "(default: a 10%% holdout)")
    add("--recipe", choices=available_recipes(), metavar="RECIPE",
        help="pre-training recipe (default: the DWR model's own)")
    add("--epochs", type=int, default=2, help="pre-training epochs (0: none)")
    add("--steps-per-epoch", type=int, help="default: one pass over the data")
    add("--batch-size", type=int, default=128)
    add("--lr", type=float, help="base learning rate (default: the recipe's)")
    add("--images", type=int, default=400, help="number of search images")
    add("--eps", type=float, default=0.021, help="DBSCAN cosine eps")
    add("--min-samples", type=int, default=5)
    add("--layers", nargs="+", help="hooked layer names (default: last per stage)")
    add("--weights", help="start from these naive-model weights (Keras file)")
    add("--save-weights", help="save the pre-trained naive model here (.h5)")
    add("--seed", type=int, default=0)
    return parser


def _check_args(parser, args):
    if args.backbone not in BACKBONES:
        parser.error(f"unknown backbone {args.backbone!r} (choose from {', '.join(BACKBONES)})")
    for option, value in (("--s", args.s), ("--width-multiplier", args.width_multiplier),
                          ("--lr", args.lr), ("--eps", args.eps)):
        if value is not None and not math.isfinite(value):
            parser.error(f"{option} must be a finite number, got {value}")
    if not args.s >= 1:
        parser.error(f"--s must be >= 1, got {args.s:g}")
    for option, value in (("--width-multiplier", args.width_multiplier), ("--lr", args.lr),
                          ("--eps", args.eps)):
        if value is not None and not value > 0:
            parser.error(f"{option} must be > 0, got {value:g}")
    if args.epochs < 0:
        parser.error(f"--epochs must be >= 0, got {args.epochs}")
    for option, value in (("--steps-per-epoch", args.steps_per_epoch),
                          ("--batch-size", args.batch_size), ("--images", args.images),
                          ("--min-samples", args.min_samples)):
        if value is not None and value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    for option, path in (("--data-dir", args.data_dir), ("--val-data-dir", args.val_data_dir),
                         ("--weights", args.weights)):
        if path is not None and not os.path.exists(path):
            parser.error(f"{option} {path!r} does not exist")


def pretrain(model, train_source, recipe, *, lr, epochs, steps_per_epoch, batch_size,
             preprocessing, seed=0, verbose=2):
    """The short pre-training of the naive model with ``recipe``'s optimizer, per-epoch
    learning-rate schedule, augmentation and (first-stage) coupled weight decay, through
    ``model.fit`` on :func:`larq_adaptive.training.pipeline.make_dataset`."""
    decay = CoupledWeightDecay(model, recipe.decay)
    decay.coefficient.assign(recipe.stages[0].weight_decay)
    model.compile(
        optimizer=make_optimizer(recipe.optimizer, lr),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    data = pipeline.make_dataset(
        train_source, image_size=model.input_shape[1:3],
        batch_size=min(batch_size, len(train_source)), training=True,
        preprocessing=preprocessing, augmentation=recipe.augmentation, seed=seed, repeat=True,
    )
    steps_per_epoch = steps_per_epoch or len(train_source) // min(batch_size, len(train_source))
    schedule = tf.keras.callbacks.LearningRateScheduler(
        lambda epoch: learning_rate(recipe.schedule, lr, epoch, epochs)
    )
    return model.fit(data, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose,
                     callbacks=[schedule])


def search_batch(source, count, image_size, preprocessing, seed):
    """(preprocessed images, labels) of ``count`` images drawn from ``source`` with ``seed``."""
    if source.labels is not None:
        chosen = np.sort(np.random.default_rng(seed).choice(
            len(source), min(count, len(source)), replace=False))
        source = source.take(chosen)
    else:
        source = pipeline.Source("tfds", None, None, source.num_classes,
                                 source.dataset.shuffle(10_000, seed=seed).take(count))
    data = pipeline.make_dataset(source, image_size=image_size, batch_size=100, training=False,
                                 preprocessing=preprocessing)
    batches = list(data.take(-(-count // 100)).as_numpy_iterator())
    return (np.concatenate([x for x, _ in batches])[:count],
            np.concatenate([y for _, y in batches])[:count])


def _cost_line(label, backbone, reference):
    macs, acts = backbone.binary_macs, backbone.binary_activations
    return (f"{label:<22} blocks {list(backbone.blocks)} widths {list(backbone.widths)}: "
            f"{backbone.num_binary_convs} binary convs, "
            f"{macs / 1e6:.1f} M binary MACs (x{macs / reference.binary_macs:.2f}), "
            f"{acts / 1e3:.1f} K binary-conv input activations "
            f"(/{reference.binary_activations / acts:.2f})")


def main(argv=None):
    """Reshape -> pre-train -> search; prints the final widths per stage and the binary MACs /
    activations against the original backbone. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    base = BACKBONES[args.backbone]
    try:
        model_name = base.model_name(args.method)
        if model_name not in available_models():
            raise ValueError(f"model {model_name!r} is not registered")
        entry = model_entry(model_name)
        recipe = get_recipe(args.recipe or entry.recipe)
        train_source, val_source = pipeline.load_sources(
            args.dataset, args.data_dir, args.val_data_dir, args.tfds_data_dir,
            entry.input_shape[:2], args.seed, skip_corrupt=args.skip_corrupt)
    except (ValueError, pipeline.DataError) as error:
        parser.error(str(error))
    lr = args.lr if args.lr is not None else recipe.learning_rate

    set_random_seed(args.seed)
    naive = reshape(base, args.s, args.width_multiplier)
    print(f"DWR {args.backbone} s={args.s:g} width multiplier {naive.width_multiplier:.3g} "
          f"method {args.method} -> {model_name}, pre-training recipe {recipe.name}")
    print(_cost_line("original", base, base))
    print(_cost_line("naive reshaped", naive.backbone, base))

    started = time.time()
    try:
        model = get_model(
            model_name, widths=list(naive.widths), blocks=list(naive.blocks), weights=args.weights,
            method=args.method, num_classes=train_source.num_classes,
        )
    except ValueError as error:
        parser.error(f"cannot build {model_name}: {error}")
    if args.epochs:
        pretrain(model, train_source, recipe, lr=lr, epochs=args.epochs,
                 steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size,
                 preprocessing=entry.preprocessing, seed=args.seed)
    if args.save_weights:
        model.save_weights(args.save_weights)
    trained = time.time()

    images, labels = search_batch(val_source, args.images, entry.input_shape[:2],
                                  entry.preprocessing, args.seed)
    try:
        results = search_widths(model, images, eps=args.eps, min_samples=args.min_samples,
                                layers=args.layers)
    except ValueError as error:
        parser.error(str(error))
    searched = time.time()

    predictions = np.argmax(model.predict(images, batch_size=100, verbose=0), axis=-1)
    print(f"naive model after pre-training: top-1 {np.mean(predictions == labels):.1%} on the "
          "search images")
    print(f"width search on {len(images)} images, DBSCAN(cosine, eps={args.eps:g}, "
          f"min_samples={args.min_samples}):")
    for result in results:
        stage = f"stage {result.stage}" if result.stage is not None else "layer"
        low, median = np.min(result.core_eps), np.median(result.core_eps)
        print(f"  {stage} {result.layer}: {result.channels} -> {result.width} channels "
              f"({result.clusters} clusters + {result.noise} noise); core eps min {low:.3g}, "
              f"median {median:.3g}")
    print(f"final widths: {[result.width for result in results]}")
    final = final_backbone(naive.backbone, results)
    if final is not None:
        print(_cost_line("final", final, base))
    else:
        print("final cost: the hooked layers are not one per stage; not computed")
    print(f"wall time: pre-training {trained - started:.0f} s, search {searched - trained:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
