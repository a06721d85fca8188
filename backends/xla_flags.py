"""The XLA CPU switch both JAX backends set (their runtime.py), in one place.

jaxlib 0.10's XLA hands most convolutions on a CPU to YNNPACK. On the 2-core AVX2
development host Eigen, XLA's older convolution library, runs nearly all of the zoo's
convolutions faster: forward and backward to the input up to 2.6×, backward to a 1×1
kernel up to 5.8× (`python -m benchmarks.conv_timing`, resnet50), and training steps
1.05–1.9× faster, every model (docs/measurement.md, "Why XLA trains resnet50 slowly on
this CPU"). The switch picks the library
that computes a convolution, not the arithmetic: both compute in IEEE float32, and the
trajectories part from torch's within every parity test's tolerance. It is an XLA flag,
read once when JAX's client starts, so the runtimes write it to XLA_FLAGS with their others.

This module imports no framework: a runtime passes jaxlib's version in.
"""

from __future__ import annotations

import re

EIGEN_CONVOLUTION_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
# The first jaxlib the switch was measured on. XLA aborts the whole process on a flag it
# does not know, and older jaxlibs may lack this one (or run convolutions on Eigen
# already), so they keep XLA's default.
EIGEN_CONVOLUTION_MIN_JAXLIB = (0, 10)


def cpu_convolution_flags(jaxlib_version: str, xla_flags: str = "") -> tuple[str, ...]:
    """The XLA_FLAGS entries that put XLA's CPU convolutions on Eigen, for this jaxlib.

    Args:
        jaxlib_version: `jaxlib.__version__`, e.g. "0.10.2".
        xla_flags: XLA_FLAGS as set so far.

    Returns:
        EIGEN_CONVOLUTION_FLAGS from jaxlib EIGEN_CONVOLUTION_MIN_JAXLIB on; () before it,
        and where `xla_flags` sets the switch already: a value of one's own stands (e.g.
        `benchmarks.conv_timing --xla-flags` putting convolutions back on YNNPACK).

    Raises:
        ValueError: the version does not start with major.minor numbers.
    """
    match = re.match(r"(\d+)\.(\d+)", jaxlib_version)
    if match is None:
        raise ValueError(f"jaxlib_version must start with major.minor. "
                         f"Received: jaxlib_version={jaxlib_version!r}")
    if (int(match.group(1)), int(match.group(2))) < EIGEN_CONVOLUTION_MIN_JAXLIB:
        return ()
    names = {flag.split("=", 1)[0] for flag in xla_flags.split()}
    return tuple(flag for flag in EIGEN_CONVOLUTION_FLAGS if flag.split("=", 1)[0] not in names)
