"""`python -m benchmarks.augment_throughput`: runs benchmarks.studies.augment_throughput."""

import sys

from benchmarks.studies.augment_throughput import main

if __name__ == "__main__":
    sys.exit(main())
