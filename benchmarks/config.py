"""Run specifications: dataclasses recorded verbatim in the results."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends.base import TrainConfig

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """Everything one worker process needs for one (backend, model, dataset, fold, seed).

    Attributes:
        backend: backend name ("tf" or "torch").
        model: catalog model name.
        dataset: dataset name.
        prepared_data: .npz written by the harness with x_/y_ train, val, test arrays
            and class_names (the one preprocessed uint8 array that feeds both backends).
        train: the shared training recipe.
        init: "shared" (same ported initial weights in both frameworks) or "native".
        threads: intra/inter-op threads for the framework (None: framework default).
        fold: fold index for k-fold protocols, None for a holdout.
        data_info: facts about the data (fingerprint, protocol, sizes) for the record.
    """

    backend: str
    model: str
    dataset: str
    prepared_data: str
    train: TrainConfig = field(default_factory=TrainConfig)
    init: str = "shared"
    threads: int | None = None
    fold: int | None = None
    data_info: dict[str, Any] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        fold = "" if self.fold is None else f"-fold{self.fold}"
        return f"{self.backend}-{self.model}-{self.dataset}{fold}-seed{self.train.seed}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        raw = json.loads(text)
        raw["train"] = TrainConfig(**raw["train"])
        return cls(**raw)

    @classmethod
    def read(cls, path: Path) -> RunSpec:
        return cls.from_json(Path(path).read_text())
