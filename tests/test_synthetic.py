"""The embedded synthetic set: deterministic, balanced, subject-aware, not trivial."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeClassifier

from datasets import holdout_split
from datasets.synthetic import DEFAULT_EMOTIONS, generate


@pytest.fixture(scope="module")
def small():
    return generate(num_subjects=30, per_expression=2, seed=1)


def test_shape_labels_and_subjects(small):
    assert small.images.shape == (30 * 7 * 2, 48, 48, 1) and small.images.dtype == np.uint8
    assert small.class_names == list(DEFAULT_EMOTIONS)
    assert np.bincount(small.labels).tolist() == [60] * 7
    assert len(set(small.subjects)) == 30


def test_deterministic_from_seed(small):
    again = generate(num_subjects=30, per_expression=2, seed=1)
    assert again.fingerprint() == small.fingerprint()
    assert generate(num_subjects=30, per_expression=2, seed=2).fingerprint() != small.fingerprint()


def test_images_vary_within_a_class(small):
    first_class = small.images[small.labels == 0].astype(np.float32)
    assert first_class.std(axis=0).mean() > 10  # subjects differ in pose, light, noise


def test_learnable_but_not_trivial():
    """A linear model on raw pixels of unseen subjects: well above chance, far from perfect."""
    data = generate(num_subjects=60, per_expression=2, seed=0)
    split = holdout_split(data.labels, data.subjects, seed=0)
    flat = data.images.reshape(len(data), -1).astype(np.float32) / 255
    model = RidgeClassifier(alpha=10.0).fit(flat[split.train], data.labels[split.train])
    accuracy = model.score(flat[split.test], data.labels[split.test])
    assert 1 / 7 + 0.05 < accuracy < 0.9


def test_subject_independent_holdout(small):
    split = holdout_split(small.labels, small.subjects, seed=0)
    parts = [set(small.subjects[getattr(split, p)]) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(len(getattr(split, p)) for p in ("train", "val", "test")) == len(small)


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_subjects"):
        generate(num_subjects=0)
    with pytest.raises(ValueError, match="emotions"):
        generate(emotions=("joy", "anger"))
