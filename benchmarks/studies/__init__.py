"""One-off studies that print figures rather than pass or fail: the suite's overhead
against a bare training loop (`overhead`), and how long FER2013 takes to load
(`dataset_load`)."""
