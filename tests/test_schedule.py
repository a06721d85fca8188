"""The shared host-side stream: same batches for everyone, given a seed (docs/design.md §3)."""

import numpy as np
import pytest

from backends.schedule import PlateauState, class_weight_table, epoch_batches, step_learning_rates
from backends.train_config import TrainConfig


def test_epoch_batches_are_reproducible_and_differ_between_epochs():
    first = epoch_batches(1000, 64, seed=3, epoch=0)
    again = epoch_batches(1000, 64, seed=3, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    second = epoch_batches(1000, 64, seed=3, epoch=1)
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    other_seed = epoch_batches(1000, 64, seed=4, epoch=0)
    assert not np.array_equal(np.concatenate(first), np.concatenate(other_seed))


def test_epoch_batches_drop_only_the_last_incomplete_batch():
    batches = epoch_batches(1000, 64, seed=0, epoch=0)
    assert len(batches) == 15 and all(len(b) == 64 for b in batches)
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == len(seen) == 960
    assert seen.min() >= 0 and seen.max() < 1000


def test_a_set_smaller_than_a_batch_is_one_batch():
    (batch,) = epoch_batches(10, 64, seed=0, epoch=0)
    assert sorted(batch) == list(range(10))
    with pytest.raises(ValueError, match="at least 2"):
        epoch_batches(1, 64, seed=0, epoch=0)


def test_balanced_class_weights():
    labels = np.array([0, 0, 0, 1])
    table = class_weight_table(labels, 3, "balanced")
    np.testing.assert_allclose(table, [4 / 9, 4 / 3, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(class_weight_table(labels, 3, "none"), [1, 1, 1])


def _epoch_rates(config: TrainConfig, steps: int = 3) -> list[np.ndarray]:
    return [step_learning_rates(config, e, steps) for e in range(config.epochs)]


def test_cosine_schedule_anneals_per_epoch():
    rates = _epoch_rates(TrainConfig(epochs=4, learning_rate=1e-3))
    assert all(r.dtype == np.float64 and r.shape == (3,) and np.all(r == r[0]) for r in rates)
    np.testing.assert_allclose([r[0] for r in rates],
                               [1e-3, 0.85355e-3, 0.5e-3, 0.14645e-3], rtol=1e-4)
    constant = _epoch_rates(TrainConfig(epochs=4, lr_schedule="constant"))
    assert np.all(np.concatenate(constant) == 1e-3)


def test_warmup_rises_linearly_per_step_then_cosine_anneals_the_rest():
    config = TrainConfig(epochs=6, learning_rate=1e-3, warmup_epochs=2)
    rates = _epoch_rates(config, steps=4)
    # Global steps 0..7 of the two warm-up epochs take lr · (k + 1) / 8.
    np.testing.assert_allclose(np.concatenate(rates[:2]), 1e-3 * np.arange(1, 9) / 8,
                               rtol=1e-12)
    # Then cosine over the remaining 4 epochs, from the full rate.
    after = [r[0] for r in rates[2:]]
    expected = [1e-3 * 0.5 * (1 + np.cos(np.pi * e / 4)) for e in range(4)]
    np.testing.assert_allclose(after, expected, rtol=1e-12)
    assert after[0] == 1e-3


def test_step_schedule_multiplies_by_gamma_every_step_epochs():
    config = TrainConfig(epochs=7, learning_rate=1.0, lr_schedule="step", lr_step_epochs=3,
                         lr_gamma=0.5, warmup_epochs=1)
    firsts = [r[0] for r in _epoch_rates(config, steps=2)]
    # Warm-up epoch 0 (steps 0.5, 1.0), then 1, 1, 1, 0.5, 0.5, 0.5.
    np.testing.assert_allclose(firsts, [0.5, 1, 1, 1, 0.5, 0.5, 0.5], rtol=1e-12)


def test_plateau_reduces_after_more_than_patience_epochs_without_strict_improvement():
    state = PlateauState(patience=1, gamma=0.1)
    # 1.0 best; equal is no improvement (threshold 0); two stalled epochs > patience 1.
    factors = [state.update(loss) for loss in (1.0, 0.9, 0.9, 0.95, 0.8, float("nan"), 0.85)]
    np.testing.assert_allclose(factors, [1, 1, 1, 0.1, 0.1, 0.1, 0.01], rtol=1e-12)
    assert state.best == 0.8
    config = TrainConfig(epochs=3, learning_rate=1e-3, lr_schedule="plateau")
    np.testing.assert_allclose(step_learning_rates(config, 2, 2, plateau_factor=0.01),
                               [1e-5, 1e-5], rtol=1e-12)
    # The other schedules ignore the factor.
    cosine = TrainConfig(epochs=3, learning_rate=1e-3)
    assert step_learning_rates(cosine, 0, 2, plateau_factor=0.01)[0] == 1e-3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lr_schedule": "linear"}, "lr_schedule must be one of constant, cosine, step, plateau"),
        ({"warmup_epochs": 6}, r"warmup_epochs must be an integer in \[0, epochs=6\)"),
        ({"warmup_epochs": -1}, "warmup_epochs must be"),
        ({"lr_step_epochs": 0}, "lr_step_epochs must be an integer ≥ 1"),
        ({"lr_gamma": 1.0}, r"lr_gamma must be in \(0, 1\). Received: lr_gamma=1.0"),
        ({"lr_gamma": 0.0}, "lr_gamma must be in"),
        ({"plateau_patience": -1}, "plateau_patience must be an integer ≥ 0"),
    ],
)
def test_schedule_fields_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(epochs=6, **fields)
