"""FER-Bench's main command: train and evaluate models in both frameworks, side by side.

    python -m benchmarks.run --backend both --dataset synthetic
    python -m benchmarks.run --list-models

Every (backend, model) run executes in its own worker process; results go to a new
`reports/<timestamp>-<dataset>/results.jsonl`, and a side-by-side table is printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from backends import BACKEND_NAMES, MissingFrameworkError, check_available
from backends.base import TrainConfig
from backends.catalog import CARD_MODELS, MODEL_NAMES, check_model_name, describe_models
from backends.init import INIT_MODES
from benchmarks.config import RunSpec
from benchmarks.env import available_cores
from benchmarks.harness import default_cache_dir, prepare_data, run_in_worker
from benchmarks.results import append_record, new_report_dir, summary_table
from datasets import DATASET_NAMES, check_dataset_name, load_dataset

DEFAULTS = TrainConfig(epochs=3, batch_size=64, learning_rate=1e-3)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Train and evaluate FER models in TensorFlow/Keras and PyTorch.",
    )
    parser.add_argument("--backend", default="both",
                        help=f"one of {', '.join(BACKEND_NAMES)}, both (default: both)")
    parser.add_argument("--dataset", default="synthetic",
                        help=f"one of {', '.join(DATASET_NAMES)} (default: synthetic)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="folder holding the dataset (see README: Datasets)")
    parser.add_argument("--models", default="card",
                        help="comma-separated model names, 'card' (the design card's four, "
                             "default) or 'all'")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                        help="learning rate")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (sample order, initial weights)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--init", default="shared", choices=INIT_MODES,
                        help="shared: both frameworks start from the same weights (default); "
                             "native: each framework's own initialisers")
    parser.add_argument("--threads", type=int, default=available_cores(),
                        help="intra- and inter-op threads, set explicitly in both frameworks "
                             "(default: all %(default)s cores)")
    parser.add_argument("--deterministic", action="store_true",
                        help="turn on both frameworks' deterministic-algorithm switches "
                             "(slower on GPU)")
    parser.add_argument("--out", type=Path, default=Path("reports"),
                        help="parent folder of the new report folder (default: reports)")
    parser.add_argument("--list-models", action="store_true",
                        help="list the models with parameters and FLOPs, then exit")
    return parser


def _backends(choice: str) -> list[str]:
    if choice == "both":
        return list(BACKEND_NAMES)
    if choice not in BACKEND_NAMES:
        raise ValueError(
            f"unknown backend {choice!r}; valid backends: {', '.join(BACKEND_NAMES)}, both"
        )
    return [choice]


def _models(choice: str) -> list[str]:
    if choice == "card":
        return list(CARD_MODELS)
    if choice == "all":
        return list(MODEL_NAMES)
    names = [name.strip() for name in choice.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--models is empty; valid models: {', '.join(MODEL_NAMES)}")
    for name in names:
        check_model_name(name)
    return names


def list_models() -> str:
    lines = [f"{'model':<14}{'card':<6}{'params':>14}{'GFLOPs/img':>12}  (48×48×1, 7 classes)"]
    for row in describe_models():
        lines.append(f"{row['name']:<14}{'yes' if row['card'] else '':<6}"
                     f"{row['params']:>14,}{row['flops'] / 1e9:>12.3f}  {row['summary']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_models:
        print(list_models())
        return 0
    try:
        backends = _backends(args.backend)
        models = _models(args.models)
        check_dataset_name(args.dataset)
        for backend in backends:
            check_available(backend)
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                             learning_rate=args.lr, seed=args.seed)
        if args.threads < 1:
            raise ValueError(f"--threads must be ≥ 1. Received: {args.threads}")
        dataset = load_dataset(args.dataset, args.data_dir, args.image_size)
    except (ValueError, MissingFrameworkError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    prepared, data_info = prepare_data(dataset, split_seed=0, cache_dir=default_cache_dir())
    report_dir = new_report_dir(args.out, args.dataset)
    print(f"{dataset.name}: {data_info['num_train']} train / {data_info['num_val']} val / "
          f"{data_info['num_test']} test images, {len(dataset.class_names)} classes, "
          f"{data_info['protocol']}; results → {report_dir}", flush=True)
    records = []
    jobs = [(model, backend) for model in models for backend in backends]
    for number, (model, backend) in enumerate(jobs, 1):
        print(f"== run {number}/{len(jobs)}: {backend} {model}", flush=True)
        spec = RunSpec(backend=backend, model=model, dataset=args.dataset,
                       prepared_data=str(prepared), train=config, init=args.init,
                       threads=args.threads, deterministic=args.deterministic,
                       data_info=data_info)
        record = run_in_worker(spec)
        if record["status"] != "ok":
            print(f"   run failed: {record['error']}", flush=True)
        append_record(report_dir, record)
        records.append(record)
    print()
    print(summary_table(records))
    print(f"\n{len(records)} runs in {time.perf_counter() - started:.0f}s; "
          f"results: {report_dir / 'results.jsonl'}")
    return 0 if all(r["status"] == "ok" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
