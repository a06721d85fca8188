"""Framework-neutral metrics (docs/design.md §8)."""

import numpy as np
import pytest

from benchmarks.analysis.metrics import classification_metrics

NAMES = ["anger", "happiness", "sadness"]


def test_metrics_on_a_hand_checked_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1],
         [0.1, 0.6, 0.3], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]]
    )
    m = classification_metrics(labels, probs, NAMES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["happiness"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["happiness"]["recall"] == pytest.approx(1.0)
    f1 = [2 * 0.5 * 0.5 / 1.0, 2 * (2 / 3) / (5 / 3), 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(np.mean(f1))
    assert 0.5 < m["auc_macro_ovr"] <= 1.0 and m["auc_classes_skipped"] == []


def test_auc_skips_a_class_absent_from_the_test_split():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1]])
    m = classification_metrics(labels, probs, NAMES)
    assert m["auc_classes_skipped"] == ["sadness"]
    assert m["auc_macro_ovr"] == pytest.approx(1.0)
    assert m["per_class"]["sadness"]["support"] == 0


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="probabilities must have shape"):
        classification_metrics(np.array([0, 1]), np.ones((2, 2)) / 2, NAMES)
