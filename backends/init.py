"""Framework-neutral initial weights, so both frameworks start from the same point.

`shared_initial_weights` redraws every multi-dimensional parameter (conv and dense
kernels) from a numpy generator seeded per parameter name and zeroes every `.bias`, then
the backend loads the result with `set_weights`. All other 1-D entries (BN/GroupNorm
scales and statistics, attention constants) keep the model's own deterministic initial
values, which the two frameworks define identically.
"""

from __future__ import annotations

import zlib

import numpy as np

INIT_MODES = ("shared", "native")


def shared_initial_weights(template: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """Returns initial weights drawn from the canonical layout of `template`.

    Kernels get He-uniform values (bound sqrt(6 / fan_in)), which suits the ReLU
    networks of the zoo; the fan-in of an OIHW or (out, in) array is its size divided by
    its first dimension.

    Args:
        template: a freshly built model's `get_weights()`; only names, shapes and the
            1-D values are used.
        seed: the run's seed.

    Returns:
        A new dict with the same keys and shapes, float32.
    """
    weights = {}
    for name, value in template.items():
        if value.ndim > 1:
            fan_in = value.size // value.shape[0]
            bound = np.sqrt(6.0 / fan_in)
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            weights[name] = rng.uniform(-bound, bound, value.shape).astype(np.float32)
        elif name.endswith(".bias"):
            weights[name] = np.zeros_like(value, dtype=np.float32)
        else:
            weights[name] = np.asarray(value, dtype=np.float32).copy()
    return weights
