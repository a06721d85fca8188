"""Numbers computed from records, framework-neutral: classification metrics, statistics over
seeds and folds, and the comparison of two sets of results."""
