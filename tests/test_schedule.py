"""The shared host-side stream: same batches for everyone, given a seed (docs/design.md §3)."""

import numpy as np
import pytest

from backends.schedule import class_weight_table, epoch_batches, epoch_learning_rate


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


def test_cosine_schedule_anneals_per_epoch():
    rates = [epoch_learning_rate(1e-3, "cosine", e, 4) for e in range(4)]
    np.testing.assert_allclose(rates, [1e-3, 0.85355e-3, 0.5e-3, 0.14645e-3], rtol=1e-4)
    assert epoch_learning_rate(1e-3, "constant", 3, 4) == 1e-3
