"""A study spec at one scale, as the grid driver runs it: one grid spec per group of models.

An `Invocation` takes one input size and one checkpoint, so the models of a study are grouped
by those (`Protocol.groups`): most studies are one group, a CNN beside an ImageNet
ResNet-18 at 112×112 two. Each group becomes a `GridSpec` of one point (no axes) that
`benchmarks.grid.driver.run_study` runs like any grid: every run in its own worker, run
ids from the full spec, records kept as they come, `--resume`, local jobs or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks.grid.spec import GridSpec
from benchmarks.reproduce.spec import StudySpec
from benchmarks.runner.config import MeasureConfig
from benchmarks.runner.invocation import Invocation

# --scale smoke proves the machinery: the latency probe and the peak-FLOP/s calibration
# are cut to what shows they work, as the CI preset cuts them.
SMOKE_MEASURE = MeasureConfig(latency_warmup=1, latency_repeats=3, latency_budget_s=0.5,
                              calibration_size=256)
# What a spec's protocol is matched on when a study folder is resumed: kept in each grid
# spec's text, so that a smoke folder is never completed with full-scale runs.
_MARKER = "\n# Added by benchmarks.reproduce: which scale and group this folder runs.\n"


@dataclass(frozen=True)
class StudyGroup:
    """The models of a study that one invocation runs.

    Attributes:
        name: the models, joined by "+": the group's name in messages and folder names.
        models: catalog models.
        image_size: their input side.
        checkpoint: the checkpoint file they start from; None: the shared initial weights.
        grid_spec: the one-point grid spec the driver runs.
    """

    name: str
    models: tuple[str, ...]
    image_size: int
    checkpoint: Path | None
    grid_spec: GridSpec

    def invocation(self) -> Invocation:
        """The group's Invocation (its only point's)."""
        return self.grid_spec.invocation_at({})


def plan_study(spec: StudySpec, scale: str, data_dir: Path | None,
               checkpoint_dir: Path | None, threads: int) -> list[StudyGroup]:
    """The groups `spec` runs at `scale`, in the protocol's order of models.

    Args:
        spec: the checked study spec.
        scale: "smoke" or "full".
        data_dir: the dataset's folder; None: $FERBENCH_DATA/<dataset> or data/<dataset>.
        checkpoint_dir: where the checkpoints the spec names are; used only by groups
            that start from one.
        threads: intra- and inter-op threads of every run.

    Returns:
        One StudyGroup per (input size, checkpoint).
    """
    protocol = spec.protocol(scale)
    measure = SMOKE_MEASURE if scale == "smoke" else MeasureConfig()
    groups = []
    for (image_size, checkpoint), models in protocol.groups().items():
        name = "+".join(models)
        pretrained = None if checkpoint is None else Path(checkpoint_dir or ".") / checkpoint
        options = {"dataset": protocol.dataset, "backends": protocol.backends,
                   "models": models, "recipe": spec.recipe, "seeds": protocol.seeds,
                   "folds": protocol.folds, "fold": protocol.fold, "data_dir": data_dir,
                   "kdef_angles": protocol.kdef_angles, "image_size": image_size,
                   "threads": threads, "measure": measure, "save_weights": "none",
                   "pretrained": pretrained, "data_selection": protocol.selection}
        text = f'{spec.text}{_MARKER}[reproduce]\nscale = "{scale}"\ngroup = "{name}"\n'
        grid_spec = GridSpec(source=f"{spec.source} ({scale}, {name})", text=text,
                             select_by="val_accuracy", datasets=(protocol.dataset,), axes={},
                             fixed=dict(protocol.explicit),
                             options={protocol.dataset: options}, grid_table={}, runs=0)
        grid_spec = replace(grid_spec, runs=len(grid_spec.invocation_at({}).jobs()))
        groups.append(StudyGroup(name, models, image_size, pretrained, grid_spec))
    return groups
