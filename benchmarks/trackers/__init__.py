"""Measurement trackers, each with one job: time and load (`timing`), host and GPU memory
(`memory`), GPU energy (`energy`), and the NVML queries they share (`nvml`)."""
