"""Session settings for the test suite.

`FERBENCH_TEST_THREADS=N make test` runs every in-process test with N compute threads per
framework instead of each framework's default (one per core), so that the parity
tolerances can be shown to hold at another thread count, as docs/design.md ("Tolerances
from a noise floor") asks of every gate host. Nothing here pins numerics by default: the
tests run with each framework's defaults, as the suite's own runs do.
"""

from __future__ import annotations

import os

THREADS_VARIABLE = "FERBENCH_TEST_THREADS"


def pytest_configure(config) -> None:
    apply_test_threads()


def apply_test_threads() -> None:
    """Sets both frameworks' thread pools to FERBENCH_TEST_THREADS, where it is set.

    Raises:
        ValueError: the variable is not an integer ≥ 1.
    """
    threads = os.environ.get(THREADS_VARIABLE)
    if not threads:
        return
    if not threads.isdigit() or int(threads) < 1:
        raise ValueError(f"{THREADS_VARIABLE} must be an integer ≥ 1. Received: {threads!r}")
    import tensorflow as tf
    import torch

    torch.set_num_threads(int(threads))
    tf.config.threading.set_intra_op_parallelism_threads(int(threads))
    tf.config.threading.set_inter_op_parallelism_threads(int(threads))
