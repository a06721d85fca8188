"""How runs execute: the recipe (settings, bounds, presets), the invocation and its
command line, its data, the launch of its jobs, their specs, the harness that starts one
worker process per run, the worker, and the environment facts they record."""
