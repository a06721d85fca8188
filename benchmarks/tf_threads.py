"""`python -m benchmarks.tf_threads`: runs benchmarks.studies.tf_threads."""

import sys

from benchmarks.studies.tf_threads import main

if __name__ == "__main__":
    sys.exit(main())
