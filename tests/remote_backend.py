"""A Backend in a child process of its own, for the backends the test process cannot host.

Keras runs one backend per process, and the test process's Keras is TensorFlow's (the tf
tests reach into its models), so keras-jax runs in a child process, as each benchmark
worker runs one backend in its own. `RemoteBackend` forwards every method call and
attribute read to a Backend there and returns the (pickled) result: numpy arrays, dicts,
logs. `run_in_backend_process` runs a module-level function there instead.

One child serves each (backend, threads) for the whole session; it exits when the test
process closes its end of the pipe. This module imports no framework, so a spawned child
starts clean and pins its own KERAS_BACKEND.
"""

from __future__ import annotations

import importlib
import multiprocessing
import traceback
import weakref
from collections.abc import Callable
from typing import Any

_SERVERS: dict[tuple[str, int | None], _Server] = {}


def _serve(connection, name: str, threads: int | None) -> None:
    """The child's loop: answers requests until the parent closes the pipe.

    Args:
        connection: the child's end of the pipe.
        name: the backend this child hosts.
        threads: the backend's thread setting (XLA's is fixed once per process).
    """
    from backends import create_backend  # the backend's package pins its KERAS_BACKEND

    backends: dict[int, Any] = {}
    while True:
        try:
            request, *fields = connection.recv()
        except EOFError:
            return
        try:
            if request == "create":
                (key,) = fields
                backends[key] = create_backend(name, threads=threads)
                reply = None
            elif request == "drop":
                backends.pop(fields[0], None)
                continue
            elif request == "getattr":
                key, attribute = fields
                value = getattr(backends[key], attribute)
                reply = ("method", None) if callable(value) else ("value", value)
            elif request == "call":
                key, method, args, kwargs = fields
                reply = getattr(backends[key], method)(*args, **kwargs)
            else:  # "run"
                module, function, args, kwargs = fields
                reply = getattr(importlib.import_module(module), function)(*args, **kwargs)
            connection.send(("ok", reply))
        except Exception as error:  # sent back and raised in the parent, traceback noted
            connection.send(("error", _picklable(error), traceback.format_exc()))


def _picklable(error: Exception) -> Exception:
    """`error` itself where pickle takes it (ValueError and the like), else a RuntimeError."""
    import pickle

    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


class _Server:
    """The parent's handle on one child process."""

    def __init__(self, name: str, threads: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, name, threads), daemon=True)
        self.process.start()
        child.close()
        self.next_key = 0

    def ask(self, *request: Any) -> Any:
        self.connection.send(request)
        status, *answer = self.connection.recv()
        if status == "error":
            error, remote_traceback = answer
            error.add_note(f"in the backend's process:\n{remote_traceback}")
            raise error
        return answer[0]

    def tell(self, *request: Any) -> None:
        if self.process.is_alive():
            self.connection.send(request)


def _server(name: str, threads: int | None) -> _Server:
    key = (name, threads)
    if key not in _SERVERS or not _SERVERS[key].process.is_alive():
        _SERVERS[key] = _Server(name, threads)
    return _SERVERS[key]


class RemoteBackend:
    """Backend `name` in its child process: methods and attributes as the Backend's.

    Args:
        name: a backend name from BACKEND_NAMES.
        threads: its thread setting; None keeps the framework's default.
    """

    def __init__(self, name: str, threads: int | None = None) -> None:
        server = _server(name, threads)
        self._server, self._key = server, server.next_key
        server.next_key += 1
        server.ask("create", self._key)
        # Frees the child's backend (and its model) with this proxy.
        weakref.finalize(self, server.tell, "drop", self._key)

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__") or attribute in ("_server", "_key"):
            raise AttributeError(attribute)
        kind, value = self._server.ask("getattr", self._key, attribute)
        if kind == "value":
            return value

        def method(*args: Any, **kwargs: Any) -> Any:
            return self._server.ask("call", self._key, attribute, args, kwargs)

        return method


def run_in_backend_process(name: str, function: Callable[..., Any], *args: Any,
                           threads: int | None = None, **kwargs: Any) -> Any:
    """Runs `function(*args, **kwargs)` in backend `name`'s child process.

    Args:
        name: the backend whose child runs it.
        function: a module-level function of a module that imports no Keras at its top
            (the child imports that module).
        *args: its arguments, picklable.
        threads: the child's thread setting.
        **kwargs: its keyword arguments, picklable.

    Returns:
        What it returns (picklable).
    """
    return _server(name, threads).ask("run", function.__module__, function.__name__, args,
                                      kwargs)
