"""Every registered model reloads in a fresh process that only ran ``import larq_adaptive``.

What a new user does: build a zoo model, save it, and later -- in another Python process that
never imported ``larq_adaptive.models`` -- ``lqa.load_model(path)`` and predict. Every custom
object in the file must then be registered by ``import larq_adaptive`` alone; a class that is
only registered when the zoo is imported fails there (Keras reports
``TypeError: 'str' object is not callable``) while an in-process round trip passes.

One module-scoped fixture per suite (fast, slow) builds every model in this process (fixed
seed, weights perturbed as training would, so a weight the loader drops changes the output),
saves it, records the outputs on a fixed batch (2 images, seed 0) and then, per file format,
runs ONE fresh subprocess that loads every file and predicts on the same batch (an import of
TensorFlow + larq costs ~6 s, so not one process per model). The parametrized tests then
compare per model, so a failure names the model. Eager ``model(x, training=False)`` on both
sides: same kernels on the same machine, so the outputs must be bit-identical.

Binary CIFAR models (native input 32x32x3) run in the fast suite; ImageNet models are built
at 64x64x3 (every ImageNet builder accepts it; the saved config keeps that shape) and are
marked ``slow``, except ``dwr_reactnet_resnet18``, the only model with a ``ChannelSlice``
layer, and so are the float twins, whose files hold the same layer classes as their binary
models' (a test checks that the fast cases use every class any model uses). The
LCE export CLI, ``python -m larq_adaptive.export MODEL.keras OUT.tflite``, runs in a fresh
process for one small CIFAR model per binary family.

Time (2 cores): the subprocesses run two at a time, and the four exports (LCE conversion,
the largest cost) start as soon as their models are saved, while the
other models are still being built.
"""

import concurrent.futures
import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import tensorflow as tf

from larq_adaptive.keras2 import set_random_seed
from larq_adaptive import export
from larq_adaptive.models import available_models, get_model, model_entry

from conftest import assert_no_border_maps, child_env

CIFAR_INPUT = (32, 32, 3)
IMAGENET_INPUT = (224, 224, 3)
SMALL_IMAGENET_INPUT = (64, 64, 3)  # same layers and config as 224, less compute
TIMEOUT = 600  # seconds per subprocess

# Extra cases besides the registered defaults: case id -> (registered name, builder kwargs).
# The plain larq ste_sign baseline uses HardTanh activations (like the DWR "irnet" models).
EXTRA_CASES = {"reactnet_resnet20-ste_sign": ("reactnet_resnet20", {"method": "ste_sign"})}
# ImageNet models that also run in the fast suite (at 64x64x3: a few seconds). The only model
# with a ChannelSlice layer (DWR Convalg), so the fast suite covers every custom layer class.
FAST_IMAGENET_MODELS = ("dwr_reactnet_resnet18",)
# A few cases also go through `.h5` (full-model HDF5: objects found by plain class name).
H5_CASES = [
    "adabin_resnet20", "reactnet_resnet20", "dybnn_resnet20", "dwr_resnet20",
    "reactnet_resnet20-ste_sign",
]
# One small CIFAR model per binary family through the export CLI. The CLI's cost is the
# conversion, which grows with the layer count: adabin_vgg_small (same AdaBin objects as
# adabin_resnet20; the other three models cover OptionAShortcut) converts in ~1/3 of
# adabin_resnet20's time.
CLI_MODELS = {
    "adabin": "adabin_vgg_small",
    "reactnet": "reactnet_resnet20",
    "dybnn": "dybnn_resnet20",
    "dwr": "dwr_resnet20",
}

# Runs in the fresh process: ONLY `import larq_adaptive` from the package (numpy and the
# standard library for the I/O). argv: manifest.json, outputs.npz, errors.json.
LOADER = textwrap.dedent(
    """
    import json
    import sys
    import traceback
    import zipfile

    import numpy as np

    import larq_adaptive as lqa


    def unregistered(path):
        \"\"\"Custom objects of a .keras file that `import larq_adaptive` did not register.\"\"\"
        import tensorflow as tf  # already imported by larq_adaptive

        with zipfile.ZipFile(path) as archive:
            stack, missing = [json.loads(archive.read("config.json"))], set()
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                name, module = item.get("registered_name"), str(item.get("module"))
                if name and not module.startswith("keras.") and (
                    tf.keras.saving.get_registered_object(name, lqa.custom_objects()) is None
                ):
                    missing.add(f"{name} (defined in {module})")
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return sorted(missing)


    manifest_path, outputs_path, errors_path = sys.argv[1:]
    with open(manifest_path) as f:
        manifest = json.load(f)
    outputs, errors = {}, {}
    for case, item in manifest.items():
        try:
            model = lqa.load_model(item["path"])
            outputs[case] = model(np.load(item["inputs"]), training=False).numpy()
        except Exception:
            errors[case] = traceback.format_exc()
            if item["path"].endswith(".keras"):
                try:
                    missing = unregistered(item["path"])
                except Exception as error:
                    missing = repr(error)
                errors[case] += f"not registered by `import larq_adaptive`: {missing}"
            print(f"--- {case}: {errors[case]}", file=sys.stderr)
    np.savez(outputs_path, **outputs)
    with open(errors_path, "w") as f:
        json.dump(errors, f)
    """
)


def _zoo_models():
    return available_models()


def _cases():
    """case id -> (registered name, builder kwargs): every zoo model, then the extra cases."""
    cases = {name: (name, {}) for name in _zoo_models()}
    cases.update(EXTRA_CASES)
    return cases


CASES = _cases()


def _is_fast(case):
    name = CASES[case][0]
    if not model_entry(name).binary:
        return False  # float twins: the same layer classes as their binary models (a test)
    return model_entry(name).input_shape == CIFAR_INPUT or name in FAST_IMAGENET_MODELS


FAST_CASES = [case for case in CASES if _is_fast(case)]  # CIFAR + FAST_IMAGENET_MODELS
SLOW_CASES = [case for case in CASES if not _is_fast(case)]  # the other ImageNet models


def _build_input_shape(case):
    native = model_entry(CASES[case][0]).input_shape
    return SMALL_IMAGENET_INPUT if native == IMAGENET_INPUT else native


def _tail(text, lines=25):
    return "\n".join((text or "").strip().splitlines()[-lines:])


def _run(args, cwd):
    """(returncode, stdout, stderr) of a fresh Python process; a timeout is a failure too."""
    try:
        process = subprocess.run(
            [sys.executable, *args], cwd=cwd, env=child_env(), capture_output=True,
            text=True, timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as error:
        return None, error.stdout or "", f"timed out after {TIMEOUT} s\n{error.stderr or ''}"
    return process.returncode, process.stdout, process.stderr


def _perturb(model, rng):
    """Move every float variable off its initial value, as training would: a constant-
    initialized weight (BN statistics, RPReLU shifts, Maxout scales, DyBNN's zero kernels)
    that the loader failed to restore would otherwise go unnoticed."""
    for variable in model.variables:
        if not variable.dtype.is_floating:
            continue
        value = variable.numpy()
        spread = value.std() if value.std() > 0 else max(np.abs(value).max(), 0.1)
        value = value + 0.1 * spread * rng.standard_normal(value.shape)
        if "moving_variance" in variable.name:
            value = np.abs(value)
        variable.assign(value.astype(variable.dtype.as_numpy_dtype))


def _save_and_predict(cases, directory, formats):
    """Build, perturb, save (each format) and predict every case in this process.

    Returns ({case: outputs}, {case: error}, {format: {case: {"path", "inputs"}}}).
    """
    batches, expected, errors = {}, {}, {}
    manifests = {fmt: {} for fmt in formats}
    for case in cases:
        name, kwargs = CASES[case]
        shape = _build_input_shape(case)
        if shape not in batches:
            batch = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
            batches[shape] = (directory / f"inputs_{'x'.join(map(str, shape))}.npy", batch)
            np.save(batches[shape][0], batch)
        inputs_path, batch = batches[shape]
        try:
            tf.keras.backend.clear_session()
            set_random_seed(0)
            model = get_model(name, input_shape=shape, **kwargs)
            assert tuple(model.input_shape[1:]) == shape, model.input_shape
            _perturb(model, np.random.default_rng(1))
            expected[case] = model(batch, training=False).numpy()
            for fmt, wanted in formats.items():
                if case in wanted:
                    path = directory / f"{case}.{fmt}"
                    with warnings.catch_warnings():  # "HDF5 ... is considered legacy"
                        warnings.simplefilter("ignore", UserWarning)
                        model.save(str(path))
                    manifests[fmt][case] = {"path": str(path), "inputs": str(inputs_path)}
        except Exception as error:  # reported by the case's own test
            errors[case] = f"{type(error).__name__}: {error}"
    tf.keras.backend.clear_session()
    return expected, errors, manifests


def _load_in_fresh_process(manifest, directory, fmt):
    """One fresh process loads every file of ``manifest``: ({case: outputs}, {case: error})."""
    manifest_path = directory / f"manifest_{fmt}.json"
    outputs_path = directory / f"outputs_{fmt}.npz"
    errors_path = directory / f"errors_{fmt}.json"
    manifest_path.write_text(json.dumps(manifest))
    returncode, _, stderr = _run(
        ["-c", LOADER, str(manifest_path), str(outputs_path), str(errors_path)], cwd=directory
    )
    if returncode != 0 or not outputs_path.exists() or not errors_path.exists():
        failure = f"the loader process failed (exit {returncode}); stderr tail:\n{_tail(stderr)}"
        return {}, {case: failure for case in manifest}
    with np.load(outputs_path) as data:
        outputs = {case: data[case] for case in data.files}
    errors = json.loads(errors_path.read_text())
    for case in manifest:  # a case with neither outputs nor a traceback: say so
        if case not in outputs and case not in errors:
            errors[case] = f"no output written; loader stderr tail:\n{_tail(stderr)}"
    return outputs, errors


def _merge(parts):
    """Merge several ``_save_and_predict`` results."""
    expected, errors, manifests = {}, {}, {}
    for part_expected, part_errors, part_manifests in parts:
        expected.update(part_expected)
        errors.update(part_errors)
        for fmt, manifest in part_manifests.items():
            manifests.setdefault(fmt, {}).update(manifest)
    return expected, errors, manifests


def _round_trip(directory, cases, formats, cli_models=None):
    """Save every case in this process, then load each format in one fresh process and run
    the export CLI on ``cli_models`` (family -> case) in fresh processes.

    Returns {"formats": {format: (expected, build errors, fresh outputs, fresh errors)},
    "cli": {family: (returncode, stdout, stderr)}}. The subprocesses run two at a time (two
    cores); the exports of the CLI models, saved first, run while the other models are built.
    """
    cli_models = cli_models or {}
    first = [case for case in cases if case in cli_models.values()]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        saved = _save_and_predict(first, directory, formats)
        exports = {}
        for family, case in cli_models.items():
            if case in saved[2]["keras"]:
                model_path, output = directory / f"{case}.keras", directory / f"{case}.tflite"
                exports[family] = pool.submit(
                    _run, ["-m", "larq_adaptive.export", str(model_path), str(output)],
                    directory,
                )
        rest = _save_and_predict([c for c in cases if c not in first], directory, formats)
        expected, build_errors, manifests = _merge([saved, rest])
        loads = {
            fmt: pool.submit(_load_in_fresh_process, manifests[fmt], directory, fmt)
            for fmt in formats
        }
        return {
            "formats": {
                fmt: (expected, build_errors, *future.result()) for fmt, future in loads.items()
            },
            "cli": {family: future.result() for family, future in exports.items()},
            "build_errors": build_errors,
        }


@pytest.fixture(scope="module")
def fast_round_trip(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fresh_fast")
    formats = {"keras": FAST_CASES, "h5": H5_CASES}
    return directory, _round_trip(directory, FAST_CASES, formats, CLI_MODELS)


@pytest.fixture(scope="module")
def slow_round_trip(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fresh_slow")
    return directory, _round_trip(directory, SLOW_CASES, {"keras": SLOW_CASES})


def _check(results, fmt, case):
    expected, build_errors, outputs, errors = results["formats"][fmt]
    assert case not in build_errors, (
        f"{case}: build/save in the test process failed: {build_errors.get(case)}"
    )
    if case not in outputs:
        pytest.fail(
            f"{case}.{fmt} does not load in a fresh process that only imported larq_adaptive:\n"
            f"{_tail(errors.get(case, 'no error recorded'))}"
        )
    want, got = expected[case], outputs[case]
    assert np.isfinite(want).all(), f"{case}: the reference outputs are not finite"
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, got.dtype)
    np.testing.assert_allclose(got, want, rtol=0, atol=0, equal_nan=False,
                               err_msg=f"{case}.{fmt}: fresh-process predictions differ")


# --------------------------------------------------------------------------- the tests


def test_cases_cover_every_registered_model():
    """Binary models and their float twins, CIFAR or ImageNet input, plus the extra cases."""
    zoo = _zoo_models()
    assert zoo and set(FAST_CASES) | set(SLOW_CASES) == set(zoo) | set(EXTRA_CASES)
    assert set(FAST_IMAGENET_MODELS) <= set(zoo)
    for name in zoo:
        assert model_entry(name).input_shape in (CIFAR_INPUT, IMAGENET_INPUT), name
        if model_entry(name).binary:
            assert f"float_{name}" in zoo, f"{name} has no float twin"
    assert set(H5_CASES) <= set(FAST_CASES) and set(CLI_MODELS.values()) <= set(FAST_CASES)
    assert {model_entry(name).family for name in CLI_MODELS.values()} == set(CLI_MODELS)


def _classes(model):
    """Every ``class_name`` in a model's config, nested layers and quantizers included."""
    stack, found = [json.loads(model.to_json())], set()
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.add(item.get("class_name"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found - {None}


@pytest.mark.slow  # builds every model
def test_the_fast_cases_use_every_class_of_every_model():
    """So the fast suite's fresh-process loads cover every class a saved file can hold."""
    found = {}
    for group, cases in (("fast", FAST_CASES), ("slow", SLOW_CASES)):
        found[group] = set()
        for case in cases:
            tf.keras.backend.clear_session()
            name, kwargs = CASES[case]
            found[group] |= _classes(get_model(name, input_shape=_build_input_shape(case),
                                               **kwargs))
    assert found["slow"] <= found["fast"], found["slow"] - found["fast"]


@pytest.mark.parametrize("case", FAST_CASES)
def test_keras_file_loads_in_fresh_process(fast_round_trip, case):
    _check(fast_round_trip[1], "keras", case)


@pytest.mark.parametrize("case", H5_CASES)
def test_h5_file_loads_in_fresh_process(fast_round_trip, case):
    _check(fast_round_trip[1], "h5", case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES)
def test_other_keras_files_load_in_fresh_process(slow_round_trip, case):
    _check(slow_round_trip[1], "keras", case)


@pytest.mark.parametrize("family", sorted(CLI_MODELS))
def test_export_cli_in_fresh_process(fast_round_trip, family):
    directory, results = fast_round_trip
    name = CLI_MODELS[family]
    assert name not in results["build_errors"], results["build_errors"].get(name)
    returncode, stdout, stderr = results["cli"][family]
    assert returncode == 0, (
        f"python -m larq_adaptive.export {name}.keras {name}.tflite exited {returncode}; "
        f"stderr tail:\n{_tail(stderr)}\nstdout tail:\n{_tail(stdout, 10)}"
    )
    assert "binary convs are LceBconv2d" in stdout, _tail(stdout)
    output = directory / f"{name}.tflite"
    assert output.is_file() and output.stat().st_size > 1000
    # The checks of tests/test_export.py, which leaves these models' conversion to this test.
    convs = export.binary_conv_layers(get_model(name))
    assert export.op_histogram(output.read_bytes())["LceBconv2d"] == len(convs), _tail(stdout)
    assert_no_border_maps(output.read_bytes(), max(layer.filters for layer in convs))
