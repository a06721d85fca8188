"""Native JAX backend: Flax NNX model definitions (models.py) and trainer (backend.py).

XLA reserves 75% of a GPU's memory when its client starts, so the memory trackers (NVML's
per-process figure, `gpu_allocator_peak_mb`) would read the reservation, not the run's
use; with preallocation off XLA allocates what the run needs, as torch's caching
allocator and TF under memory growth do (docs/design.md §5). The switch is read when
JAX's client starts, so this package sets it before anything imports jax.
"""

import os

_PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
if os.environ.get(_PREALLOCATE, "false").lower() not in ("false", "0"):
    raise RuntimeError(
        f"{_PREALLOCATE}={os.environ[_PREALLOCATE]!r}: FER-Bench's jax backend needs "
        f"{_PREALLOCATE}=false so that memory peaks are the run's own (unset it or set it so)"
    )
os.environ[_PREALLOCATE] = "false"
