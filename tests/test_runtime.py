"""Each framework's `configure_runtime` applies what it is asked, and its users agree on it.

Runtime settings are process-global and only take before the framework's first op, so
each check runs in a fresh interpreter that prints its findings as JSON.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import backend_params, missing_framework

ROOT = Path(__file__).resolve().parent.parent
# One more thread than there are CPUs: a pool size no framework picks by default.
THREADS = (os.cpu_count() or 1) + 1
# Tiny 3-channel images: with one channel an NCHW tensor is also channels-last contiguous,
# so a layout check on FER's grayscale images could not fail.
TINY_DATA = (
    "import numpy as np; "
    "x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8); "
    "y = np.arange(8) % 7"
)


def _run(script: str) -> dict:
    """Runs `script` in a fresh interpreter at the repository root; returns its last line."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# --- torch ---------------------------------------------------------------------------
def test_torch_runtime_sets_the_threads_asked_for():
    pytest.importorskip("torch")
    found = _run(f"""
        import json, torch
        from backends.torch.runtime import configure_runtime
        settings = configure_runtime({THREADS}, deterministic=False)
        print(json.dumps({{
            "threads": [torch.get_num_threads(), torch.get_num_interop_threads()],
            "reported": [settings.intra_op_threads, settings.inter_op_threads],
            "memory_format": str(settings.memory_format),
            "cudnn_benchmark": [torch.backends.cudnn.benchmark, settings.cudnn_benchmark],
            "tf32": settings.tf32,
        }}))
    """)
    assert found["threads"] == found["reported"] == [THREADS, THREADS]
    assert found["memory_format"] == "torch.channels_last"
    assert found["cudnn_benchmark"] == [True, True]  # autotuning unless deterministic
    assert found["tf32"] is False


def test_torch_backend_flags_report_its_runtime_settings():
    pytest.importorskip("torch")
    found = _run(f"""
        import json, torch
        from backends.torch.backend import TorchBackend
        backend = TorchBackend(threads={THREADS}, deterministic=True)
        runtime = backend.runtime
        backend.build("proposed_cnn", (16, 16, 3), 7)
        batch = backend._to_input(torch.zeros(2, 16, 16, 3, dtype=torch.uint8))
        print(json.dumps({{
            "flags": backend.flags(),
            "runtime": {{
                "device": str(runtime.device),
                "channels_last": runtime.memory_format == torch.channels_last,
                "intra_op_threads": runtime.intra_op_threads,
                "inter_op_threads": runtime.inter_op_threads,
                "deterministic": runtime.deterministic,
                "cudnn_benchmark": runtime.cudnn_benchmark,
                "tf32": runtime.tf32,
            }},
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "batch_channels_last": batch.is_contiguous(memory_format=torch.channels_last),
            "batch_nchw": batch.is_contiguous(),
        }}))
    """)
    flags, runtime = found["flags"], found["runtime"]
    assert {key: flags[key] for key in runtime} == runtime
    assert runtime["channels_last"] is True
    assert runtime["intra_op_threads"] == runtime["inter_op_threads"] == THREADS
    assert runtime["deterministic"] is found["deterministic_algorithms"] is True
    assert runtime["cudnn_benchmark"] is False  # determinism turns autotuning off
    assert found["batch_channels_last"] and not found["batch_nchw"]


def test_bare_torch_loop_trains_like_the_suite():
    pytest.importorskip("torch")
    found = _run(f"""
        {TINY_DATA}
        import json, torch
        from benchmarks.overhead import build_bare_torch
        model, step = build_bare_torch(x, y, {THREADS})
        inputs = []
        model.register_forward_pre_hook(lambda module, args: inputs.append(args[0]))
        loss = float(step(np.arange(4)))
        kernels = [p for p in model.parameters() if p.dim() == 4]
        print(json.dumps({{
            "threads": [torch.get_num_threads(), torch.get_num_interop_threads()],
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "input_channels_last": inputs[0].is_contiguous(memory_format=torch.channels_last),
            "input_nchw": inputs[0].is_contiguous(),
            "kernels_channels_last": all(
                k.is_contiguous(memory_format=torch.channels_last) for k in kernels),
            "kernels_nchw": all(k.is_contiguous() for k in kernels),
            "device": inputs[0].device.type,
            "cuda": torch.cuda.is_available(),
            "loss": loss,
        }}))
    """)
    assert found["threads"] == [THREADS, THREADS]
    assert found["cudnn_benchmark"] is True
    assert found["input_channels_last"] and not found["input_nchw"]
    assert found["kernels_channels_last"] and not found["kernels_nchw"]
    assert found["device"] == ("cuda" if found["cuda"] else "cpu")
    assert found["loss"] > 0


# --- tf ------------------------------------------------------------------------------
def test_tf_runtime_sets_the_threads_asked_for():
    pytest.importorskip("tensorflow")
    found = _run(f"""
        import json
        from backends.tf.runtime import configure_runtime
        import tensorflow as tf
        settings = configure_runtime({THREADS}, deterministic=False)
        print(json.dumps({{
            "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                        tf.config.threading.get_inter_op_parallelism_threads()],
            "reported": [settings.intra_op_threads, settings.inter_op_threads],
            "device": settings.device,
            "gpus": len(tf.config.list_physical_devices("GPU")),
            "memory_growth": settings.memory_growth,
            "tf32": [tf.config.experimental.tensor_float_32_execution_enabled(), settings.tf32],
        }}))
    """)
    assert found["threads"] == found["reported"] == [THREADS, THREADS]
    assert found["device"] == ("gpu" if found["gpus"] else "cpu")
    assert found["memory_growth"] is bool(found["gpus"])
    assert found["tf32"] == [False, False]


def test_tf_backend_flags_report_its_runtime_settings():
    pytest.importorskip("tensorflow")
    found = _run(f"""
        import json
        from backends.tf.backend import TFBackend
        backend = TFBackend(threads={THREADS}, deterministic=True)
        runtime = backend.runtime
        print(json.dumps({{
            "flags": backend.flags(),
            "runtime": {{
                "device": runtime.device,
                "memory_growth": runtime.memory_growth,
                "intra_op_threads": runtime.intra_op_threads,
                "inter_op_threads": runtime.inter_op_threads,
                "deterministic": runtime.deterministic,
                "tf32": runtime.tf32,
            }},
        }}))
    """)
    flags, runtime = found["flags"], found["runtime"]
    assert {key: flags[key] for key in runtime} == runtime
    assert runtime["intra_op_threads"] == runtime["inter_op_threads"] == THREADS
    assert runtime["deterministic"] is True
    assert runtime["tf32"] is False


@pytest.mark.slow  # 11 s; torch's bare-loop twin stays in the fast run (CI's time, docs/ci.md)
def test_bare_tf_loop_trains_like_the_suite():
    pytest.importorskip("tensorflow")
    found = _run(f"""
        {TINY_DATA}
        import json
        from benchmarks.overhead import build_bare_tf
        import tensorflow as tf
        _, step = build_bare_tf(x, y, {THREADS})
        loss = float(step(np.arange(4)))
        print(json.dumps({{
            "threads": [tf.config.threading.get_intra_op_parallelism_threads(),
                        tf.config.threading.get_inter_op_parallelism_threads()],
            "tf32": tf.config.experimental.tensor_float_32_execution_enabled(),
            "loss": loss,
        }}))
    """)
    assert found["threads"] == [THREADS, THREADS]
    assert found["tf32"] is False
    assert found["loss"] > 0


# --- the JAX backends ----------------------------------------------------------------
# Slow: building proposed_cnn (Flax's and Keras's initialisers run op by op) and compiling
# its step take XLA 38–48 s on this 2-core host at load 4.8. XLA has one thread count of its own
# to set, 1 (backends/jax/runtime.py), which these check.
def _needs(backend: str):
    return pytest.mark.skipif(missing_framework(backend) is not None,
                              reason=str(missing_framework(backend)))


# Five Adam steps on one batch, the losses and the parameter count as the catalog counts;
# then what the script prints about XLA's runtime, beside its own findings.
_JAX_STEPS = """
        losses = [float(step(np.arange(8))) for _ in range(5)]
        from backends.catalog import model_cost
        catalog_params = model_cost("proposed_cnn", x.shape[1:], 7).params
        xla = {
            "xla_flags": os.environ.get("XLA_FLAGS", "").split(),
            "preallocate": os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE"),
            "matmul_precision": str(jax.config.jax_default_matmul_precision),
        }
"""


def _check_jax_bare_loop(found: dict) -> None:
    """A JAX bare loop ran on the backend's runtime settings, at one XLA thread, and
    trained the catalog's model."""
    assert "--xla_cpu_multi_thread_eigen=false" in found["xla_flags"]
    assert found["preallocate"] == "false"  # as backends/jax/ and keras_jax/ set it
    assert found["matmul_precision"] == "highest"
    assert found["params"] == found["catalog_params"]
    assert 0 < found["losses"][-1] < found["losses"][0]


@pytest.mark.slow
@_needs("jax")
def test_bare_jax_loop_trains_like_the_suite():
    found = _run(f"""
        {TINY_DATA}
        import json, os
        import jax
        from flax import nnx
        from benchmarks.overhead import build_bare_jax
        model, step = build_bare_jax(x, y, 1)
        params = sum(leaf.size for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
        {_JAX_STEPS}
        print(json.dumps({{
            **xla, "params": int(params), "catalog_params": catalog_params, "losses": losses,
        }}))
    """)
    _check_jax_bare_loop(found)


@pytest.mark.slow
@_needs("keras-jax")
def test_bare_keras_jax_loop_runs_keras_on_jax_whatever_it_inherits():
    found = _run(f"""
        {TINY_DATA}
        import json, os
        # As a parent that ran the tf backend would leave it.
        os.environ["KERAS_BACKEND"] = "tensorflow"
        from benchmarks.overhead import build_bare_keras_jax
        model, step = build_bare_keras_jax(x, y, 1)
        import jax, keras
        params = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        {_JAX_STEPS}
        print(json.dumps({{
            "keras_backend": keras.backend.backend(),
            **xla, "params": params, "catalog_params": catalog_params, "losses": losses,
        }}))
    """)
    assert found["keras_backend"] == "jax"
    _check_jax_bare_loop(found)


def test_the_eigen_convolution_switch_is_for_jaxlib_0_10_on_unless_set_already():
    from backends.xla_flags import EIGEN_CONVOLUTION_FLAGS, cpu_convolution_flags

    assert cpu_convolution_flags("0.10.2") == EIGEN_CONVOLUTION_FLAGS
    assert cpu_convolution_flags("1.0.0.dev20270101") == EIGEN_CONVOLUTION_FLAGS
    # Older jaxlibs may not know the flag, and XLA aborts on one it does not know.
    assert cpu_convolution_flags("0.9.2") == ()
    # One's own value of the switch stands; other flags do not count.
    own = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
    assert cpu_convolution_flags("0.10.2", f"--xla_dump_to=/tmp/x {own}") == ()
    assert cpu_convolution_flags("0.10.2", "--xla_dump_to=/tmp/x") == EIGEN_CONVOLUTION_FLAGS
    with pytest.raises(ValueError, match="major.minor"):
        cpu_convolution_flags("unknown")


# A convolution and its two backwards at a shape XLA 0.10 gives YNNPACK by default, and
# how XLA lowered them (benchmarks.conv_timing.xla_lowering), in the backend's process.
_CONVOLUTION_LOWERING = """
    import jax, jax.numpy as jnp
    from jax import lax
    from benchmarks.conv_timing import xla_lowering
    def loss(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC")).sum()
    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    lowering = xla_lowering(step.lower(jnp.ones((8, 12, 12, 64)),
                                       jnp.ones((3, 3, 64, 64))).compile().as_text())
"""


@pytest.mark.parametrize("backend_name", backend_params(("jax", "keras-jax")))
def test_each_jax_backend_puts_xla_cpu_convolutions_on_eigen(backend_name):
    """The runtime writes the switch to XLA_FLAGS before JAX starts, XLA takes it (it
    aborts on a flag it does not know), and the convolutions leave YNNPACK; the backend
    reports the flags it started with."""
    import jaxlib

    from backends.xla_flags import cpu_convolution_flags

    if not cpu_convolution_flags(jaxlib.__version__):
        pytest.skip(f"jaxlib {jaxlib.__version__} keeps XLA's own convolutions")
    found = _run(f"""
        import json, os
        os.environ.pop("XLA_FLAGS", None)  # the test session's own, set by conftest
        from backends import create_backend
        backend = create_backend({backend_name!r})
        {textwrap.indent(textwrap.dedent(_CONVOLUTION_LOWERING), " " * 8).strip()}
        print(json.dumps({{"flags": backend.flags()["xla_flags"],
                          "environment": os.environ["XLA_FLAGS"], "lowering": lowering}}))
    """)
    assert found["flags"] == found["environment"]
    assert set(cpu_convolution_flags(jaxlib.__version__)) <= set(found["flags"].split())
    assert found["lowering"] == "eigen"


def test_xla_left_alone_gives_these_convolutions_to_ynnpack():
    """The counterpart of the test above: without the switch the same convolutions go to
    YNNPACK, so that test can tell the switch's work from XLA's default."""
    pytest.importorskip("jax")
    found = _run(f"""
        import json, os
        os.environ.pop("XLA_FLAGS", None)
        {textwrap.indent(textwrap.dedent(_CONVOLUTION_LOWERING), " " * 8).strip()}
        print(json.dumps({{"lowering": lowering}}))
    """)
    assert found["lowering"] == "ynn"
