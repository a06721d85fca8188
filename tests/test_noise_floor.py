"""tests/noise_floor.py's door and case list; the measuring itself runs by hand."""

import pytest

from backends.catalog import MODEL_NAMES
from tests import noise_floor


@pytest.mark.parametrize("args, problem", [
    (["--cases", "logits/lenet/jax"], "unknown case(s) logits/lenet/jax; known: "),
    (["--perturbations", "1 thread,2 threads"], "unknown perturbation(s) 2 threads; known: "
                                                "unperturbed again, 1 thread, "),
])
def test_bad_input_is_one_line_and_exit_2(args, problem, capsys):
    assert noise_floor.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {problem}") and "\n" not in err, err


def test_every_model_has_its_jax_cases_read_from_the_tests_tolerances():
    from tests.test_models import MODEL_STEPS_TOLERANCE, TOLERANCE

    cases = {case.name: case for case in noise_floor._cases()}
    for model in MODEL_NAMES:
        assert cases[f"logits/{model}/jax"].sides == ("jax", "torch")
        assert cases[f"logits/{model}/jax"].tolerance() == TOLERANCE
        for backend in noise_floor.JAX_BACKENDS:
            case = cases[f"model-steps/{model}/{backend}"]
            assert case.sides == (backend, "torch")
            assert case.test.endswith("::test_every_model_trains_like_torch_for_20_steps")
            assert case.tolerance() == MODEL_STEPS_TOLERANCE[model]
