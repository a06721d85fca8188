"""The CI regression check (`python -m benchmarks.ci`, docs/ci.md); the test-only fault
injection that proves it can fail lives beside the worker that applies it
(`benchmarks/runner/faults.py`)."""
