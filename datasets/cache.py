"""The decoded-dataset cache: one compressed .npz per (source files, settings).

The key hashes every file's relative path, size and modification time, the loading
settings, the face finder and CACHE_FORMAT, so touching, adding or removing a file, or
changing a setting, decodes again; anything else loads the arrays back in well under a
second. The cache lives in the cache dir, never in the dataset folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from datasets.core import FaceDataset
from datasets.folders import SourceFile

# Bump when loading or preprocessing changes what a cached file would hold.
CACHE_FORMAT = 1
_ARRAYS = ("images", "labels", "subjects", "official_split", "ids", "duplicate_groups")
_FACTS = ("name", "class_names", "skipped", "duplicates", "source", "preprocessing")


def default_cache_dir() -> Path:
    """$FERBENCH_CACHE, else ~/.cache/fer-bench (never inside a dataset folder)."""
    return Path(os.environ.get("FERBENCH_CACHE", Path.home() / ".cache" / "fer-bench"))


def check_outside(cache_dir: Path, data_dir: Path) -> None:
    """Raises ValueError if `cache_dir` lies inside `data_dir`: dataset folders stay as-is."""
    cache, data = Path(cache_dir).resolve(), Path(data_dir).resolve()
    if cache == data or data in cache.parents:
        raise ValueError(
            f"the cache dir {cache} lies inside the dataset folder {data}; FER-Bench never "
            "writes into dataset folders: set FERBENCH_CACHE to a folder elsewhere"
        )


def cache_key(name: str, files: Sequence[SourceFile], settings: dict[str, Any]) -> str:
    """A hash of the dataset's files (paths, sizes, mtimes) and the loading settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, name, settings], sort_keys=True).encode())
    for file in files:
        digest.update(f"{file.path}\0{file.size}\0{file.mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    safe = name.replace("+", "plus").replace("/", "_")
    return Path(cache_dir) / "datasets" / f"{safe}-{key}.npz"


def load(path: Path) -> FaceDataset | None:
    """The cached dataset at `path`, or None when there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {k: stored[k] if k in stored else None for k in _ARRAYS}
            facts = json.loads(str(stored["facts"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None  # a damaged cache file is rebuilt, never trusted
    return FaceDataset(**arrays, **facts)


def save(path: Path, dataset: FaceDataset) -> None:
    """Writes `dataset` to `path` atomically (a crash never leaves a truncated file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    facts = json.dumps({k: getattr(dataset, k) for k in _FACTS})
    # Level 1 deflate: 3–4× faster to write than numpy's default level, nearly as small
    # for images, and just as fast to read.
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key in _ARRAYS:
            value = getattr(dataset, key)
            if value is not None:
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
        with archive.open("facts.npy", "w") as member:
            np.lib.format.write_array(member, np.asarray(facts), allow_pickle=False)
    os.replace(partial, path)
