"""One-off studies that print figures rather than pass or fail: the suite's overhead
against a bare training loop (`overhead`), how long FER2013 takes to load
(`dataset_load`), the host augmentation's speed (`augment_throughput`), what bfloat16
and compilation buy (`precision`), and which thread settings train TF fastest
(`tf_threads`)."""
