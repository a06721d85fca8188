"""`python -m benchmarks.precision`: runs benchmarks.studies.precision."""

import sys

from benchmarks.studies.precision import main

if __name__ == "__main__":
    sys.exit(main())
