"""Backend registry: names, availability checks and lazy construction."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from backends.base import Backend, MissingFrameworkError


@dataclass(frozen=True)
class _BackendEntry:
    module: str  # module that defines the Backend subclass
    class_name: str
    framework_module: str  # top-level module whose presence means "installed"
    extra: str  # pyproject extra that installs it
    framework: str  # human name


_BACKENDS: dict[str, _BackendEntry] = {
    "tf": _BackendEntry("backends.tf.backend", "TFBackend", "tensorflow", "tf", "TensorFlow"),
    "torch": _BackendEntry(
        "backends.torch.backend", "TorchBackend", "torch", "torch", "PyTorch"
    ),
}

BACKEND_NAMES: tuple[str, ...] = tuple(_BACKENDS)


def _entry(name: str) -> _BackendEntry:
    if name not in _BACKENDS:
        raise ValueError(
            f"unknown backend {name!r}; valid backends: {', '.join(BACKEND_NAMES)}"
        )
    return _BACKENDS[name]


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
            f"pip install -e '.[{entry.extra}]' (or run `make setup`)"
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
