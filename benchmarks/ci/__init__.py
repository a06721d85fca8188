"""The CI regression check (`python -m benchmarks.ci`, docs/ci.md) and the test-only fault
injection that proves it can fail."""
