"""Classification metrics, computed once for every backend with scikit-learn (docs/design.md §8).

Backends return class probabilities; nothing here imports a deep-learning framework.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)


def classification_metrics(
    labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> dict[str, Any]:
    """Scores predicted probabilities against true labels.

    Args:
        labels: (N,) true class indices.
        probabilities: (N, C) class probabilities, rows summing to 1.
        class_names: C names, in label order.

    Returns:
        accuracy, balanced_accuracy, macro_f1, weighted_f1, log_loss, auc_macro_ovr (mean
        of one-vs-rest AUCs over the classes that occur in `labels` with both positives and
        negatives; None if there are none), auc_classes_skipped (classes left out of it),
        per_class ({name: precision, recall, f1, support}) and confusion_matrix (rows =
        true class, columns = predicted, over all C classes).
    """
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, np.float64)
    num_classes = len(class_names)
    if probabilities.ndim != 2 or probabilities.shape != (len(labels), num_classes):
        raise ValueError(
            f"probabilities must have shape ({len(labels)}, {num_classes}). "
            f"Received: {probabilities.shape}"
        )
    classes = np.arange(num_classes)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=0
    )
    aucs, skipped = [], []
    for c in classes:
        positives = labels == c
        if positives.all() or not positives.any():
            skipped.append(class_names[c])
        else:
            aucs.append(roc_auc_score(positives, probabilities[:, c]))
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro",
                                   zero_division=0)),
        "weighted_f1": float(f1_score(labels, predicted, labels=classes, average="weighted",
                                      zero_division=0)),
        "log_loss": float(log_loss(labels, np.clip(probabilities, 1e-12, 1), labels=classes)),
        "auc_macro_ovr": float(np.mean(aucs)) if aucs else None,
        "auc_classes_skipped": skipped,
        "per_class": {
            name: {
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1": float(f1[c]),
                "support": int(support[c]),
            }
            for c, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }
