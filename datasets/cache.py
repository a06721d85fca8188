"""The decoded-dataset cache: one compressed file per (source files, settings).

The key hashes every file's relative path, size and modification time, the loading
settings, the face finder and CACHE_FORMAT, so touching, adding or removing a file, or
changing a setting, decodes again; anything else loads the arrays back in well under a
second. The cache lives in the cache dir, never in the dataset folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from datasets.core import FaceDataset
from datasets.folders import SourceFile

# Bump when loading or preprocessing changes what a cached file would hold.
CACHE_FORMAT = 2
# Each array's bytes are cut into chunks, each deflated on its own so that threads (zlib
# releases the GIL) share the work: FER2013's 83 MB take about half the time on two
# cores. Level 1 is 3–4× faster than numpy's default and nearly as small for faces. The
# dtype and shape go into facts.json (plain dtypes only: never pickled objects).
_CHUNK_BYTES = 4 << 20
_LEVEL = 1
_WORKERS = min(8, os.cpu_count() or 1)
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


def cache_key(
    name: str,
    files: Sequence[SourceFile],
    settings: dict[str, Any],
    unreadable: Sequence[dict[str, str]] = (),
) -> str:
    """A hash of the dataset's files and the loading settings.

    Args:
        name: the dataset name.
        files: the files read (their paths, sizes and mtimes count).
        settings: the loading settings.
        unreadable: skipped-file entries of what folders.scan could not read; they count
            too, since the cached dataset lists them.

    Returns:
        24 hex digits.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT, name, settings], sort_keys=True).encode())
    for file in files:
        # fsencode takes any name the file system gives, UTF-8 or not, byte for byte.
        digest.update(os.fsencode(file.path) + f"\0{file.size}\0{file.mtime_ns}\n".encode())
    for entry in unreadable:
        digest.update(f"{entry['path']}\0{entry['reason']}\n".encode())
    return digest.hexdigest()[:24]


def cache_path(cache_dir: Path, name: str, key: str) -> Path:
    """Where the decoded dataset `name` with cache key `key` is kept."""
    safe = name.replace("+", "plus").replace("/", "_")
    return Path(cache_dir) / "datasets" / f"{safe}-{key}.zip"


def load(path: Path) -> FaceDataset | None:
    """The cached dataset at `path`, or None when there is none or it is damaged.

    Every array is read in full: zip checks each chunk's CRC, and the inflated chunks
    must fill their arrays exactly, so a truncated or altered file is rebuilt, never
    trusted.
    """
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            facts = json.loads(archive.read("facts.json"))
            layout = facts.pop("arrays")
            chunks = {key: [archive.read(f"{key}.{i}.zz") for i in range(count)]
                      for key, (_, _, count) in layout.items()}
        arrays = {}
        with ThreadPoolExecutor(_WORKERS) as pool:
            for key, (dtype, shape, _) in layout.items():
                # Inflate straight into the array's memory: no joining, no second copy.
                array = np.empty(shape, np.dtype(dtype))
                flat = array.reshape(-1).view(np.uint8)
                offsets = np.cumsum([0] + [_CHUNK_BYTES] * (len(chunks[key]) - 1))
                filled = pool.map(functools.partial(_inflate_into, flat), offsets, chunks[key])
                if sum(filled) != flat.size:
                    raise ValueError(f"{key} holds fewer bytes than its shape {shape}")
                arrays[key] = array
        return FaceDataset(**{key: arrays.get(key) for key in _ARRAYS}, **facts)
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, zlib.error):
        return None  # a damaged or stale cache file is rebuilt


def _inflate_into(flat: np.ndarray, offset: int, part: bytes) -> int:
    """Inflates `part` into `flat` at `offset`; returns the bytes written."""
    data = zlib.decompress(part)
    flat[offset:offset + len(data)] = np.frombuffer(data, np.uint8)
    return len(data)


def save(path: Path, dataset: FaceDataset) -> None:
    """Writes `dataset` to `path` atomically (a crash never leaves a truncated file)."""
    arrays = {key: np.ascontiguousarray(getattr(dataset, key)) for key in _ARRAYS
              if getattr(dataset, key) is not None}
    chunks = {}
    for key, array in arrays.items():
        data = array.reshape(-1).view(np.uint8).data
        chunks[key] = [data[i:i + _CHUNK_BYTES] for i in range(0, max(len(data), 1),
                                                               _CHUNK_BYTES)]
    facts = {key: getattr(dataset, key) for key in _FACTS}
    facts["arrays"] = {key: (array.dtype.str, array.shape, len(chunks[key]))
                       for key, array in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
    with ThreadPoolExecutor(_WORKERS) as pool, zipfile.ZipFile(partial, "w") as archive:
        archive.writestr("facts.json", json.dumps(facts))
        for key, parts in chunks.items():
            compressed = pool.map(lambda part: zlib.compress(part, _LEVEL), parts)
            for i, data in enumerate(compressed):
                archive.writestr(f"{key}.{i}.zz", data)
    os.replace(partial, path)
