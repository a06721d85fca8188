"""`python -m benchmarks.dataset_load`: runs benchmarks.studies.dataset_load."""

import sys

from benchmarks.studies.dataset_load import main

if __name__ == "__main__":
    sys.exit(main())
