"""``tf.distribute`` for train.py: the strategy of ``--strategy``, which process writes, and
how every data source is sharded across workers (docs/distributed.md)."""

import tensorflow as tf

__all__ = ["is_chief", "make_strategy", "shard_by_data"]


def make_strategy(name):
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy):
    """True unless ``strategy`` is a multi-worker strategy and this process is not its chief
    (the ``chief`` task, or worker 0 of a cluster without one): only the chief writes."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task_type = getattr(resolver, "task_type", None)
    if not task_type or task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and resolver.task_id == 0 and not has_chief


def shard_by_data(dataset):
    """Multi-worker sharding of any source (in-memory arrays, image files, tfds records):
    every worker runs the same seeded pipeline and keeps its own slice of each global batch
    (``AutoShardPolicy.DATA``), so each example is seen once per epoch across workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)
