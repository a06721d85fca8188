"""GPU-only checks (`pytest -m gpu`): skipped, with the reason, where no GPU is present.

They never fake a GPU: on a CPU-only machine each is skipped, and `python -m
benchmarks.gpu_check` says "no GPU found" (tests/test_gpu_check.py).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from benchmarks import gpu_check  # noqa: E402
from tests.conftest import step_losses  # noqa: E402

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not (torch.cuda.is_available()
                            and tf.config.list_physical_devices("GPU")),
                       reason="needs a CUDA GPU visible to both torch and TensorFlow"),
]


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_trains_alike_on_the_gpu(precision):
    """Both frameworks lose alike on the GPU, with the CPU test's tolerances
    (tests/test_precision.py): float16 keeps 11 significant bits, more than bfloat16's 8."""
    tf_losses, tf_backend = step_losses("tf", "proposed_cnn", precision, seed=0)
    torch_losses, torch_backend = step_losses("torch", "proposed_cnn", precision, seed=0)
    gap = np.abs(tf_losses - torch_losses) / torch_losses
    assert gap[0] <= 2e-3 and gap.max() <= 2.5e-2, gap
    assert tf_backend.flags()["loss_scaling"] == torch_backend.flags()["loss_scaling"] == (
        precision == "float16")


def test_the_check_holds_its_invariants_on_a_small_plan(tmp_path):
    plan = [gpu_check.CheckConfig(48, precision, ("proposed_cnn",), subjects=6, batch_size=16,
                                  epochs=2) for precision in ("float32", "bfloat16")]
    _, records, failures = gpu_check.run_check(tmp_path, plan)
    assert len(records) == 4 and failures == []
    assert all(gpu_check.row_of(r)["img/s"] for r in records)
