"""Saving and loading models that use larq-adaptive objects.

Loading is a security boundary: ``.keras`` files are loaded with Keras ``safe_mode=True``
(no ``Lambda`` layers or arbitrary code), and nothing here unpickles user files.

:func:`save_model` also records, inside the ``.keras`` archive (in Keras' ``metadata.json``),
what a later user of the file must know to feed it (the registered model name and its input
preprocessing); :func:`read_metadata` reads that record back (JSON, no code).
"""

import json
import os
import zipfile
from pathlib import Path

import larq  # noqa: F401  (registers larq's own objects)
import tensorflow as tf

from larq_adaptive.serialization import registered_objects

__all__ = ["METADATA_KEY", "PARTIAL", "custom_objects", "load_model", "read_metadata",
           "replace_atomically", "save_model"]

KERAS_METADATA = "metadata.json"  # Keras' own member of a .keras archive
METADATA_KEY = "larq_adaptive"  # save_model's record in it
_MAX_METADATA_BYTES = 65536
PARTIAL = "partial-"  # prefix of a file being written (same suffix: Keras picks formats by it)


def replace_atomically(write, path):
    """``write(temporary_path)`` then rename it to ``path`` in one step (``os.replace``), so
    that a crash never leaves a half-written ``path``."""
    path = Path(path)
    temporary = path.with_name(PARTIAL + path.name)
    write(str(temporary))
    os.replace(temporary, path)


def custom_objects():
    """Every object needed to load a model saved with larq-adaptive (and larq) layers."""
    larq_objects = {
        name: obj
        for name, obj in tf.keras.utils.get_custom_objects().items()
        if getattr(obj, "__module__", "").startswith("larq.")
    }
    return {**larq_objects, **registered_objects()}


def load_model(path, compile=True):
    """Load a ``.keras``, ``.h5`` or SavedModel file, with ``safe_mode`` for ``.keras``."""
    path = str(path)
    kwargs = {"custom_objects": custom_objects(), "compile": compile}
    if path.endswith(".keras"):
        kwargs["safe_mode"] = True
    return tf.keras.models.load_model(path, **kwargs)


def save_model(model, path, **metadata):
    """``model.save(path)``; for a ``.keras`` file, ``metadata`` (JSON values, e.g.
    ``model_name=``, ``preprocessing=``) plus the input shape are stored under the key
    ``"larq_adaptive"`` of the archive's own ``metadata.json`` (which Keras reads only for its
    version and date; an extra archive member would break tf-keras 2.19's weight loading), and
    :func:`read_metadata` returns them. The file is written under a temporary name and
    renamed: never half-written."""
    path = str(path)

    def write(target):
        model.save(target)
        if target.endswith(".keras"):
            record = {"input_shape": list(model.input_shape[1:]), **metadata}
            _add_record(target, record)

    if path.endswith((".keras", ".h5")):
        replace_atomically(write, path)
    else:  # a SavedModel folder
        write(path)


def _add_record(archive_path, record):
    """Rewrite the ``.keras`` archive with ``record`` in its ``metadata.json`` (same members,
    same order)."""
    with zipfile.ZipFile(archive_path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(archive_path, "w") as archive:
        for info, data in members:
            if info.filename == KERAS_METADATA:
                data = json.dumps({**json.loads(data), METADATA_KEY: record})
            archive.writestr(info, data)


def read_metadata(path):
    """The record :func:`save_model` stored in a ``.keras`` file, or ``{}`` if there is none
    (another format, or a file saved by plain Keras)."""
    path = str(path)
    if not zipfile.is_zipfile(path):
        return {}
    with zipfile.ZipFile(path) as archive:
        try:
            info = archive.getinfo(KERAS_METADATA)
        except KeyError:
            return {}
        if info.file_size > _MAX_METADATA_BYTES:
            return {}
        try:
            record = json.loads(archive.read(info)).get(METADATA_KEY)
        except (ValueError, AttributeError):
            return {}
    return record if isinstance(record, dict) else {}
