"""Input preprocessing of the official recipes, by name.

Every official AdaBin, ReActNet and DWR training script scales images to [0, 1] and normalises
them with the ImageNet mean and standard deviation, on CIFAR as on ImageNet
(``transforms.ToTensor()`` then ``transforms.Normalize(mean, std)``); the per-model choice is
recorded as data in the model registry (``ModelEntry.preprocessing``).
"""

import numpy as np
import tensorflow as tf

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PREPROCESSINGS", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSINGS = ("imagenet",)


def normalize(images, preprocessing="imagenet"):
    """uint8 or float NHWC images in 0-255 -> float32 model inputs, for the named
    ``preprocessing`` (``"imagenet"``: ``(x / 255 - mean) / std``). Works on numpy arrays
    (returns numpy) and tensors."""
    if preprocessing not in PREPROCESSINGS:
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; available: {', '.join(PREPROCESSINGS)}"
        )
    x = tf.cast(images, tf.float32) / 255.0
    x = (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
    return x.numpy() if isinstance(images, np.ndarray) else x
