"""How runs execute: their specs and configs, the environment they record, the harness that
prepares the data and starts one worker process per run, the worker, and `run_grid`."""
