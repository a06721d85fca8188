"""What `--scale smoke` reads instead of the real data and checkpoints: generated once.

Each dataset is written in its real on-disk layout by `datasets.fixtures` (synthetic faces,
traps included), so a smoke run goes through the same loader, split and selection as a
full one. A checkpoint a study names is written as a torchvision state_dict of random
values in torchvision's exact layout (the zoo's torch model carries torchvision's module
names). Both are kept in the cache folder, made atomically and reused, so that a resumed
smoke study reads the same bytes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from datasets import GENERATORS, fixtures

# Bumped whenever a writer below changes what it writes, so old copies are not reused.
FIXTURE_VERSION = 1
FIXTURES_DIR = "reproduce-fixtures"
# A smoke study's FER2013: 40 training, 20 PublicTest and 20 PrivateTest rows a class on
# average (the fewest, drawn at random: 12), enough for the shipped specs' smoke draws
# (12 and 4 images a class).
SMOKE_FER2013_USAGE = {"Training": 280, "PublicTest": 140, "PrivateTest": 140}
_WRITERS = {
    "ck+": lambda root: fixtures.write_ckplus48(root, num_subjects=8),
    "fer2013": lambda root: fixtures.write_fer2013_csv(root, usage_counts=SMOKE_FER2013_USAGE),
    "kdef": lambda root: fixtures.write_kdef(root, num_people=6, angles=("S",)),
    "natural_faces": lambda root: fixtures.write_natural_faces(root, per_class=8),
}
# The random checkpoints' input side: any works, torchvision's layout does not depend on it.
_CHECKPOINT_SIDE = 32


def _made_once(folder: Path, write) -> Path:
    """`folder`, written by `write(temporary folder)` unless a complete copy is there."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        write(partial)
        os.replace(partial, folder)
    except OSError:
        if not folder.is_dir():  # not another process's complete copy: a real failure
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder


def smoke_data_dir(dataset: str, cache_dir: Path) -> Path | None:
    """The folder `dataset` is read from at --scale smoke; None for a generated one.

    Args:
        dataset: canonical dataset name.
        cache_dir: the cache folder (`datasets.cache.default_cache_dir`).
    """
    if dataset in GENERATORS:
        return None
    safe = dataset.replace("+", "plus")
    folder = cache_dir / FIXTURES_DIR / f"{safe}-v{FIXTURE_VERSION}"
    return _made_once(folder, lambda partial: _WRITERS[dataset](partial / "data")) / "data"


def torchvision_layout(architecture: str, seed: int = 0) -> dict[str, Any]:
    """A random state_dict in torchvision's layout: the zoo's torch model at 3 channels
    and 1000 classes, every tensor (BatchNorm statistics too) drawn at random.

    Args:
        architecture: a catalog model torchvision has (backends.pretrained.TORCHVISION_MODELS).
        seed: the draw's seed.

    Returns:
        name → torch.Tensor, as `torch.save` writes it.
    """
    import torch

    from backends.torch.models import create_model

    torch.manual_seed(seed)
    model = create_model(architecture, (_CHECKPOINT_SIDE, _CHECKPOINT_SIDE, 3), 1000)
    state = model.state_dict()
    generator = torch.Generator().manual_seed(seed)
    for name, value in state.items():
        if name.endswith("num_batches_tracked"):
            value.fill_(123)
        elif name.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        elif value.ndim <= 1:
            value.copy_(torch.randn(value.shape, generator=generator) * 0.2
                        + (1.0 if name.endswith("bn1.weight") else 0.0))
        else:
            fan_in = value[0].numel()
            value.copy_(torch.randn(value.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return state


def smoke_checkpoint_dir(checkpoints: dict[str, str], cache_dir: Path) -> Path:
    """A folder holding, under each given name, a random torchvision checkpoint of its
    architecture: what --scale smoke starts pretrained models from.

    Args:
        checkpoints: file name → architecture (a torchvision model).
        cache_dir: the cache folder.
    """
    import torch

    folder = cache_dir / FIXTURES_DIR / f"checkpoints-v{FIXTURE_VERSION}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, architecture in checkpoints.items():
        path = folder / name
        if not path.is_file():
            partial = path.with_name(f".{name}.{os.getpid()}.tmp")
            torch.save(torchvision_layout(architecture), partial)
            os.replace(partial, path)
    return folder
