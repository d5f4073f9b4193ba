"""One training step as ``model.fit`` runs it, for the benchmarks that time steps.

``model.train_on_batch`` makes a new tf.data iterator for every call, and every iterator
starts tf.data's autotuning thread, which waits 20, 40, 80, 160, ... ms between its checks.
When the step ends while that thread waits, the call returns only at the thread's next
wake-up, about 20 (2^k - 1) ms after the step began: ResNet-20 steps came out at ~310 or
~630 ms whatever their own time, the large DWR models' at ~2550 or ~5120 ms (found with
strace and gdb, and gone with autotuning off).
``model.fit`` makes one iterator per epoch, so its steps never wait for it. :func:`fit_step`
does the same: one iterator over the repeated batch, and the model's own train function,
called as ``fit`` calls it, with the metrics reset before each step as ``train_on_batch``
resets them, so the logs are the step's own (``fit``'s are means over the epoch so far).
"""

import tensorflow as tf


def fit_step(model, x, y):
    """A no-argument callable that runs one training step of the compiled ``model`` on
    ``(x, y)`` and returns its logs as numbers."""
    iterator = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    train_function = model.make_train_function()

    def step():
        model.reset_metrics()
        return {name: value.numpy() for name, value in train_function(iterator).items()}

    return step
