"""Process-wide TensorFlow settings of a run: the mixed-precision policy, what the CPU offers
for bfloat16, and the thread pools."""

from pathlib import Path

import tensorflow as tf

__all__ = ["BFLOAT16_CPU_FLAGS", "POLICIES", "bfloat16_cpu_flags", "bfloat16_note",
           "set_threads"]

# --mixed-precision VALUE -> Keras global policy.
POLICIES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
# x86 CPU flags (Linux /proc/cpuinfo names) under which oneDNN runs bfloat16 convolutions
# natively; without them TensorFlow emulates bfloat16 and is several times *slower* than
# float32 (docs/training.md, "Mixed precision").
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The flags of the first CPU in ``cpuinfo`` (Linux), or None where it is not readable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return None


def bfloat16_cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The bfloat16 flags of this CPU (a subset of ``BFLOAT16_CPU_FLAGS``; empty: none), or
    None if unknown (no ``/proc/cpuinfo``: not Linux)."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else [f for f in BFLOAT16_CPU_FLAGS if f in flags]


def bfloat16_note(cpuinfo="/proc/cpuinfo"):
    """One line for a bfloat16 run on a CPU without native bfloat16 (None if it has it, or
    if a GPU is visible: the policy then runs there)."""
    if tf.config.list_physical_devices("GPU"):
        return None
    flags = bfloat16_cpu_flags(cpuinfo)
    if flags:
        return None
    found = "none of" if flags == [] else "cannot tell whether it has"
    return (f"note: this CPU has {found} {', '.join(BFLOAT16_CPU_FLAGS)}: TensorFlow emulates "
            "bfloat16 here, which trains correctly but slower than float32")


def bfloat16_cpu_line(cpuinfo="/proc/cpuinfo"):
    """``CPU bfloat16 flags: ...``: the line the speed benchmarks print."""
    flags = bfloat16_cpu_flags(cpuinfo)
    if flags is None:
        return "CPU bfloat16 flags: unknown (no /proc/cpuinfo)"
    if not flags:
        return (f"CPU bfloat16 flags: none of {', '.join(BFLOAT16_CPU_FLAGS)}: bfloat16 is "
                "emulated here (slower than float32)")
    return f"CPU bfloat16 flags: {', '.join(flags)}"


def set_threads(intra_op=None, inter_op=None):
    """Set TensorFlow's thread pools (None or 0: TensorFlow's default, one thread per core).
    Must run before TensorFlow executes its first op; False if that was too late."""
    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:  # the runtime is already initialised (e.g. a second main() call)
        return False
    return True
