"""Backend registry: names, availability checks and lazy construction."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from dataclasses import dataclass

from backends.base import Backend, MissingFrameworkError


@dataclass(frozen=True)
class _BackendEntry:
    module: str  # module that defines the Backend subclass
    class_name: str
    framework_module: str  # top-level module whose presence means "installed"
    extra: str  # pyproject extra that installs it
    framework: str  # human name
    keras_backend: str | None = None  # KERAS_BACKEND it pins, for the Keras backends
    make_target: str = "setup"  # the Makefile target that installs the extra


_BACKENDS: dict[str, _BackendEntry] = {
    "tf": _BackendEntry("backends.tf.backend", "TFBackend", "tensorflow", "tf", "TensorFlow",
                        keras_backend="tensorflow"),
    "torch": _BackendEntry(
        "backends.torch.backend", "TorchBackend", "torch", "torch", "PyTorch"
    ),
    # The Keras models of backends/keras/ on Keras 3's JAX backend; Keras runs one backend
    # per process, so tf and keras-jax never share one (each worker runs one backend).
    "keras-jax": _BackendEntry(
        "backends.keras_jax.backend", "KerasJaxBackend", "jax", "jax", "Keras on JAX",
        keras_backend="jax", make_target="setup-jax",
    ),
    # JAX as its users write it: Flax NNX models and a jitted train step (backends/jax/).
    "jax": _BackendEntry("backends.jax.backend", "JaxBackend", "flax", "jax", "JAX (Flax NNX)",
                         make_target="setup-jax"),
}

BACKEND_NAMES: tuple[str, ...] = tuple(_BACKENDS)

# What each framework answers, in a fresh interpreter, to "which GPU would you compute
# on?": the device name, or nothing for the CPU; then its version. Both JAX backends ask
# JAX, after backends.jax has turned XLA's GPU memory preallocation off.
_JAX_GPU_QUERY = ("import backends.jax, jax; d = jax.devices()[0]; "
                  "print(d.device_kind if d.platform == 'gpu' else ''); "
                  "print('jax', jax.__version__)")
_GPU_QUERIES = {
    "tf": "import tensorflow as tf; g = tf.config.list_physical_devices('GPU'); "
          "print(tf.config.experimental.get_device_details(g[0]).get('device_name', 'gpu') "
          "if g else ''); print('tensorflow', tf.__version__)",
    "torch": "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() "
             "else ''); print('torch', torch.__version__)",
    "keras-jax": _JAX_GPU_QUERY,
    "jax": _JAX_GPU_QUERY,
}

# What a framework answers, in a fresh interpreter, to "why can you not train in bfloat16
# here?": one line, empty where it can. A framework not named here always can.
_BFLOAT16_QUERIES = {
    "tf": "from backends.tf.backend import bfloat16_refusal; print(bfloat16_refusal() or '')",
}


def _entry(name: str) -> _BackendEntry:
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}"
        )
    return _BACKENDS[name]


def sharing_one_process(names: list[str]) -> tuple[list[str], list[str]]:
    """Which of `names` one process can create together, and which it cannot.

    Keras runs one backend per process (`backends.keras.pin_keras_backend`), so of the
    Keras backends only the first named is kept; the others need a process of their own.

    Args:
        names: registered backend names, the one to keep first where Keras must choose.

    Returns:
        The names one process can hold, and those left out, each in the given order.
    """
    kept, left_out, keras = [], [], None
    for name in names:
        wanted = _entry(name).keras_backend
        if wanted is not None and keras not in (None, wanted):
            left_out.append(name)
            continue
        keras = keras or wanted
        kept.append(name)
    return kept, left_out


def runs_in_this_process(name: str) -> bool:
    """Whether this process can create backend `name`, as far as Keras decides.

    As `pin_keras_backend` decides: a backend that pins no Keras backend always can; a
    Keras backend can unless Keras is imported here already, on another backend.

    Args:
        name: a backend name from BACKEND_NAMES.
    """
    wanted = _entry(name).keras_backend
    keras = sys.modules.get("keras")
    return wanted is None or keras is None or keras.backend.backend() == wanted


def check_available(name: str) -> None:
    """Raises MissingFrameworkError if the framework behind `name` is not installed.

    Args:
        name: a backend name from BACKEND_NAMES.

    Raises:
        ValueError: unknown backend name.
        MissingFrameworkError: the framework is not importable here.
    """
    entry = _entry(name)
    if importlib.util.find_spec(entry.framework_module) is None:
        raise MissingFrameworkError(
            f"backend {name!r} needs {entry.framework}, which is not installed: "
            f"pip install -e '.[{entry.extra}]' (or run `make {entry.make_target}`)"
        )


def create_backend(
    name: str, threads: int | None = None, deterministic: bool = False
) -> Backend:
    """Imports the framework behind `name` and returns a fresh Backend.

    Args:
        name: a backend name from BACKEND_NAMES.
        threads: intra- and inter-op thread count, applied before any op runs;
            None keeps the framework's default.
        deterministic: turn on the framework's deterministic-algorithm switches.

    Returns:
        A Backend with no model built yet.
    """
    check_available(name)
    entry = _entry(name)
    cls = getattr(importlib.import_module(entry.module), entry.class_name)
    return cls(threads=threads, deterministic=deterministic)


def visible_gpu(name: str) -> tuple[str | None, str]:
    """The GPU backend `name` would compute on, asked in a fresh interpreter.

    A fresh one because importing a framework here would start its runtime in a process
    that trains nothing (the command that starts the workers) and fix its settings
    before a worker could choose them.

    Args:
        name: a backend name from BACKEND_NAMES.

    Returns:
        (the GPU's name, or None for the CPU; the framework and its version, e.g.
        "torch 2.13.0+cpu").

    Raises:
        MissingFrameworkError: the framework is not installed.
        RuntimeError: the framework failed to start (its last line of stderr).
    """
    check_available(name)
    done = subprocess.run([sys.executable, "-c", _GPU_QUERIES[name]], capture_output=True,
                          text=True, check=False)
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) < 2:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{name}: could not ask for a GPU: {last}")
    return (lines[-2].strip() or None), lines[-1].strip()


def bfloat16_refusal(name: str) -> str | None:
    """Why backend `name` cannot train in bfloat16 on this machine, asked in a fresh
    interpreter (as `visible_gpu`, and for the same reason).

    Args:
        name: a backend name from BACKEND_NAMES.

    Returns:
        One line naming the problem and the fix; None where it can.

    Raises:
        MissingFrameworkError: the framework is not installed.
        RuntimeError: the framework failed to start (its last line of stderr).
    """
    check_available(name)
    if name not in _BFLOAT16_QUERIES:
        return None
    done = subprocess.run([sys.executable, "-c", _BFLOAT16_QUERIES[name]], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{name}: could not ask about bfloat16: {last}")
    return (done.stdout.strip().splitlines() or [""])[-1] or None
