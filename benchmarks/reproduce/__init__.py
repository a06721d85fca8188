"""Reproducing published studies: specs with the figures they claim, run by the ordinary
grid driver, and "Published vs measured" in each report (docs/reproduce.md).

- `spec.py`: study specs (TOML, shipped in `specs/`), checked at the door;
- `metrics.py`: the figures a spec may publish and where a record holds each;
- `plan.py`: a spec at one scale as one-point grid specs, one per group of models;
- `fixtures.py`: the generated data and stand-in checkpoints of --scale smoke;
- `published.py`: the published figures beside the measured ones (report and leaderboard);
- `__main__.py`: `python -m benchmarks.reproduce`.
"""
