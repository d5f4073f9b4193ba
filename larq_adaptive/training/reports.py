"""What train.py reports about a run: the memory summaries, the test-set results and the
last/best epochs of ``results.json``."""

from pathlib import Path

import numpy as np
import tensorflow as tf

import larq_adaptive as lqa
from larq_adaptive.callbacks import set_binary_weights

__all__ = ["epoch_records", "test_results", "write_summary"]


DEPLOYED = ("The network as deployed (the binary kernels of every stage on); "
            "stage_k/summary.txt shows what stage k trains.")


def write_summary(student, path, deployed=False, echo=False):
    """``lqa.summary`` of ``student`` into ``path`` (and stdout if ``echo``): as deployed
    (every two-step switch on) or in its current state (what the running stage trains)."""
    if deployed:
        set_binary_weights(student, True)
    lines = [DEPLOYED] if deployed else []
    lqa.summary(student, print_fn=lines.append)
    Path(path).write_text("\n".join(lines) + "\n")
    if echo:
        print("\n".join(lines))


def test_results(student, val_data, batch_size, recipe):
    """Accuracy and cross-entropy of ``student`` (the last epoch's weights) on the whole test
    set (in order, outside any distribution strategy) and, for CIFAR recipes, on its first ``floor(N / batch) * batch`` images: the official
    AdaBin and DWR test loaders drop the last partial batch (9,984 of 10,000 at batch 128)."""
    infer = tf.function(lambda images: student(images, training=False))
    outputs = [(infer(x).numpy(), y) for x, y in val_data.as_numpy_iterator()]
    logits = np.concatenate([x for x, _ in outputs]).astype(np.float64)
    labels = np.concatenate([y for _, y in outputs])
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    correct = logits.argmax(-1) == labels
    results = {"test_accuracy": float(correct.mean()),
               "test_loss": float(-log_probs[np.arange(len(labels)), labels].mean()),
               "test_images": len(labels)}
    kept = len(labels) // batch_size * batch_size
    if recipe.augmentation == "cifar" and 0 < kept < len(labels):
        results["test_accuracy_drop_last"] = {"images": kept, "accuracy": float(correct[:kept].mean())}
    return results


def epoch_records(stages, histories, validation_freq):
    """The last and the best epoch (highest validation accuracy) of the stages trained in
    this call; ``model.keras`` holds the last epoch's weights, ``stage_k/checkpoints/`` every
    epoch's. Keras validates the epochs ``e`` with ``e % validation_freq == 0``."""
    records = []
    for stage, history in zip(stages, histories):
        if not history:
            continue
        validated = [e for e in history["epoch"] if validation_freq and e % validation_freq == 0]
        for index, epoch in enumerate(history["epoch"]):
            record = {"stage": stage.name, "epoch": epoch}
            record.update({k: float(history[k][index]) for k in ("loss", "accuracy")
                           if index < len(history.get(k, []))})
            if epoch in validated:
                at = validated.index(epoch)
                record.update({k: float(history[k][at]) for k in ("val_loss", "val_accuracy")
                               if at < len(history.get(k, []))})
            records.append(record)
    if not records:
        return {}
    scored = [r for r in records if "val_accuracy" in r]
    return {"last_epoch": records[-1],
            "best_epoch": max(scored, key=lambda r: r["val_accuracy"]) if scored else None}
