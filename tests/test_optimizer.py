"""TF's Adam takes torch's steps (epsilon after bias correction), not Keras's."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

import keras  # noqa: E402

from backends.tf.backend import TorchOrderAdam  # noqa: E402


def _tf_steps(optimizer_class, gradients):
    variable = keras.Variable(np.zeros(4, np.float32))
    optimizer = optimizer_class(learning_rate=0.1, epsilon=1e-4)
    for gradient in gradients:
        optimizer.apply_gradients([(tf.constant(gradient), variable)])
    return variable.numpy()


def test_torch_order_adam_matches_torch_adam():
    # Small gradients next to a large epsilon: where the two conventions part.
    gradients = [np.array([1e-4, -3e-5, 2e-3, 0.5], np.float32) * (i + 1) for i in range(5)]
    param = torch.zeros(4, requires_grad=True)
    reference = torch.optim.Adam([param], lr=0.1, eps=1e-4)
    for gradient in gradients:
        param.grad = torch.from_numpy(gradient.copy())
        reference.step()
    expected = param.detach().numpy()
    np.testing.assert_allclose(_tf_steps(TorchOrderAdam, gradients), expected, atol=1e-5)
    # The stock Keras Adam does differ here, so the test can tell the two apart.
    assert np.abs(_tf_steps(keras.optimizers.Adam, gradients) - expected).max() > 1e-2
