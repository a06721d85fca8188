"""Which backends a command runs, and which one the others are judged against.

The one reading of `--backend` and `--reference-backend`, shared by every command that
takes them (`benchmarks.run`, the CI check, `benchmarks.overhead`, the report and
explain commands), by a grid spec's `reference_backend` and by the report's framework
verdicts:

* `--backend` takes a registered backend name (`backends.BACKEND_NAMES`), a comma list of
  them (`tf,jax`), `both` (tf and torch, the pair the suite compared first: documented
  commands keep their meaning as backends are added) or `all` (every registered backend
  whose framework is installed; the ones that are not are named on one line, and `all`
  fails only where none is).
* The reference backend is the one every other backend's framework verdict is against
  (docs/design.md §11): the one named, which must be among the backends compared, else
  torch where it is among them, else the first of them in the registry's order.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from backends import MissingFrameworkError, check_available, registry

PAIR_ALIAS = "both"
PAIR = ("tf", "torch")
ALL_ALIAS = "all"
DEFAULT_REFERENCE = "torch"


def add_backend_option(parser: argparse.ArgumentParser,
                       registered: tuple[str, ...] | None = None,
                       default: str = PAIR_ALIAS) -> None:
    """Adds `--backend`, read by `expand_backends`.

    Args:
        parser: the command's parser.
        registered: the backend names the command can run; None: the registry's.
        default: the value when the option is not given.
    """
    registered = registered or registry.BACKEND_NAMES
    parser.add_argument("--backend", default=default, metavar="NAME[,NAME…]|both|all",
                        help=f"the backends: one of {', '.join(registered)}, a comma list "
                             f"of them (e.g. {','.join(registered[:2])}), {PAIR_ALIAS} "
                             f"({', '.join(PAIR)}) or {ALL_ALIAS} (every backend whose "
                             f"framework is installed) (default: {default})")


def add_reference_option(parser: argparse.ArgumentParser) -> None:
    """Adds `--reference-backend`, read by `reference_backend`.

    Args:
        parser: the command's parser.
    """
    parser.add_argument("--reference-backend", default=None, metavar="NAME",
                        help="the backend every other backend's framework verdict is "
                             "against, one of the backends compared (default: "
                             f"{DEFAULT_REFERENCE} where it is among them, else the first "
                             "in the registry's order)")


def missing_framework(name: str) -> str | None:
    """Why backend `name` cannot run here: its framework is not installed.

    Args:
        name: a backend name from BACKEND_NAMES.

    Returns:
        The registry's one line naming the framework and the extra that installs it
        (`backends.check_available`); None where the framework is installed.
    """
    try:
        check_available(name)
    except MissingFrameworkError as error:
        return str(error)
    return None


@dataclass(frozen=True)
class BackendChoice:
    """The backends a `--backend` value names.

    Attributes:
        backends: the backends to run, each once, in the order given (`all`: the
            registry's order).
        skipped: registered backends `all` left out because their framework is not
            installed; empty for every other form.
        reasons: for each of `skipped`, the registry's line naming its framework and the
            extra that installs it.
    """

    backends: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()

    def skipped_line(self) -> str | None:
        """One line naming the backends `all` left out and how to install them; None when
        it left out none."""
        if not self.skipped:
            return None
        return f"--backend all: skipping {', '.join(self.skipped)}: {'; '.join(self.reasons)}"


def expand_backends(choice: str, registered: tuple[str, ...] | None = None,
                    missing: Callable[[str], str | None] = missing_framework,
                    ) -> BackendChoice:
    """The backends `--backend choice` names.

    Args:
        choice: a registered name, a comma list of them, `both` or `all`.
        registered: the names that exist: a command's own subset, or None for the
            registry's (`backends.BACKEND_NAMES`, read when called).
        missing: why a backend's framework is not installed, None where it is (asked for
            `all` only: a named backend that is not installed is refused by the command's
            own check, which names the extra).

    Returns:
        The backends, and what `all` skipped.

    Raises:
        ValueError: an empty item, an unknown name, a name given twice, `both` where tf
            or torch is not registered, or `all` where no framework is installed; one
            line naming the problem and what is valid.
    """
    registered = registered or registry.BACKEND_NAMES
    valid = f"valid backends: {', '.join(registered)}, {PAIR_ALIAS} ({', '.join(PAIR)}), " \
            f"{ALL_ALIAS}, or a comma list such as {','.join(registered[:2])}"
    text = choice.strip()
    if text == ALL_ALIAS:
        reasons = {name: missing(name) for name in registered}
        present = tuple(name for name, reason in reasons.items() if reason is None)
        if not present:
            raise ValueError(f"--backend all: no backend's framework is installed; install "
                             f"one (`make setup`); {valid}")
        skipped = tuple(name for name in registered if name not in present)
        return BackendChoice(present, skipped, tuple(reasons[name] for name in skipped))
    if text == PAIR_ALIAS:
        names = list(PAIR)
    else:
        names = [name.strip() for name in text.split(",")]
    if any(not name for name in names):
        raise ValueError(f"--backend {choice!r} has an empty item; {valid}")
    for name in names:
        if name not in registered:
            raise ValueError(f"unknown backend {name!r}; {valid}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--backend names {', '.join(repeated)} more than once; name each "
                         f"backend once (for replicates use --seeds N)")
    return BackendChoice(tuple(names))


def registry_order(names: Iterable[str]) -> list[str]:
    """The distinct names, the registered ones first in the registry's order
    (tf, torch, …), then any other (an older record's) alphabetically.

    Args:
        names: backend names, repeats allowed.

    Returns:
        Each name once.
    """
    rank = {name: i for i, name in enumerate(registry.BACKEND_NAMES)}
    return sorted(set(names), key=lambda b: (rank.get(b, len(rank)), b))


def reference_backend(backends: Iterable[str], chosen: str | None = None,
                      setting: str = "--reference-backend") -> str | None:
    """The backend the others' framework verdicts are against.

    Args:
        backends: the backends compared (a run's, or a report's records').
        chosen: `--reference-backend` (or a grid spec's `reference_backend`), or None for
            the default.
        setting: what set `chosen`, as the error names it: the option, or a spec's key.

    Returns:
        `chosen`; else DEFAULT_REFERENCE where it is among `backends`; else the first of
        them in `registry_order`; None when there are none.

    Raises:
        ValueError: `chosen` is not among `backends` (one line naming them).
    """
    present = registry_order(backends)
    if chosen is not None:
        if chosen not in present:
            raise ValueError(f"{setting} {chosen!r} is not among the backends "
                             f"compared ({', '.join(present) or 'none'}); name one of them")
        return chosen
    if DEFAULT_REFERENCE in present:
        return DEFAULT_REFERENCE
    return present[0] if present else None
