"""The house rules of the layout (docs/design.md, "Module map"), read from the source.

Imports run down the layers (LAYERS): data flows one way, from the runs through the records
to the reports, and a lower layer never reaches up for a name.

Imports inside functions count too: a circle hidden behind a function-level import (as
`backends.base` → fault injection → `backends.registry` → `backends.base` once was) is
still a circle in the design, only one that fails later.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backends", "benchmarks", "datasets")
FRAMEWORKS = ("torch", "tensorflow", "keras", "jax", "jaxlib", "flax", "optax")
# The layers, bottom first (docs/design.md, "Module map"). A module imports from its own
# unit (a package, or a module named here) and from the units of lower layers only: the
# units of one layer are peers that import nothing from each other (the runner writes
# records, the report reads them). Every module in no unit is a command: a top-level module
# of `benchmarks` (`python -m benchmarks.X`) or a package's `__main__`.
LAYERS = (
    ("backends", "datasets", "benchmarks.console", "benchmarks.messages", "benchmarks.trackers"),
    ("benchmarks.backend_choice",),
    ("benchmarks.record",),
    ("benchmarks.analysis",),
    ("benchmarks.runner", "benchmarks.report"),
    ("benchmarks.grid", "benchmarks.ci"),
    ("benchmarks.reproduce", "benchmarks.leaderboard"),
)
COMMANDS = "commands"
# The only imports between two commands; docs/design.md's module map says why each stays.
COMMAND_IMPORTS = {
    # `benchmarks.report --explain` runs what `benchmarks.explain` does, then the report.
    ("benchmarks.report.__main__", "benchmarks.explain"),
    # The precision study runs its configurations through the GPU check's `run_configs`.
    ("benchmarks.precision", "benchmarks.gpu_check"),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES
            for path in sorted((ROOT / package).rglob("*.py"))}


def _imports(path: Path, name: str) -> set[str]:
    """What `path` imports anywhere in it: for `import a.b` "a.b", for `from a import x`
    "a.x" where that is a module, else "a"."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    modules = _modules()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found


def _graph() -> dict[str, set[str]]:
    """Project module → the project modules it imports.

    A submodule's import of its own package's other modules does not count as importing
    the package: Python has the package in sys.modules by then, half-initialised or not,
    and only names taken from the package itself (`from a import name`) need it complete.
    """
    modules = _modules()
    return {name: {t for t in _imports(path, name) if t in modules} - {name}
            for name, path in modules.items()}


def _unit(module: str) -> tuple[str, int]:
    """The unit `module` belongs to and its layer (len(LAYERS) for a command)."""
    if module.endswith(".__main__"):
        return COMMANDS, len(LAYERS)
    for layer, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(f"{unit}."):
                return unit, layer
    return COMMANDS, len(LAYERS)


def _imports_not_down(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) of every import into another unit of the same layer or of a
    higher one; `benchmarks` itself (the package that puts the checkout on sys.path) is
    every module's and counts as none."""
    found = []
    for module, targets in sorted(graph.items()):
        unit, layer = _unit(module)
        for target in sorted(targets - {"benchmarks"}):
            target_unit, target_layer = _unit(target)
            if target_layer > layer or (target_layer == layer and (
                    target_unit != unit or unit == COMMANDS)):
                found.append((module, target))
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph`, as a path that ends where it starts; None if none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_circle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_in_a_circle():
    graph = _graph()
    assert len(graph) > 40  # every module of the three packages was read
    assert _cycle(graph) is None


def test_the_layer_rule_finds_an_import_up_or_across():
    graph = {"benchmarks.record.schema": {"benchmarks.runner.config"},
             "benchmarks.runner.launch": {"benchmarks.report", "benchmarks.record.store"},
             "benchmarks.grid.driver": {"benchmarks.report", "benchmarks.runner.data"},
             "benchmarks.run": {"benchmarks.compare", "benchmarks.runner.launch"},
             "benchmarks.grid.__main__": {"benchmarks.grid.driver", "benchmarks.run"}}
    assert _imports_not_down(graph) == [
        ("benchmarks.grid.__main__", "benchmarks.run"),
        ("benchmarks.record.schema", "benchmarks.runner.config"),
        ("benchmarks.run", "benchmarks.compare"),
        ("benchmarks.runner.launch", "benchmarks.report")]


def test_imports_run_down_the_layers():
    graph = _graph()
    assert {module for module in graph if _unit(module)[0] != COMMANDS} >= {
        "benchmarks.record.schema", "benchmarks.runner.launch", "backends.base"}
    found = set(_imports_not_down(graph))
    # A stale exception fails too: the module map would explain an import that is gone.
    assert found == COMMAND_IMPORTS


@pytest.mark.parametrize("package", ["backends", "datasets"])
def test_backends_and_datasets_import_nothing_from_benchmarks(package):
    offenders = {name: sorted(t for t in targets if t.split(".")[0] == "benchmarks")
                 for name, targets in _graph().items() if name.split(".")[0] == package}
    assert {name: t for name, t in offenders.items() if t} == {}


def test_the_record_analysis_and_report_never_import_a_framework():
    # They read records on machines that may have neither framework installed.
    modules = _modules()
    for name, path in modules.items():
        if name.split(".")[:2] in (["benchmarks", "record"], ["benchmarks", "analysis"],
                                   ["benchmarks", "report"]):
            roots = {imported.split(".")[0] for imported in _imports(path, name)}
            assert not roots & set(FRAMEWORKS), name


def _files(package: str) -> list[str]:
    return sorted(p.name for p in (ROOT / "backends" / package).glob("*.py"))


# The Keras backends' own packages; their models, optimizers, loss and weight conversion
# are the shared backends/keras/'s.
KERAS_FRAMEWORK_PACKAGES = ("tf", "keras_jax")


def test_the_frameworks_mirror_each_other_file_for_file():
    torch_files = _files("torch")
    assert "export.py" in torch_files
    # torch's models.py is the shared Keras package's, with what Keras alone needs:
    # optimizers that take torch's updates, the loss and precision policies in Keras ops,
    # and the conversion of Keras's weights to torch's canonical layout.
    assert _files("keras") == sorted(
        ["__init__.py", "models.py", "optimizers.py", "training.py", "weights.py"])
    assert _files("tf") == [f for f in torch_files if f != "models.py"]
    assert _files("keras_jax") == [f for f in torch_files if f != "models.py"]
    # Native JAX: torch's files, and optimizers that take torch's updates (torch's are
    # torch.optim itself).
    assert _files("jax") == sorted([*torch_files, "optimizers.py"])


def _backend_methods(package: str) -> set[str]:
    """The methods of `Backend` that backends/<package>/backend.py's subclass defines."""
    declared = {node.name for node in ast.walk(ast.parse(
        (ROOT / "backends" / "base.py").read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef) and node.name == "Backend"
        for node in node.body if isinstance(node, ast.FunctionDef)}
    tree = ast.parse((ROOT / "backends" / package / "backend.py").read_text(encoding="utf-8"))
    return {item.name for node in tree.body if isinstance(node, ast.ClassDef)
            and any(getattr(base, "id", None) == "Backend" for base in node.bases)
            for item in node.body if isinstance(item, ast.FunctionDef)} & declared


def test_the_native_backends_mirror_each_other_method_for_method():
    methods = {package: _backend_methods(package) for package in ("torch", "jax")}
    assert {"_train_epoch", "get_weights", "_stage_gradients"} <= methods["torch"]
    assert methods["jax"] == methods["torch"]


def test_the_shared_keras_package_is_the_same_on_every_keras_backend():
    """backends/keras/ imports keras alone, no backend of Keras's, and nothing of the
    framework packages, which import it after pinning KERAS_BACKEND; those import nothing
    of each other (a process runs one Keras backend)."""
    graph, modules = _graph(), _modules()

    def packages(targets: set[str]) -> set[str]:  # "backends.tf.runtime" → "tf"
        return {t.split(".")[1] for t in targets if t.startswith("backends.")}

    for name, path in modules.items():
        if name.startswith("backends.keras."):
            roots = {imported.split(".")[0] for imported in _imports(path, name)}
            assert "keras" in roots and not roots & {"tensorflow", "jax", "torch"}, name
            assert not packages(graph[name]) & set(KERAS_FRAMEWORK_PACKAGES), name
    for package in KERAS_FRAMEWORK_PACKAGES:
        others = set(KERAS_FRAMEWORK_PACKAGES) - {package}
        for name in (m for m in graph if m.startswith(f"backends.{package}.")):
            assert not packages(graph[name]) & others, name
    # The package's own module pins nothing and imports no framework: each framework
    # package calls its `pin_keras_backend` first.
    init = modules["backends.keras"]
    assert not {m.split(".")[0] for m in _imports(init, "backends.keras")} & set(FRAMEWORKS)
