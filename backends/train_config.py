"""The training recipe both frameworks share: TrainConfig, the values its fields take, and
the precision check (docs/design.md §4).

Its one owner. It lives in `backends/` because `Backend.fit` takes it and backends import
nothing from `benchmarks/`; `benchmarks/runner/recipe.py` reads it, and turns recipe files,
presets and command-line options into TrainConfigs (their spellings, bounds and help).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from backends.augment import TTA_MODES, AugmentConfig
from backends.schedule import LR_SCHEDULES

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# "float32" is IEEE float32 throughout; the other two are mixed precision, the same rules in
# both frameworks (docs/design.md §4, "Precision"): float32 master weights and optimizer,
# convolutions and dense layers in the 16-bit type, BatchNorm and GroupNorm statistics and
# the loss in float32, and for float16 a dynamic loss scale.
PRECISIONS = ("float32", "bfloat16", "float16")
CLASS_WEIGHTING = ("none", "balanced")
SELECTION_METRICS = ("val_loss", "val_accuracy", "last")
# TrainConfig's text fields → the values each may take: what __post_init__ checks, and what
# the command line offers as choices.
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "precision": PRECISIONS,
    "class_weighting": CLASS_WEIGHTING,
    "selection_metric": SELECTION_METRICS,
    "tta": TTA_MODES,
}
# The largest seed both frameworks take: Keras's set_random_seed also seeds numpy's legacy
# generator, which takes seeds below 2**32.
MAX_SEED = 2**32 - 1


def check_precision(precision: str, on_gpu: Callable[[], bool]) -> None:
    """Raises ValueError unless `precision` can run on this device in both frameworks.

    float16 is refused on a CPU: neither framework has float16 kernels there on the
    CPUs the suite runs on (torch's float16 convolution ran 8× slower than its float32
    one on the 2-core development machine, an emulation), so its times would measure
    the emulation, not mixed precision.

    Args:
        precision: a TrainConfig precision.
        on_gpu: says whether the framework computes on a CUDA GPU; asked only for
            float16 (it may start a framework).

    Raises:
        ValueError: an unknown precision, or float16 without a GPU (one line naming
            the fix).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}. "
                         f"Received: precision={precision!r}")
    if precision == "float16" and not on_gpu():
        raise ValueError(FLOAT16_NEEDS_GPU)


FLOAT16_NEEDS_GPU = ("precision float16 needs a CUDA GPU: on a CPU both frameworks run float16 "
                     "in slow emulation; use --precision bfloat16 on a CPU, or run on a GPU")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe shared by both frameworks (docs/design.md §4), recorded verbatim.

    Attributes:
        epochs: passes over the training set.
        batch_size: training batch size; the last incomplete batch of an epoch is dropped
            when the set holds more than one batch.
        learning_rate: the base learning rate, in (0, inf).
        lr_schedule: one of LR_SCHEDULES, "constant", "cosine" (per-epoch cosine
            annealing), "step" or "plateau"; the formulas are
            backends.schedule.step_learning_rates's. "plateau" needs a validation set.
        warmup_epochs: linear warm-up per step over the first this many epochs, before
            the schedule (0: none; in [0, epochs)): a stable start for deep nets without
            BatchNorm (vgg16).
        lr_step_epochs: "step" multiplies the rate by `lr_gamma` every this many epochs
            (torch's StepLR), ≥ 1.
        lr_gamma: the factor of "step" and "plateau", in (0, 1).
        plateau_patience: "plateau" multiplies the rate by `lr_gamma` once the validation
            loss has not improved (strictly lower than the best so far: threshold 0) for
            more than this many epochs in a row (backends.schedule.PlateauState), ≥ 0.
        optimizer: one of OPTIMIZERS, "adam", "adamw", "sgd" or "rmsprop", with torch's
            update formulas in both frameworks (docs/design.md §4).
        epsilon: Adam's, AdamW's and RMSprop's ε, added to the denominator after the bias
            correction as torch does; finite, > 0. Pinned at torch's 1e-8 (Keras
            defaults to 1e-7).
        adam_beta1: Adam's and AdamW's first-moment decay, in [0, 1).
        adam_beta2: Adam's and AdamW's second-moment decay, in [0, 1).
        weight_decay: finite, ≥ 0. For "adam", "sgd" and "rmsprop" an L2 penalty added to
            the gradient (g + wd·p, torch's `weight_decay`); for "adamw" decoupled,
            p ← p·(1 − lr·wd) before the Adam step (torch's AdamW, whose default 0.01 is
            not used: 0 here unless set). Applied to every trainable parameter, BatchNorm
            scales and biases included, in both frameworks alike.
        momentum: SGD's momentum, torch's form (buf ← m·buf + g; p ← p − lr·buf, no
            dampening), in [0, 1).
        nesterov: SGD's Nesterov momentum (torch's: p ← p − lr·(g + m·buf)); needs
            momentum > 0.
        rmsprop_alpha: RMSprop's smoothing constant, in [0, 1): torch's default 0.99,
            pinned (Keras calls it rho and defaults to 0.9). RMSprop runs without
            momentum and not centered.
        label_smoothing: cross-entropy label smoothing in [0, 1).
        dropout: the rate of every dropout layer of the model, in [0, 1); None (the
            default) keeps the model's own (`backends.catalog`: 0.5 in vgg16's and
            alexnet's classifiers). A model without dropout layers takes only None or 0.
            On deep nets without BatchNorm the head's dropout hides the faint
            input-dependent signal of the first steps (vgg16, docs/design.md §7).
        class_weighting: "none" or "balanced" (n / (C * count_c)), as per-sample loss
            weights normalised by their sum in each batch.
        eval_batch_size: batch size for validation and test prediction.
        seed: seeds the shared host-side sample order and each framework's RNG; in
            [0, MAX_SEED].
        precision: numeric precision of training and inference:
            "float32" (IEEE, TF32 off), "bfloat16" or "float16" (mixed precision: float32
            master weights, BatchNorm and loss; float16 with a dynamic loss scale, and on
            a CUDA GPU only).
        compile: XLA (TF `jit_compile`) / `torch.compile`; off by default on CPU, where
            compilation costs more than it saves for these small runs.
        selection_metric: the validation figure by which `fit` keeps the best epoch and
            restores its weights before returning (docs/design.md §7): "val_loss"
            (lowest; the default, as in Keras's checkpoint and early-stopping callbacks:
            float rounding moves it by little between the two frameworks, where it moves
            accuracy by whole images), "val_accuracy" (highest; ties go to the lower
            val_loss) or "last" (no selection: the last epoch's weights). Without a
            validation set there is nothing to select on and `fit` keeps the last epoch.
        patience: early stopping: stop once this many epochs in a row brought no better
            `selection_metric`; None (the default) trains every epoch. The learning-rate
            schedule still spans `epochs`.
        augment: the training augmentation (backends/augment.py), drawn on the host from
            the shared stream so both frameworks train on the same pixels; a named level
            (`augment_config`) or per-op settings. Off by default.
        tta: test-time augmentation of the test set: "none", "flip" (the image and its
            mirror) or "tencrop" (4 corners, centre and their mirrors), class
            probabilities averaged over the views (`Backend.predict_proba_tta`).
            Validation, and so selection, always scores the plain images.
        freeze_epochs: with a pretrained checkpoint, train only the layers it did not
            provide (the re-initialised head) for this many first epochs, then every
            layer; in [0, epochs], 0 for none. The layers come to `fit` as `head_layers`.
            Frozen parameters get no update, no weight decay and no optimizer state; at
            the unfreeze every parameter starts a fresh optimizer state (docs/weights.md).
            BatchNorm layers keep normalising with batch statistics and updating their
            running ones while frozen.
    """

    epochs: int = 6
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"
    warmup_epochs: int = 0
    lr_step_epochs: int = 10
    lr_gamma: float = 0.1
    plateau_patience: int = 2
    optimizer: str = "adam"
    epsilon: float = 1e-8
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    rmsprop_alpha: float = 0.99
    label_smoothing: float = 0.0
    class_weighting: str = "none"
    dropout: float | None = None
    eval_batch_size: int = 256
    seed: int = 0
    precision: str = "float32"
    compile: bool = False
    selection_metric: str = "val_loss"
    patience: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta: str = "none"
    freeze_epochs: int = 0

    def __post_init__(self) -> None:
        # A record read back (RunSpec.from_json) holds the augmentation as a dict.
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig(**self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise ValueError("augment must be an AugmentConfig. "
                             f"Received: augment={self.augment!r}")
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer ≥ 1. Received: {name}={value!r}")
        # inf passes `> 0` and then fails mid-run; `math.isfinite` rejects it (and NaN).
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError("learning_rate must be a finite number > 0. "
                             f"Received: learning_rate={self.learning_rate!r}")
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(
                f"epsilon must be a finite number > 0. Received: epsilon={self.epsilon!r}"
            )
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError("weight_decay must be a finite number ≥ 0. "
                             f"Received: weight_decay={self.weight_decay!r}")
        for name in ("adam_beta1", "adam_beta2", "momentum", "rmsprop_alpha"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(
                    f"{name} must be in [0, 1). Received: {name}={getattr(self, name)!r}"
                )
        if self.dropout is not None and not (
            isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0
        ):
            raise ValueError(
                f"dropout must be None or in [0, 1). Received: dropout={self.dropout!r}"
            )
        if self.nesterov and self.momentum == 0:
            raise ValueError(
                f"nesterov requires momentum > 0. Received: momentum={self.momentum!r}"
            )
        if not 0.0 < self.lr_gamma < 1.0:
            raise ValueError(f"lr_gamma must be in (0, 1). Received: lr_gamma={self.lr_gamma!r}")
        if not isinstance(self.lr_step_epochs, int) or self.lr_step_epochs < 1:
            raise ValueError("lr_step_epochs must be an integer ≥ 1. "
                             f"Received: lr_step_epochs={self.lr_step_epochs!r}")
        if not isinstance(self.plateau_patience, int) or self.plateau_patience < 0:
            raise ValueError("plateau_patience must be an integer ≥ 0. "
                             f"Received: plateau_patience={self.plateau_patience!r}")
        warmup = self.warmup_epochs
        if not isinstance(warmup, int) or not 0 <= warmup < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={self.epochs}). "
                             f"Received: warmup_epochs={warmup!r}")
        freeze = self.freeze_epochs
        if (not isinstance(freeze, int) or isinstance(freeze, bool)
                or not 0 <= freeze <= self.epochs):
            raise ValueError(f"freeze_epochs must be an integer in [0, epochs={self.epochs}]. "
                             f"Received: freeze_epochs={freeze!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}]. "
                             f"Received: seed={self.seed!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                "label_smoothing must be in [0, 1). "
                f"Received: label_smoothing={self.label_smoothing!r}"
            )
        for name, allowed in FIELD_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}. "
                    f"Received: {name}={getattr(self, name)!r}"
                )
        if self.patience is not None:
            if not isinstance(self.patience, int) or self.patience < 1:
                raise ValueError(
                    f"patience must be None or an integer ≥ 1. Received: patience={self.patience!r}"
                )
            if self.selection_metric == "last":
                raise ValueError(
                    "early stopping needs a validation metric to watch: patience requires "
                    "selection_metric 'val_loss' or 'val_accuracy'. "
                    f"Received: selection_metric={self.selection_metric!r}"
                )
