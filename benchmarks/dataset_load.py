"""How long FER2013 takes to load: from the CSV (cold) and from the decoded cache.

    python -m benchmarks.dataset_load            # the full 35,887-row CSV
    python -m benchmarks.dataset_load --rows 5000

Writes a full-size synthetic `fer2013.csv` (datasets.fixtures) into a temporary folder,
loads it with an empty cache (parse, check, de-duplicate, write the cache), then again
from the cache. A benchmark to run by hand, not a timed test: figures depend on the
machine. The CSV was just written, so the cold figure excludes disk reads (the OS still
holds the file); the cache load is what every run after the first pays.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from datasets import load_dataset
from datasets.fixtures import FER2013_USAGE_COUNTS, write_fer2013_csv

COLD_TARGET_S = 10.0
CACHED_TARGET_S = 0.5
# Distinct faces drawn for the fixture; the other rows re-noise them (drawing all 35,887
# would take about a minute and measure nothing more).
_DISTINCT_FACES = 3000


def _counts(rows: int) -> dict[str, int]:
    """FER2013's Usage shares scaled to `rows`."""
    total = sum(FER2013_USAGE_COUNTS.values())
    counts = {usage: n * rows // total for usage, n in FER2013_USAGE_COUNTS.items()}
    counts["Training"] += rows - sum(counts.values())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dataset_load",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=sum(FER2013_USAGE_COUNTS.values()),
                        help="CSV rows (default: FER2013's 35,887)")
    parser.add_argument("--repeats", type=int, default=5, help="cached loads to time")
    args = parser.parse_args(argv)
    if args.rows < 100 or args.repeats < 1:
        raise SystemExit(f"rows must be ≥ 100 and repeats ≥ 1. Received: rows={args.rows}, "
                         f"repeats={args.repeats}")
    with tempfile.TemporaryDirectory(prefix="ferbench-load-") as work:
        data_dir, cache_dir = Path(work) / "fer2013", Path(work) / "cache"
        started = time.perf_counter()
        write_fer2013_csv(data_dir, _counts(args.rows), traps=False,
                          max_distinct_faces=min(_DISTINCT_FACES, args.rows))
        size_mb = (data_dir / "fer2013.csv").stat().st_size / 1e6
        print(f"fixture: {args.rows} rows, {size_mb:.0f} MB CSV, written in "
              f"{time.perf_counter() - started:.1f}s", flush=True)

        load_before = os.getloadavg()[0]
        (cold_s, cold_cpu_s), dataset = _timed(load_dataset, "fer2013", data_dir,
                                               cache_dir=cache_dir)
        cache_mb = Path(dataset.source["cache_file"]).stat().st_size / 1e6
        cached = [_timed(load_dataset, "fer2013", data_dir, cache_dir=cache_dir)
                  for _ in range(args.repeats)]
        if cached[-1][1].fingerprint() != dataset.fingerprint():
            print("error: the cached dataset differs from the decoded one", file=sys.stderr)
            return 1
    cached_s = [wall for (wall, _), _ in cached]
    cached_cpu_s = [cpu for (_, cpu), _ in cached]
    # CPU time (all threads) is what the load costs; wall time also depends on what else
    # the machine runs, hence the load average.
    print(f"cold load (CSV → arrays → cache): {cold_s:.2f}s wall, {cold_cpu_s:.2f}s CPU "
          f"(target ≤ {COLD_TARGET_S:.0f}s) — {len(dataset)} images, cache {cache_mb:.0f} MB")
    print(f"cached load: median {statistics.median(cached_s):.3f}s wall (min "
          f"{min(cached_s):.3f}s), {statistics.median(cached_cpu_s):.3f}s CPU over "
          f"{args.repeats} (target ≤ {CACHED_TARGET_S}s)")
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after")
    return 0


def _timed(function, *args, **kwargs):
    """((wall seconds, CPU seconds of this process), function's result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    return (time.perf_counter() - wall, time.process_time() - cpu), result


if __name__ == "__main__":
    sys.exit(main())
