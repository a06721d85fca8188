"""The host input path: batches prepared ahead are exactly the shared stream's, in order."""

import threading

import numpy as np
import pytest

from backends.augment import augment_config
from backends.pipeline import EpochStream, host_batch
from backends.schedule import epoch_batches


def _data(n=40, size=16):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8), rng.integers(0, 7, n)


def test_the_stream_yields_the_shared_streams_batches_in_order():
    x, y = _data()
    batches = epoch_batches(len(x), 8, seed=3, epoch=1)
    augment = augment_config("standard")
    stream = EpochStream(x, y, batches, augment, seed=3, epoch=1)
    got = list(stream)
    assert len(got) == len(stream) == len(batches)
    for step, (images, labels) in enumerate(got):
        expected_images, expected_labels = host_batch(x, y, batches[step], augment, 3, 1, step)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    # Augmented: not the raw pixels (so the test above compares augmented batches).
    assert not np.array_equal(got[0][0], x[batches[0]])
    assert stream.timing.augment_s > 0 and stream.timing.wait_s >= 0


def test_each_step_has_its_own_augmentation_and_none_is_the_raw_pixels():
    x, y = _data()
    index = np.arange(8)
    a = host_batch(x, y, index, augment_config("standard"), 0, 0, 0)[0]
    b = host_batch(x, y, index, augment_config("standard"), 0, 0, 1)[0]
    assert not np.array_equal(a, b)
    raw = host_batch(x, y, index, augment_config("none"), 0, 0, 0)
    np.testing.assert_array_equal(raw[0], x[:8])
    assert raw[1].dtype == np.int64


def test_an_error_in_the_thread_reaches_the_training_loop():
    x, y = _data()
    batches = [np.arange(8), np.array([0, 99])]  # the second indexes past the set
    stream = iter(EpochStream(x, y, batches, augment_config("none"), 0, 0))
    next(stream)
    with pytest.raises(IndexError):
        next(stream)


def test_stopping_early_ends_the_thread():
    x, y = _data(n=400)
    batches = epoch_batches(len(x), 8, seed=0, epoch=0)
    before = threading.active_count()
    stream = iter(EpochStream(x, y, batches, augment_config("light"), 0, 0))
    next(stream)
    stream.close()  # what a `for` loop left by an exception does
    assert threading.active_count() == before
