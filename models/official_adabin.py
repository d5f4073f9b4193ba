"""Exact import of the official AdaBin ResNet-20 CIFAR-10 checkpoint.

    model = get_model("adabin_resnet20", weights="model.th")          # official PyTorch file
    model = get_model("adabin_resnet20", weights="state_dict.npz")    # the same tensors as numpy

``model.th`` (huawei-noah/Efficient-Computing, BinaryNetworks/AdaBin/cifar10/checkpoints/
resnet20_1w1a) is a PyTorch zip archive holding ``{"state_dict": ..., "best_prec1": ...}``.
It is read without PyTorch by :func:`read_torch_checkpoint`, a restricted unpickler that only
accepts the few globals a plain tensor state dict needs and rebuilds the tensors as numpy
arrays from the archive's ``data/`` entries. If ``torch`` is installed, ``torch.load(...,
weights_only=True)`` is used instead. Nothing else is ever unpickled.

Name mapping (``module.`` prefix removed; ``num_batches_tracked`` ignored):

| PyTorch                               | Keras                                   |
|---------------------------------------|-----------------------------------------|
| ``conv1`` / ``bn1`` / ``nonlinear1``  | ``stem_conv`` / ``stem_bn`` / ``stem_act`` |
| ``layer{s}.{b}.conv{i}.weight``       | ``stage{s}_block{b+1}_conv{i}`` kernel, OIHW -> HWIO |
| ``layer{s}.{b}.conv{i}.binary_a.alpha_a`` / ``beta_a`` | its input quantizer's ``alpha`` / ``beta`` |
| ``layer{s}.{b}.bn{i}``                | ``stage{s}_block{b+1}_bn{i}``           |
| ``layer{s}.{b}.nonlinear{i}``         | ``stage{s}_block{b+1}_act{i}`` (``pos_scale``, ``neg_scale``) |
| ``bn2`` / ``linear``                  | ``head_bn`` / ``logits`` (weight transposed) |

BatchNorm: weight/bias/running_mean/running_var -> gamma/beta/moving_mean/moving_variance.
The EDE constants ``ede_k``/``ede_t`` (backward pass only) are not in the checkpoint and keep
their values. Every other model weight must be set and every checkpoint tensor consumed.
"""

import collections
import os
import pickle
import re
import zipfile

import numpy as np
import tensorflow as tf

from larq_adaptive.layers import AdaBinConv2D, Maxout
from larq_adaptive.models import weights as keras_weights

__all__ = ["assign_state_dict", "load_weights", "read_state_dict", "read_torch_checkpoint"]

TORCH_SUFFIXES = (".th", ".pt", ".pth")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
IGNORED_KEYS = ("num_batches_tracked",)
UNSET_WEIGHTS = ("ede_k", "ede_t")  # EDE backward constants: not stored by PyTorch

# --------------------------------------------------------------------------------------------
# Reading state dicts


def _storage_dtypes():
    names = {
        "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
        "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
        "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    }
    return {name: np.dtype(dtype) for name, dtype in names.items()}


_STORAGE_DTYPES = _storage_dtypes()


class _StorageType:
    """Stand-in for ``torch.<X>Storage`` in the pickle: only carries the dtype."""

    def __init__(self, dtype):
        self.dtype = dtype


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False,
                    backward_hooks=None, metadata=None):
    """numpy stand-in for ``torch._utils._rebuild_tensor_v2`` (strides in elements)."""
    itemsize = storage.dtype.itemsize
    needed = storage_offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    if storage_offset < 0 or needed > storage.size:
        raise pickle.UnpicklingError("tensor view exceeds its storage")
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)


class _TensorUnpickler(pickle.Unpickler):
    """Unpickles a PyTorch ``data.pkl`` holding (dicts of) tensors and plain Python values."""

    def __init__(self, file, archive, prefix, byteorder):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(
            f"refusing to unpickle global {module}.{name}: only tensor state dicts are read"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("persistent id without a known storage type")
        key = str(key)
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            dtype = storage_type.dtype.newbyteorder("<" if self._byteorder == "little" else ">")
            array = np.frombuffer(raw, dtype=dtype, count=int(numel))
            self._storages[key] = array.astype(storage_type.dtype.newbyteorder("="))
        return self._storages[key]


def read_torch_checkpoint(path):
    """The object pickled in a PyTorch zip checkpoint, tensors as numpy arrays, without torch.

    Raises ``pickle.UnpicklingError`` for any global other than ``collections.OrderedDict``,
    ``torch._utils._rebuild_tensor_v2`` and the ``torch.<dtype>Storage`` classes.
    """
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a PyTorch zip checkpoint (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        byteorder = "little"
        if f"{prefix}byteorder" in names:
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        with archive.open(pickles[0]) as file:
            return _TensorUnpickler(file, archive, prefix, byteorder).load()


def _read_with_torch(path):
    import torch  # noqa: PLC0415 (optional dependency)

    obj = torch.load(path, map_location="cpu", weights_only=True)

    def convert(value):
        if isinstance(value, torch.Tensor):
            return value.numpy()
        if isinstance(value, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in value.items())
        return value

    return convert(obj)


def _torch_available():
    try:
        import torch  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def read_state_dict(path, use_torch=None):
    """``{key: numpy array}`` of an official checkpoint (``.th``/``.pt``/``.pth``) or ``.npz``.

    ``use_torch``: None = use ``torch.load(weights_only=True)`` when torch is installed,
    False = always the built-in restricted reader.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    if suffix not in TORCH_SUFFIXES:
        raise ValueError(f"not an official checkpoint (.npz or {'/'.join(TORCH_SUFFIXES)}): {path}")
    if use_torch is None:
        use_torch = _torch_available()
    obj = _read_with_torch(path) if use_torch else read_torch_checkpoint(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return dict(obj)


# --------------------------------------------------------------------------------------------
# Keras layer <-> PyTorch module names and per-layer-type weight maps

_FIXED_MODULES = {
    "stem_conv": "conv1", "stem_bn": "bn1", "stem_act": "nonlinear1",
    "head_bn": "bn2", "logits": "linear",
}
_BLOCK_LAYER = re.compile(r"stage(\d+)_block(\d+)_(conv|bn|act)(\d+)")
_BLOCK_KINDS = {"conv": "conv", "bn": "bn", "act": "nonlinear"}


def torch_module_name(layer_name):
    """PyTorch module name of a Keras layer of ``adabin_resnet20`` (None if it has no weights)."""
    if layer_name in _FIXED_MODULES:
        return _FIXED_MODULES[layer_name]
    match = _BLOCK_LAYER.fullmatch(layer_name)
    if match is None:
        return None
    stage, block, kind, index = match.groups()
    return f"layer{stage}.{int(block) - 1}.{_BLOCK_KINDS[kind]}{index}"


def _conv_kernel(w):
    return np.transpose(w, (2, 3, 1, 0))  # OIHW -> HWIO


def _identity(w):
    return w


# Keras weight short name -> (PyTorch suffix, transform), per layer type.
_CONV_MAP = {"kernel": ("weight", _conv_kernel)}
_WEIGHT_MAPS = (
    (AdaBinConv2D, {**_CONV_MAP, "alpha": ("binary_a.alpha_a", _identity),
                    "beta": ("binary_a.beta_a", _identity)}),
    (tf.keras.layers.Conv2D, _CONV_MAP),
    (tf.keras.layers.BatchNormalization, {
        "gamma": ("weight", _identity), "beta": ("bias", _identity),
        "moving_mean": ("running_mean", _identity), "moving_variance": ("running_var", _identity),
    }),
    (Maxout, {"pos_scale": ("pos_scale", _identity), "neg_scale": ("neg_scale", _identity)}),
    (tf.keras.layers.Dense, {"kernel": ("weight", np.transpose), "bias": ("bias", _identity)}),
)


def _weight_map(layer):
    for cls, mapping in _WEIGHT_MAPS:
        if isinstance(layer, cls):
            return mapping
    return {}


def _short_name(variable):
    return variable.name.split("/")[-1].split(":")[0]


def _strip_prefix(state_dict):
    return {
        (key[len("module."):] if key.startswith("module.") else key): value
        for key, value in state_dict.items()
    }


def assign_state_dict(model, state_dict, allow_unused=()):
    """Set every weight of ``model`` (an ``adabin_resnet20``) from an official state dict.

    ValueError if a model weight has no tensor, a shape differs, or a checkpoint tensor is
    not consumed (except ``num_batches_tracked`` and keys starting with ``allow_unused``).
    """
    tensors = _strip_prefix(state_dict)
    assignments, missing, unset = [], [], []
    for layer in model.layers:
        if not layer.weights:
            continue
        module = torch_module_name(layer.name)
        mapping = _weight_map(layer)
        for variable in layer.weights:
            short = _short_name(variable)
            if short in UNSET_WEIGHTS:
                continue
            if module is None or short not in mapping:
                unset.append(variable.name)
                continue
            suffix, transform = mapping[short]
            key = f"{module}.{suffix}"
            if key not in tensors:
                missing.append(key)
                continue
            value = np.asarray(transform(tensors[key]), dtype=variable.dtype.as_numpy_dtype)
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"{key}: shape {tuple(tensors[key].shape)} does not fit {variable.name} "
                    f"{tuple(variable.shape)}"
                )
            assignments.append((variable, value, key))
    used = {key for _, _, key in assignments}
    unused = sorted(
        key for key in tensors
        if key not in used and not key.endswith(IGNORED_KEYS) and not key.startswith(allow_unused)
    )
    problems = []
    if missing:
        problems.append(f"checkpoint lacks {missing}")
    if unset:
        problems.append(f"no checkpoint tensor for model weights {unset}")
    if unused:
        problems.append(f"checkpoint tensors not used by the model: {unused}")
    if problems:
        raise ValueError(
            f"state dict does not match {model.name} (official adabin_resnet20 layout expected): "
            + "; ".join(problems)
        )
    for variable, value, _ in assignments:
        variable.assign(value)
    return model


def _head_modules():
    return tuple(f"{_FIXED_MODULES[name]}." for name in ("head_bn", "logits"))


def load_weights(model, weights):
    """``weights`` for ``adabin_resnet20``: None, an official ``.th``/``.npz`` state dict, or a
    Keras weights file (``.h5``/``.keras``) saved by this library."""
    if weights is None:
        return model
    if isinstance(weights, (str, os.PathLike)):
        suffix = os.path.splitext(os.fspath(weights))[1].lower()
        if suffix in KERAS_SUFFIXES:
            return keras_weights.load_weights(model, weights)
        if suffix == ".npz" or suffix in TORCH_SUFFIXES:
            if not os.path.isfile(weights):
                raise ValueError(f"weights file {os.fspath(weights)!r} does not exist")
            convs = [layer for layer in model.layers if isinstance(layer, AdaBinConv2D)]
            if not convs:
                raise ValueError("official AdaBin weights need method='adabin'")
            if any(layer.pad_values != 0.0 for layer in convs):
                raise ValueError(
                    "official AdaBin weights were trained with zero padding: they do not "
                    "compute the same function in a pad_values=1.0 model; build it with "
                    "pad_values=0.0 (the default)"
                )
            has_head = any(layer.name == "logits" for layer in model.layers)
            allow_unused = () if has_head else _head_modules()
            return assign_state_dict(model, read_state_dict(weights), allow_unused)
    raise ValueError(
        "weights must be None, the official checkpoint (.th/.pt/.pth), its tensors as .npz, "
        f"or a Keras weights file ({'/'.join(KERAS_SUFFIXES)}); got {weights!r}"
    )
