"""Deployment with Larq Compute Engine: every binary convolution as an ``LceBconv2d``.

    import larq_adaptive as lqa
    report = lqa.export.to_tflite(model, "model.tflite")
    print(report.table())
    lqa.export.binary_weights(model)["stage1_block1_conv1"].signs

or from a shell: ``larq-adaptive-export MODEL.keras OUT.tflite`` (= ``python -m
larq_adaptive.export``).

The LCE 0.16 converter turns ``Conv2D(Dequantize(Quantize(x)), W)`` into a binary conv when
the conv input is *directly* a +-1 binarizer output and every filter is ``+-scale_o``
(measured, see docs/deployment.md). Training-time layers do not always have that shape, so
:func:`deployable` clones the model into an equal function that has it:

- :class:`~larq_adaptive.layers.AdaBinConv2D` -> its ``decomposed=True`` form (a +-1 conv
  of ``sign((x - beta)/alpha)`` plus float corrections the converter folds);
- :class:`~larq_adaptive.layers.PaddedQuantConv2D` with a +-1 input (RSign, DySign,
  ste_sign, ...) -> :class:`~larq_adaptive.layers.BorderCorrectedQuantConv2D`: where
  PyTorch's pad equals TF "same", a "same" conv (``LceBconv2d`` pads with 0 or +1 itself);
  elsewhere pad with +1 and, for zero padding, subtract the border term
  ``conv(zero_pad(s), W) = conv(pad_{+1}(s), W) - conv(mask, W)``, stored as a few ``C_out``
  vectors (:func:`larq_adaptive.padding.border_correction`);
- :class:`~larq_adaptive.quantizers.SwitchableQuantizer` -> its final-stage quantizer (a
  switchable *activation* quantizer blocks binary convs even when switched on);
- mixed precision -> float32; the input batch size -> 1 (the LCE interpreter runs one
  image at a time; static shapes fix the pads and the border patterns).

The op histogram is read from the flatbuffer with the TFLite schema that ships inside
``larq_compute_engine`` (``larq_compute_engine.mlir.python.tflite_schema``): no extra
dependency, and it sees custom ops (``LceBconv2d``) by their custom code.
"""

import collections
import dataclasses
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

from larq_adaptive.command_line import (Parser, load_model_argument, make_parent_folders,
                                        output_path_argument)
from larq_adaptive.introspect import (  # the walking helpers are re-exported here
    BinaryKernel,
    binary_conv_layers,
    binary_weights,
    final_quantizer,
    is_binary,
    unwrap,
)
from larq_adaptive.layers import AdaBinConv2D, BorderCorrectedQuantConv2D, PaddedQuantConv2D
from larq_adaptive.quantizers import SwitchableQuantizer

__all__ = [
    "BinaryKernel",
    "BorderCorrectedQuantConv2D",
    "ExportReport",
    "binary_conv_layers",
    "binary_weights",
    "constant_tensors",
    "deployable",
    "final_quantizer",
    "lce_predict",
    "op_histogram",
    "to_tflite",
]

BCONV_OP = "LceBconv2d"


# --------------------------------------------------------------------------- cloning


def _quantizer_config(config):
    """Serialized quantizer config with every SwitchableQuantizer replaced by its inner one."""
    while isinstance(config, dict) and str(config.get("class_name", "")).endswith(
        SwitchableQuantizer.__name__
    ):
        config = config["config"]["quantizer"]
    return config


_REDUCED = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")


def _float32(config):
    """``config`` with every dtype policy (nested quantizer configs included) set to float32."""
    if isinstance(config, list):
        return [_float32(item) for item in config]
    if not isinstance(config, dict):
        return config
    result = {key: _float32(value) for key, value in config.items()}
    dtype = result.get("dtype")
    if (isinstance(dtype, dict) and "Policy" in str(dtype.get("class_name"))) or dtype in _REDUCED:
        result["dtype"] = "float32"
    return result


def _deploy_layer(layer):
    config = _float32(layer.get_config())
    for key in ("input_quantizer", "kernel_quantizer"):
        if key in config:
            config[key] = _quantizer_config(config[key])
    cls = type(layer)
    if isinstance(layer, AdaBinConv2D):
        config["decomposed"] = True
    elif type(layer) is PaddedQuantConv2D and is_binary(layer.input_quantizer):
        cls = BorderCorrectedQuantConv2D
    return cls.from_config(config)


def _switch_variables(layer):
    """The ``active`` flags of every SwitchableQuantizer a layer holds (dropped on export)."""
    return [
        switch.active
        for attr in ("input_quantizer", "kernel_quantizer")
        for switch in unwrap(getattr(layer, attr, None))[1]
    ]


def _copy_weights(source, target):
    targets = {layer.name: layer for layer in target.layers}
    for layer in source.layers:
        if not layer.weights or isinstance(layer, tf.keras.layers.InputLayer):
            continue
        flags = _switch_variables(layer)
        weights = [w for w in layer.weights if not any(w is f for f in flags)]
        targets[layer.name].set_weights([w.numpy() for w in weights])


def deployable(model, batch_size=1):
    """A float32 clone of ``model`` that LCE converts with one ``LceBconv2d`` per binary conv
    (see the module docstring), with the same weights and the same function."""
    if any(isinstance(layer, tf.keras.Model) for layer in model.layers):
        raise ValueError("deployable() expects a flat functional model (no nested models)")
    policy = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy("float32")  # the clone and all its sub-layers
    try:
        inputs = [
            tf.keras.Input(
                batch_size=batch_size, shape=t.shape[1:], dtype="float32",
                name=t.name.split(":")[0],
            )
            for t in model.inputs
        ]
        clone = tf.keras.models.clone_model(
            model, input_tensors=inputs if len(inputs) > 1 else inputs[0],
            clone_function=_deploy_layer,
        )
    finally:
        tf.keras.mixed_precision.set_global_policy(policy)
    _copy_weights(model, clone)
    clone._name = model.name
    return clone


# --------------------------------------------------------------------------- flatbuffer


def _schema():
    from larq_compute_engine.mlir.python import tflite_schema

    return tflite_schema


def _operators(flatbuffer):
    """[(op name, [names of the op's input and output tensors])] of the main subgraph."""
    schema = _schema()
    builtin = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        custom = code.CustomCode()
        # Since schema v3a the builtin code lives in two fields; the larger one is right.
        number = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        names.append(custom.decode() if custom else builtin.get(number, f"BUILTIN_{number}"))
    graph = model.Subgraphs(0)

    def tensor_names(getter, count):
        return [graph.Tensors(getter(k)).Name().decode() for k in range(count) if getter(k) >= 0]

    ops = []
    for j in range(graph.OperatorsLength()):
        op = graph.Operators(j)
        tensors = tensor_names(op.Outputs, op.OutputsLength()) + tensor_names(
            op.Inputs, op.InputsLength()
        )
        ops.append((names[op.OpcodeIndex()], tensors))
    return ops


ConstantTensor = collections.namedtuple("ConstantTensor", "name shape type bytes")


def constant_tensors(flatbuffer):
    """The tensors stored in a TFLite flatbuffer (weights, folded constants), each a
    ``ConstantTensor(name, shape, type, bytes)`` with ``type`` the TFLite type name
    (``"FLOAT32"``, ``"INT32"``, ...), largest first."""
    schema = _schema()
    types = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    graph = model.Subgraphs(0)
    tensors = []
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        size = model.Buffers(tensor.Buffer()).DataLength()
        if size:
            shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            tensors.append(ConstantTensor(tensor.Name().decode(), shape,
                                          types.get(tensor.Type(), str(tensor.Type())), size))
    return sorted(tensors, key=lambda t: -t.bytes)


def op_histogram(flatbuffer):
    """``collections.Counter`` of op names (builtin or custom) in a TFLite flatbuffer."""
    return collections.Counter(name for name, _ in _operators(flatbuffer))


def _names_layer(tensor_name, layer_name):
    return any(
        f"/{layer_name}/" in part or part.startswith(f"{layer_name}/")
        for part in tensor_name.split(";")
    )


@dataclasses.dataclass
class ExportReport:
    """What :func:`to_tflite` produced: ``flatbuffer`` bytes, the ``path`` written, the op
    ``histogram`` and, per binary conv of the Keras model, whether it became an
    ``LceBconv2d`` (``convs``: list of (layer name, bool))."""

    flatbuffer: bytes
    path: str
    histogram: collections.Counter
    convs: list

    @property
    def size(self):
        return len(self.flatbuffer)

    @property
    def float_convs(self):
        """Names of the binary convs that did not become ``LceBconv2d``."""
        return [name for name, ok in self.convs if not ok]

    @property
    def ok(self):
        return not self.float_convs

    def table(self):
        width = max([len("binary conv")] + [len(name) for name, _ in self.convs])
        lines = [f"{'binary conv':<{width}}  LceBconv2d", f"{'-' * width}  ----------"]
        lines += [f"{name:<{width}}  {'yes' if ok else 'NO'}" for name, ok in self.convs]
        lines += [
            "",
            f"{len(self.convs) - len(self.float_convs)}/{len(self.convs)} binary convs are "
            f"LceBconv2d; file {self.path or '(not written)'}: {self.size / 1024:.1f} KiB",
            "",
            "op histogram:",
        ]
        lines += [f"  {name:<24}{count:>5}" for name, count in sorted(self.histogram.items())]
        return "\n".join(lines)


def _convert(model, target):
    """LCE's flatbuffer of ``model`` through a SavedModel that holds only its variables and
    one traced serving function. ``lce.convert_keras_model`` saves the Keras model itself,
    which traces every layer's call functions and costs ~3x the whole conversion
    (``dwr_resnet20``: 24 s against 9 s, 2 cores shared with a training run) for the same flatbuffer: same ops,
    same tensor names, bit-identical outputs (tests/test_export.py)."""
    import larq_compute_engine as lce

    specs = [tf.TensorSpec(tensor.shape, tensor.dtype, name=name)  # Keras' input names
             for tensor, name in zip(model.inputs, model.input_names)]
    serve = tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0],
                                              training=False), input_signature=specs)
    holder = tf.Module()
    holder.variables_ = list(model.variables)  # tracked for the SavedModel, not the layers
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(holder, directory, signatures=serve.get_concrete_function())
        return lce.convert_saved_model(directory, target=target)


def to_tflite(model, path=None, target="arm"):
    """Convert ``model`` with LCE (through :func:`deployable`) and write ``path`` if given.

    Returns an :class:`ExportReport`; ``report.ok`` is False if a binary conv stayed float.
    """
    convs = [layer.name for layer in binary_conv_layers(model)]
    flatbuffer = _convert(deployable(model), target)
    ops = _operators(flatbuffer)
    bconv_tensors = [tensors for name, tensors in ops if name == BCONV_OP]
    # Each LceBconv2d comes from one binary conv, so as many of them as binary convs means
    # all converted. Otherwise, names tell which did: the converter truncates tensor names
    # and shares one quantizer between convs with identical (e.g. untrained) input
    # binarizers, so a converted conv's name can be missing from its op's tensors.
    all_converted = len(bconv_tensors) == len(convs)
    became = [
        (conv, all_converted
         or any(_names_layer(t, conv) for tensors in bconv_tensors for t in tensors))
        for conv in convs
    ]
    if path is not None:
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return ExportReport(
        flatbuffer, None if path is None else os.fspath(path),
        collections.Counter(name for name, _ in ops), became,
    )


def lce_predict(flatbuffer, inputs, num_threads=2):
    """Run a flatbuffer in LCE's interpreter (x86: reference kernels), one image at a time."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    return Interpreter(flatbuffer, num_threads=num_threads).predict(np.asarray(inputs, np.float32))


def main(argv=None):
    """``larq-adaptive-export`` / ``python -m larq_adaptive.export``: 0 converted, 1 a binary
    conv stayed float, 2 bad input (one line on stderr)."""
    parser = Parser(
        prog="larq-adaptive-export",
        description="Convert a Keras model to a TFLite flatbuffer with larq-compute-engine; "
        "print each binary conv and whether it became an LceBconv2d, and the op histogram.",
    )
    parser.add_argument("model", help="a .keras / .h5 / SavedModel file")
    parser.add_argument("output", help="the .tflite file to write")
    parser.add_argument("--target", default="arm", choices=["arm", "xcore"])
    args = parser.parse_args(argv)
    output = output_path_argument(parser, args.output)
    model = load_model_argument(parser, args.model)
    make_parent_folders(output)
    try:
        report = to_tflite(model, output, target=args.target)
    except ValueError as error:  # e.g. a nested model deployable() cannot clone
        parser.error(f"cannot convert {args.model!r}: {error}")
    print(report.table())
    if not report.ok:
        print(
            f"error: {len(report.float_convs)} binary conv(s) stayed float after conversion: "
            f"{', '.join(report.float_convs) or '(LceBconv2d count mismatch)'}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
