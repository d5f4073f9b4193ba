"""DWR as a tool: naive depth-width reshaping and the cluster-based width search.

DWR (Xue et al., AAAI 2023) makes a binary backbone shallower and wider at about the same
binary compute, then sets each stage's width by clustering the channels of a briefly
pre-trained naive model. This module holds the arithmetic and the search; the networks are
the ``dwr_*`` builders of :mod:`larq_adaptive.models.dwr` (which re-exports :func:`reshape`
and :func:`search_widths`), and the whole pipeline as a command (pre-training with the
``dwr_cifar`` recipe on any dataset ``train.py`` reads) is
:mod:`larq_adaptive.training.dwr_cli`.

1. :func:`reshape` (DWR paper, depth-width reshaping): ``blocks / s`` per stage (at least 1) and ``widths * sqrt(s)``
   (constant binary MACs, about ``sqrt(s)`` fewer binary-conv input activations), or
   ``widths * width_multiplier`` for the wider pre-pruning model. The costs are computed
   from the description (:class:`Backbone`) with plain arithmetic.
2. A short pre-training of the naive model (the command does it with ``model.fit``).
3. :func:`search_widths` (DWR paper, cluster-based width refinement): mean raw (pre-BN) output of the last binary conv of
   each stage over N images, one row per channel, cosine DBSCAN on the rows; the new width
   is ``#clusters + #noise points``.

Binary cost of the backbones (from the official modules; binary = convs with a binarized input, activations =
sum of the input elements of the binary convs):

| backbone | blocks | widths | bin convs | bin MACs | bin-conv input acts |
|---|---|---|---|---|---|
| ResNet-20 (CIFAR) original | 3,3,3 | 16,32,64 | 18 | 40.1M | 184K |
| DWR ResNet-20 (IR-Net) | 1,1,1 | 16,78,134 | 7 | 42.9M | 106K |
| DWR ResNet-20 + ReActNet | 1,1,1 | 30,86,154 | 7 | 62.7M | 142K |
| ResNet-18 (CIFAR) original | 2,2,2,2 | 64,128,256,512 | 16 | 547M | 549K |
| DWR ResNet-18 (CIFAR) | 1,1,1,1 | 120,222,290,458 | 8 | 513M | 469K |
| DWR VGG-small | 1 per conv | 106,252,256,512,512 | 6 | 599M | 280K |
| ResNet-18 (ImageNet, Bi-Real) | 4,4,4,4 | 64,128,256,512 | 16 | 1676M | 1681K |
| DWR ResNet-18 (ImageNet, ReAct) | 2,2,2,2 | 116,188,408,910 | 8 | 2121M | 1591K |

References:
- P. Xue, Y. Lu, J. Chang, X. Wei, Z. Wei. "Fast and Accurate Binary Neural Networks Based
  on Depth-Width Reshaping." AAAI 2023. Code: https://github.com/pingxue-hfut/DWR
"""

import dataclasses
import math
import re
from typing import Optional

import numpy as np

from larq_adaptive.introspect import binary_conv_layers

__all__ = [
    "BACKBONES",
    "Backbone",
    "ChannelClusters",
    "Reshaped",
    "final_backbone",
    "reshape",
    "search_widths",
    "stage_output_convs",
]


# --------------------------------------------------------------------------------------
# Backbone descriptions and their binary cost
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConvShape:
    """One binary convolution: channels in/out and square input/output resolution."""

    cin: int
    cout: int
    in_size: int
    out_size: int
    kernel_size: int

    @property
    def macs(self):
        return self.cin * self.cout * self.kernel_size**2 * self.out_size**2

    @property
    def activations(self):
        return self.cin * self.in_size**2


@dataclasses.dataclass(frozen=True)
class Backbone:
    """What the binary cost of a residual/plain backbone depends on.

    ``blocks``, ``widths`` and ``strides`` are per stage; every block holds
    ``convs_per_block`` binary ``kernel_size`` convs of the stage width. The stage's stride
    is applied by its first conv (``downsample="conv"``, ResNets) or by a pool after the
    stage (``downsample="pool"``, VGG: the next conv sees the reduced input).
    ``input_size // stem_stride`` is the resolution after the full-precision stem.

    ``align_width``: the DWR form ends with one more binary conv back to this width
    (``alg2``); ``stem_adapter``: a full-precision projection maps the stem to
    ``widths[0]`` before the first binary conv (DWR ImageNet ``Convalg``). ``dwr_align`` /
    ``dwr_stem_adapter`` say whether the DWR form of this backbone has them.
    ``models`` maps a binarization method to its registered DWR builder; other methods use
    the first builder with ``method=`` (every ``dwr_*`` builder takes it).
    """

    name: str
    input_size: int
    stem_width: int
    blocks: tuple
    widths: tuple
    strides: tuple
    convs_per_block: int
    stem_stride: int = 1
    kernel_size: int = 3
    downsample: str = "conv"
    align_width: Optional[int] = None
    stem_adapter: bool = False
    dwr_align: bool = False
    dwr_stem_adapter: bool = False
    models: tuple = ()  # ((method, registered model name), ...)

    def __post_init__(self):
        for field in ("blocks", "widths", "strides", "models"):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if not len(self.blocks) == len(self.widths) == len(self.strides):
            raise ValueError(f"{self.name}: blocks, widths and strides need one entry per stage")
        if min(self.blocks) < 1 or min(self.widths) < 1:
            raise ValueError(f"{self.name}: every stage needs >= 1 block and >= 1 channel")
        if self.downsample not in ("conv", "pool"):
            raise ValueError(f"downsample must be 'conv' or 'pool', got {self.downsample!r}")

    def binary_convs(self):
        """A :class:`ConvShape` per binary conv, in network order."""
        size = self.input_size // self.stem_stride
        cin = self.widths[0] if self.stem_adapter else self.stem_width
        convs = []
        for blocks, width, stride in zip(self.blocks, self.widths, self.strides):
            conv_stride = stride if self.downsample == "conv" else 1
            for index in range(blocks * self.convs_per_block):
                out_size = -(-size // conv_stride) if index == 0 else size  # padded: ceil
                convs.append(ConvShape(cin, width, size, out_size, self.kernel_size))
                cin, size = width, out_size
            if self.downsample == "pool":
                size //= stride
        if self.align_width:
            convs.append(ConvShape(cin, self.align_width, size, size, self.kernel_size))
        return convs

    @property
    def binary_macs(self):
        return sum(conv.macs for conv in self.binary_convs())

    @property
    def binary_activations(self):
        """Sum of the input elements of the binary convs (per image)."""
        return sum(conv.activations for conv in self.binary_convs())

    @property
    def num_binary_convs(self):
        return len(self.binary_convs())

    def model_name(self, method):
        """The registered DWR builder of this backbone for ``method``."""
        if not self.models:
            raise ValueError(f"backbone {self.name!r} has no DWR model")
        return dict(self.models).get(method, self.models[0][1])

    def with_widths(self, widths):
        widths = tuple(int(w) for w in widths)
        if len(widths) != len(self.widths):
            raise ValueError(f"{self.name} has {len(self.widths)} stages, got widths {widths}")
        return dataclasses.replace(self, widths=widths)


BACKBONES = {
    backbone.name: backbone
    for backbone in (
        # CIFAR ResNet-20 as in AdaBin/IR-Net; DWR adds alg2 (last width -> 64).
        Backbone("resnet20", input_size=32, stem_width=16, blocks=(3, 3, 3),
                 widths=(16, 32, 64), strides=(1, 2, 2), convs_per_block=2, dwr_align=True,
                 models=(("irnet", "dwr_resnet20"), ("reactnet", "dwr_reactnet_resnet20"))),
        # CIFAR ResNet-18 (64-wide stem, basic blocks); the DWR form has no alg2.
        Backbone("resnet18_cifar", input_size=32, stem_width=64, blocks=(2, 2, 2, 2),
                 widths=(64, 128, 256, 512), strides=(1, 2, 2, 2), convs_per_block=2,
                 models=(("irnet", "dwr_resnet18_cifar"),)),
        # VGG-small: one "stage" per binary conv, 2x2 max-pools after convs 1, 3 and 5;
        # DWR adds alg2 512 -> 512 on the 4x4 map.
        Backbone("vgg_small", input_size=32, stem_width=128, blocks=(1, 1, 1, 1, 1),
                 widths=(128, 256, 256, 512, 512), strides=(2, 1, 2, 1, 2), convs_per_block=1,
                 downsample="pool", dwr_align=True, models=(("irnet", "dwr_vgg_small"),)),
        # ImageNet ResNet-18 as Bi-Real/ReActNet: single-conv blocks on the 56x56 map after
        # the 7x7/2 stem and the max-pool; DWR adds Convalg (stem 64 -> widths[0]).
        Backbone("resnet18", input_size=224, stem_width=64, stem_stride=4, blocks=(4, 4, 4, 4),
                 widths=(64, 128, 256, 512), strides=(1, 2, 2, 2), convs_per_block=1,
                 dwr_stem_adapter=True, models=(("reactnet", "dwr_reactnet_resnet18"),)),
    )
}


def _backbone(base):
    if isinstance(base, Backbone):
        return base
    if isinstance(base, str):
        if base not in BACKBONES:
            raise ValueError(f"unknown backbone {base!r}; available: {', '.join(BACKBONES)}")
        return BACKBONES[base]
    if isinstance(base, dict):
        return Backbone(**{"name": "custom", **base})
    raise TypeError(f"base must be a Backbone, a dict or one of {sorted(BACKBONES)}, got {base!r}")


def _round(value):
    return int(math.floor(value + 0.5))


@dataclasses.dataclass(frozen=True)
class Reshaped:
    """The naive reshaped ``backbone`` of ``base``, with both binary costs."""

    base: Backbone
    backbone: Backbone
    s: float
    width_multiplier: float

    blocks = property(lambda self: self.backbone.blocks)
    widths = property(lambda self: self.backbone.widths)
    binary_macs = property(lambda self: self.backbone.binary_macs)
    activations = property(lambda self: self.backbone.binary_activations)
    base_binary_macs = property(lambda self: self.base.binary_macs)
    base_activations = property(lambda self: self.base.binary_activations)

    @property
    def mac_ratio(self):
        """Reshaped / original binary MACs (about 1 with the sqrt(s) rule)."""
        return self.binary_macs / self.base_binary_macs

    @property
    def activation_reduction(self):
        """Original / reshaped binary-conv input activations (about sqrt(s))."""
        return self.base_activations / self.activations


def reshape(base, s, width_multiplier=None):
    """Naive depth-width reshaping of ``base`` by the factor ``s``.

    ``base``: a :class:`Backbone`, a dict of its fields, or a name of :data:`BACKBONES`
    (``"resnet20"``, ``"resnet18_cifar"``, ``"vgg_small"``, ``"resnet18"``).
    Every stage gets ``round(blocks / s)`` blocks (at least 1) and
    ``round(width * width_multiplier)`` channels, ``width_multiplier`` defaulting to
    ``sqrt(s)`` (constant binary MACs). The result is in the DWR layout (``alg2`` /
    ``Convalg`` where the DWR form of the backbone has them) and carries the binary MACs
    and activations of both models.
    """
    base = _backbone(base)
    s = float(s)
    if not s >= 1:
        raise ValueError(f"the reshaping factor s must be >= 1, got {s}")
    multiplier = math.sqrt(s) if width_multiplier is None else float(width_multiplier)
    if not multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    reshaped = dataclasses.replace(
        base,
        blocks=tuple(max(1, _round(blocks / s)) for blocks in base.blocks),
        widths=tuple(max(1, _round(width * multiplier)) for width in base.widths),
        align_width=base.widths[-1] if base.dwr_align else None,
        stem_adapter=base.dwr_stem_adapter,
    )
    return Reshaped(base, reshaped, s, multiplier)


# --------------------------------------------------------------------------------------
# Cluster-based width search
# --------------------------------------------------------------------------------------

_STAGE_NAME = re.compile(r"(?:^|_)stage(\d+)(?:_|$)")


@dataclasses.dataclass(frozen=True)
class ChannelClusters:
    """DBSCAN result for one hooked conv: ``width = clusters + noise``."""

    layer: str
    stage: Optional[int]  # from a ``stageN_`` layer name, else None
    channels: int
    clusters: int
    noise: int
    labels: np.ndarray  # one DBSCAN label per channel, -1 = noise
    core_eps: np.ndarray  # per channel: the smallest eps that makes it a core point

    @property
    def width(self):
        return self.clusters + self.noise


def _stage_of(layer_name):
    match = _STAGE_NAME.search(layer_name)
    return int(match.group(1)) if match else None


def stage_output_convs(model):
    """The default hooks: the last binary conv of each stage, in stage order.

    Binary convs as :func:`larq_adaptive.introspect.binary_conv_layers` defines them. Stages come from
    ``stageN_`` in the layer names (the ``dwr_*`` builders' convention), so extra convs such
    as ``alg2`` are left out. A model without such names: every maximal run of consecutive
    binary convs with the same output shape is a stage.
    """
    convs = binary_conv_layers(model)
    if not convs:
        raise ValueError(f"model {model.name!r} has no binary convolution")
    staged = [layer for layer in convs if _stage_of(layer.name) is not None]
    if staged:
        last = {}
        for layer in staged:
            last[_stage_of(layer.name)] = layer
        return [last[stage] for stage in sorted(last)]
    runs = []
    for layer in convs:
        if runs and tuple(runs[-1].output.shape[1:]) == tuple(layer.output.shape[1:]):
            runs[-1] = layer
        else:
            runs.append(layer)
    return runs


def _hooked_layers(model, layers):
    if layers is None:
        return stage_output_convs(model)
    names = [layer if isinstance(layer, str) else layer.name for layer in layers]
    by_name = {layer.name: layer for layer in model.layers}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ValueError(f"model {model.name!r} has no layer {', '.join(missing)}")
    return [by_name[name] for name in names]


def mean_outputs(model, images, layers, batch_size=100):
    """Mean over ``images`` of the raw outputs of ``layers`` (float64, one (H, W, C) each),
    fetched batched from one functional sub-model in inference mode."""
    import tensorflow as tf

    probe = tf.keras.Model(model.inputs, [layer.output for layer in layers])
    sums = [np.zeros(tuple(layer.output.shape[1:]), np.float64) for layer in layers]
    for start in range(0, len(images), batch_size):
        outputs = probe(images[start:start + batch_size], training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for total, output in zip(sums, outputs):
            total += np.asarray(output, np.float64).sum(axis=0)
    return [total / len(images) for total in sums]


def _channel_rows(feature_map):
    """(H, W, C) -> (C, H*W): one row per channel."""
    return np.reshape(feature_map, (-1, feature_map.shape[-1])).T


def cluster_channels(feature_map, eps, min_samples=5):
    """DBSCAN labels of the channels of a (H, W, C) map: rows (C, H*W), cosine distance."""
    from sklearn.cluster import DBSCAN

    rows = _channel_rows(feature_map)
    return DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit(rows).labels_


def core_distances(feature_map, min_samples=5):
    """Per channel, the cosine distance to its ``min_samples - 1``-th nearest other channel:
    the smallest ``eps`` at which DBSCAN makes it a core point (the usual k-distance guide
    for choosing ``eps``); inf when there are fewer channels."""
    from sklearn.metrics.pairwise import cosine_distances

    distances = np.sort(cosine_distances(_channel_rows(feature_map)), axis=1)
    if min_samples > distances.shape[1]:
        return np.full(distances.shape[0], np.inf)
    return distances[:, min_samples - 1]  # column 0 is the channel itself


def search_widths(model, images, eps, min_samples=5, layers=None, batch_size=100):
    """DWR width search: one :class:`ChannelClusters` per hooked layer.

    ``images``: N model inputs (already preprocessed, NHWC). For each hooked binary conv
    (default :func:`stage_output_convs`; or ``layers``, a list of layer names), the raw
    conv output (pre-BN) is averaged over the N images, reshaped to (C, H*W), and the C rows
    are clustered with ``DBSCAN(metric="cosine", eps, min_samples)``: rows within cosine
    distance ``1 - cos <= eps`` are neighbours. New width = #clusters + #noise points (one
    channel kept per group of near-duplicates).
    """
    images = np.asarray(images)
    if len(images) == 0:
        raise ValueError("search_widths needs at least one image")
    hooked = _hooked_layers(model, layers)
    results = []
    for layer, feature_map in zip(hooked, mean_outputs(model, images, hooked, batch_size)):
        labels = cluster_channels(feature_map, eps, min_samples)
        results.append(ChannelClusters(
            layer=layer.name,
            stage=_stage_of(layer.name),
            channels=int(feature_map.shape[-1]),
            clusters=len(set(labels.tolist()) - {-1}),
            noise=int(np.sum(labels == -1)),
            labels=labels,
            core_eps=core_distances(feature_map, min_samples),
        ))
    return results


def final_backbone(naive, results):
    """The naive backbone with the searched widths, if there is exactly one result per
    stage (stages numbered 1..n by the layer names, or one default hook per stage)."""
    stages = [result.stage for result in results]
    if stages == list(range(1, len(naive.widths) + 1)) or (
        None in stages and len(results) == len(naive.widths)
    ):
        return naive.with_widths([result.width for result in results])
    return None
