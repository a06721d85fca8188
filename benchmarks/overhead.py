"""`python -m benchmarks.overhead`: runs benchmarks.studies.overhead."""

import sys

from benchmarks.studies.overhead import main

if __name__ == "__main__":
    sys.exit(main())
