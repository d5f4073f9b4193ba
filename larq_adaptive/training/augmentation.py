"""Training augmentation that depends only on the example's place in the training stream.

Every random choice (the shuffle of each epoch, each image's crop and flip) is drawn from a
*stateless* seed: the permutation of epoch ``e`` from ``(seed, e)``, the crop and flip of the
example at index ``i`` in epoch ``e`` from ``(seed, e * N + i)``. So the stream is a pure
function of the seed and the position in it:

- a run resumed at step ``k`` (after ``kill -9``, SIGTERM or a crash) skips ``k`` batches of
  indices and sees exactly the batches an uninterrupted run sees;
- the workers of a multi-worker run, each running the whole pipeline and keeping its slice of
  every global batch, and one process with several replicas build the same global batches,
  pixel for pixel, however the batch is split (a stateful random generator per batch would
  not: its draws depend on how many images each call sees).

CIFAR style: the uint8 image padded with 4 black pixels, a random crop back to the input size,
a horizontal flip (the official loaders' ``RandomCrop(32, padding=4)`` +
``RandomHorizontalFlip``). ImageNet style: a random crop of 8-100 % of the area with aspect
ratio 3/4-4/3 resized to the input size (``RandomResizedCrop``), then the flip.
"""

import tensorflow as tf

__all__ = ["augment", "epoch_order"]

EPOCHS = 1 << 30  # "forever": the training stream is cut by steps_per_epoch x epochs


def epoch_order(size, batch_size, seed, repeat):
    """(index, per-example seed) of the training stream over ``size`` examples: epoch ``e``
    is a permutation of ``range(size)`` drawn from ``(seed, e)``, cut to whole batches (the
    official loaders' ``drop_last``); every epoch if ``repeat``, else epoch 0 only."""
    seed = tf.constant(seed, tf.int64)
    kept = size // batch_size * batch_size or size  # fewer than a batch: batches span epochs

    def epoch(e):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(size, dtype=tf.int64), seed=tf.stack([seed, e]))[:kept]
        return tf.data.Dataset.from_tensor_slices(order).map(
            lambda i: (i, tf.stack([seed, e * size + i])))

    return tf.data.Dataset.range(EPOCHS if repeat else 1).flat_map(epoch)


def augment(image, example_seed, size, style="cifar", flip=True):
    """One decoded training image (HWC, 0-255) -> float32 ``size`` + (3,), its random crop
    and flip drawn from ``example_seed`` (shape (2,) int64)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(example_seed, 2))
    image = tf.cast(image, tf.float32)
    height, width = size
    if style == "imagenet":
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(image), tf.zeros((1, 0, 4)), seed=crop_seed, min_object_covered=0.0,
            aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0), max_attempts=10,
            use_image_if_no_bounding_boxes=True)
        image = tf.image.resize(tf.slice(image, begin, extent), size)
    else:
        if image.shape[:2] != (height, width):
            image = tf.image.resize(image, size)
        image = tf.pad(image, [[4, 4], [4, 4], [0, 0]])  # black border, before normalising
        image = tf.image.stateless_random_crop(image, (height, width, 3), seed=crop_seed)
    if flip:
        image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return image
