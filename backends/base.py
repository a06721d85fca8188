"""The Backend interface every framework implements (the training recipe it takes, TrainConfig,
is `backends/train_config.py`'s).

Canonical weight layout (what `get_weights()` returns and `set_weights()` takes): a dict
from `"<layer>.<param>"` to a float32 numpy array, using the PyTorch conventions, so the
names are the torch module paths and the arrays are:

* conv kernel ``<layer>.weight``: (out, in, kh, kw) (OIHW); bias ``<layer>.bias``: (out,);
* dense kernel ``<layer>.weight``: (out, in), and when the dense layer follows a flatten,
  its input index runs over (C, H, W) in that order (NCHW flatten);
* BatchNorm: ``weight`` (gamma), ``bias`` (beta), ``running_mean``, ``running_var``;
* GroupNorm: ``weight``, ``bias``; other layers: documented in the model definitions.

Images enter a backend as uint8 NHWC arrays; each backend scales them on its own device
with the same constants (PIXEL_CENTER, PIXEL_SCALE).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backends.augment import AugmentConfig, tta_views
from backends.catalog import model_stages
from backends.explain import class_indices, grad_cam_maps
from backends.pipeline import EpochStream, host_batch
from backends.schedule import (
    PlateauState,
    class_weight_table,
    epoch_batches,
    step_learning_rates,
)
from backends.train_config import TrainConfig, check_precision

PIXEL_CENTER = 127.5
PIXEL_SCALE = 127.5

# Pinned so both frameworks compute the same thing (docs/design.md §1): torch's defaults.
BN_EPSILON = 1e-5
BN_MOMENTUM_TORCH = 0.1  # torch's convention: weight of the new batch statistic
BN_MOMENTUM_KERAS = 1.0 - BN_MOMENTUM_TORCH  # Keras's: weight of the old running value
GN_EPSILON = 1e-5  # GroupNorm: torch's default; Keras's GroupNormalization defaults to 1e-3

# torch.amp.GradScaler's defaults, pinned in both frameworks: Keras's LossScaleOptimizer
# starts at 2**15. The scale halves on a step with a non-finite gradient (skipped) and
# doubles after this many finite steps in a row, in both.
LOSS_SCALE_INITIAL = 2.0**16
LOSS_SCALE_GROWTH_STEPS = 2000


class MissingFrameworkError(RuntimeError):
    """The framework behind a requested backend is not installed."""


@dataclass
class EpochLog:
    """What one epoch of `Backend.fit` measured.

    Attributes:
        epoch: 1-based epoch number.
        train_loss: mean training loss over the epoch's steps.
        train_s: wall time of the epoch's training steps (device synchronised).
        steps: training steps taken.
        images: training images processed.
        learning_rate: the learning rate of the epoch's first step (the epoch's only rate
            after warm-up; during warm-up the rate rises from it step by step).
        val_loss: cross-entropy on the validation set (None without one).
        val_accuracy: accuracy on the validation set (None without one).
        val_s: wall time of the validation pass.
        augment_s: seconds the input thread spent gathering and augmenting this epoch's
            batches (backends/pipeline.py), overlapped with training.
        input_wait_s: of `train_s`, the seconds the training loop waited for its next
            batch: how long the host input path held training up.
        cpu_wait_s: of `train_s`, the time this process's threads were ready to run but
            waited for a CPU (behind other processes or behind each other), from `fit`'s
            `cpu_wait_clock`; None without one.
        others_cpu_s: during `train_s`, the CPU seconds other processes used on this
            process's CPUs, from `fit`'s `others_cpu_clock`; None without one.
    """

    epoch: int
    train_loss: float
    train_s: float
    steps: int
    images: int
    learning_rate: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_s: float | None = None
    augment_s: float | None = None
    input_wait_s: float | None = None
    cpu_wait_s: float | None = None
    others_cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Selection:
    """Which epoch's weights `Backend.fit` left in the model (docs/design.md §7).

    Attributes:
        metric: the validation figure the epoch was chosen by; "last" when `fit` kept the
            last epoch, as configured or for want of a validation set.
        best_epoch: the 1-based epoch whose weights the model holds after `fit`.
        last_epoch: the last epoch trained: `TrainConfig.epochs`, or fewer after an
            early stop.
        stopped_early: whether early stopping (`TrainConfig.patience`) ended training.
    """

    metric: str
    best_epoch: int
    last_epoch: int
    stopped_early: bool


def _selection_key(log: EpochLog, metric: str) -> tuple[float, ...]:
    """How good an epoch is by `metric` ("val_loss" or "val_accuracy"): larger is better.

    A NaN validation loss (a diverged epoch) ranks below every number.
    """
    loss = -math.inf if math.isnan(log.val_loss) else -log.val_loss
    return (loss,) if metric == "val_loss" else (log.val_accuracy, loss)


class Backend(ABC):
    """One framework's implementation of the benchmark's model operations.

    Subclasses build a named model, exchange weights in the canonical layout, train it
    with a TrainConfig on the shared batch schedule and predict class probabilities.
    After `fit`, `selection` says which epoch's weights the model holds.
    """

    name: ClassVar[str]
    framework: ClassVar[str]

    def __init__(self, threads: int | None = None, deterministic: bool = False) -> None:
        """Applies the settings that must precede the framework's first op.

        Args:
            threads: intra- and inter-op thread pool sizes; None keeps the framework's
                defaults.
            deterministic: turn on the framework's deterministic-algorithm switches.
        """
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be an integer ≥ 1. Received: threads={threads!r}")
        self.threads = threads
        self.deterministic = bool(deterministic)
        self.model_name: str | None = None
        self.num_classes: int | None = None
        self.precision = "float32"  # set by `build`
        self.selection: Selection | None = None  # set by `fit`

    # --- framework facts -------------------------------------------------------------
    @abstractmethod
    def versions(self) -> dict[str, str | None]:
        """Returns the framework's version and, where present, CUDA/cuDNN versions."""

    @abstractmethod
    def device_name(self) -> str:
        """Returns "cpu" or the GPU the backend computes on."""

    @abstractmethod
    def flags(self) -> dict[str, Any]:
        """Returns the fast-path settings in use (compilation, memory format, threads)."""

    @abstractmethod
    def seed(self, seed: int) -> None:
        """Seeds the framework's own random number generators (init, dropout)."""

    # --- measurement hooks (benchmarks.trackers calls these) ------------------------------
    @abstractmethod
    def synchronize(self) -> None:
        """Blocks until the device has finished all queued work (no-op on the CPU)."""

    @abstractmethod
    def gpu_allocator_peak_mb(self) -> float | None:
        """Peak memory the framework's GPU allocator handed out in this process, in MB.

        The framework's own view: torch's `max_memory_allocated`, TF's `peak` of
        `get_memory_info` (with memory growth on), JAX's device `memory_stats()` peak
        (with XLA's preallocation off). It excludes the CUDA context and
        allocator caching, so it compares across frameworks only loosely; NVML's
        per-process figure is the like-for-like one. None on the CPU.
        """

    @abstractmethod
    def matmul_op(self, size: int) -> Callable[[], Any]:
        """Returns a callable that queues one size×size float32 matmul on the device.

        The operands are created once, up front; the callable does no host transfer, so
        timing it (synchronised) gives the framework's matmul throughput on this device.
        """

    # --- model -----------------------------------------------------------------------
    def build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str = "float32",
        **overrides: Any,
    ) -> None:
        """Builds `model_name` for (height, width, channels) input and `num_classes`.

        Args:
            model_name: a catalog name.
            input_shape: (height, width, channels).
            num_classes: output classes.
            precision: the numeric precision (PRECISIONS) the model trains and predicts
                in: Keras fixes a layer's dtype policy when the layer is made, so it is
                chosen here, for both frameworks alike; `fit` refuses a TrainConfig of
                another precision.
            **overrides: catalog defaults to replace (see `backends.catalog.model_options`),
                e.g. `dropout=0.0` so that training-mode outputs are deterministic.

        Raises:
            ValueError: an unknown precision, or float16 on a CPU (`check_precision`).
        """
        check_precision(precision, on_gpu=lambda: self.device_name() != "cpu")
        self._build(model_name, input_shape, num_classes, precision, overrides)
        self.model_name, self.num_classes, self.precision = model_name, num_classes, precision

    @abstractmethod
    def _build(
        self,
        model_name: str,
        input_shape: tuple[int, int, int],
        num_classes: int,
        precision: str,
        overrides: dict[str, Any],
    ) -> None:
        """Builds the model in the framework, at `precision` (already checked)."""

    @abstractmethod
    def num_trainable_params(self) -> int:
        """Returns the built model's trainable-parameter count."""

    @abstractmethod
    def get_weights(self) -> dict[str, np.ndarray]:
        """Returns every parameter and BN statistic in the canonical layout."""

    @abstractmethod
    def set_weights(self, weights: dict[str, np.ndarray]) -> None:
        """Loads weights in the canonical layout; keys and shapes must match exactly."""

    @abstractmethod
    def logits(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Forward pass on float32 NHWC input already scaled; returns float32 logits."""

    # --- what the model sees (docs/design.md §9) ---------------------------------------
    @abstractmethod
    def _stage_outputs(self, x: np.ndarray, stages: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Eval-mode outputs of `stages` for one batch of uint8 NHWC images.

        Returns:
            stage → float32 (N, h, w, K), NHWC whatever the framework's own layout.
        """

    @abstractmethod
    def _stage_gradients(self, x: np.ndarray, stage: str,
                         class_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eval-mode activations of `stage` and the gradients of each image's class logit.

        Args:
            x: one batch of uint8 NHWC images.
            stage: a stage name of the built model.
            class_index: (N,) int64, the class whose logit each image's gradient is of.

        Returns:
            (activations, gradients), both float32 (N, h, w, K), NHWC.
        """

    def stages(self) -> tuple[str, ...]:
        """The built model's stages, in forward order (`backends.catalog.model_stages`)."""
        if self.model_name is None:
            raise RuntimeError("build() a model before asking for its stages")
        return model_stages(self.model_name)

    def feature_maps(self, images: np.ndarray, stages: tuple[str, ...] | None = None,
                     batch_size: int = 64) -> dict[str, np.ndarray]:
        """Every stage's output on `images`, in eval mode (BatchNorm running statistics).

        Args:
            images: uint8 NHWC images.
            stages: the stages wanted; None: all of them, in forward order.
            batch_size: images per forward pass.

        Returns:
            stage → float32 (N, h, w, K) NHWC, the same layout in every framework.
        """
        _check_images(images, np.zeros(len(images)))
        stages = self.stages() if stages is None else tuple(stages)
        unknown = sorted(set(stages) - set(self.stages()))
        if unknown:
            raise ValueError(f"{self.model_name} has no stages {unknown}; its stages: "
                             f"{', '.join(self.stages())}")
        parts = [self._stage_outputs(images[start:start + batch_size], stages)
                 for start in range(0, len(images), batch_size)]
        return {stage: np.concatenate([part[stage] for part in parts]) for stage in stages}

    def grad_cam(self, images: np.ndarray, class_index: int | np.ndarray,
                 batch_size: int = 64) -> np.ndarray:
        """Grad-CAM maps of the last convolutional stage (the last of `stages()`).

        The gradients come from this framework's autograd; the weighting, ReLU and the
        resize to the input size are `backends.explain.grad_cam_maps`, the same code for
        every backend, so two frameworks holding the same weights give the same maps
        (docs/design.md §9).

        Args:
            images: uint8 NHWC images.
            class_index: the class to explain, for every image or one per image (e.g.
                the predicted class).
            batch_size: images per forward and backward pass.

        Returns:
            (N, H, W) float32 maps at the input's size, ≥ 0, not normalised.
        """
        _check_images(images, np.zeros(len(images)))
        indices = class_indices(class_index, len(images), self.num_classes)
        stage = self.stages()[-1]
        maps = []
        for start in range(0, len(images), batch_size):
            batch = slice(start, start + batch_size)
            activations, gradients = self._stage_gradients(images[batch], stage, indices[batch])
            maps.append(grad_cam_maps(activations, gradients, images.shape[1:3]))
        return np.concatenate(maps)

    # --- training and inference ------------------------------------------------------
    @abstractmethod
    def _prepare_training(self, config: TrainConfig, class_weights: np.ndarray,
                          layers: frozenset[str] | None = None) -> None:
        """Creates the optimizer and the step function, and moves the class weights over.

        Args:
            config: the shared recipe.
            class_weights: (C,) per-class loss weights.
            layers: the canonical layers (a weight name's part before its last dot) whose
                parameters the optimizer updates, the others getting no gradient, update
                or optimizer state; None: every layer. Each call starts a fresh optimizer.
        """

    @abstractmethod
    def _train_epoch(
        self, batches: Iterable[tuple[np.ndarray, np.ndarray]], learning_rates: np.ndarray
    ) -> float:
        """Runs one step per host batch; returns the mean loss once the device is idle.

        Args:
            batches: (images uint8 NHWC, labels int64) of each step, on the host
                (`backends.pipeline`), each moved to the device for its step.
            learning_rates: the learning rate of each step, set before it.
        """

    @abstractmethod
    def predict_proba(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Returns class probabilities (N, C) float64 for uint8 NHWC images, in order."""

    def warm_up_prediction(self, x: np.ndarray, batch_size: int = 256) -> None:
        """Predicts once at every batch shape `predict_proba(x, batch_size)` will meet.

        TF traces its predict step for each batch shape it has not seen (a test set's
        last partial batch, a size validation never had), and a CPU kernel library
        (oneDNN) may set up its kernels afresh for a new shape in either framework; called
        before a timed prediction, this leaves the stopwatch only the prediction itself.
        The same code for every backend, so both frameworks are warmed alike. Test-time
        augmentation's views keep `x`'s shape, so this covers `predict_proba_tta` too.

        Args:
            x: uint8 NHWC images, the ones to be predicted (only their count and image
                shape matter).
            batch_size: images per prediction batch, as the timed call will use.
        """
        _check_images(x, np.zeros(len(x)))
        for size in sorted({min(batch_size, len(x)), len(x) % batch_size} - {0}):
            self.predict_proba(x[:size], batch_size)

    def predict_proba_tta(self, x: np.ndarray, mode: str, batch_size: int = 256) -> np.ndarray:
        """Class probabilities averaged over the test-time views of `x`.

        The views come from `backends.augment.tta_views`, on the host, so both frameworks
        score the same pixels; this is the same code for every backend.

        Args:
            x: uint8 NHWC images.
            mode: one of TTA_MODES ("none" is `predict_proba` itself).
            batch_size: images per prediction batch.

        Returns:
            (N, C) float64 probabilities, the mean over the views.
        """
        views = tta_views(x, mode)
        return sum(self.predict_proba(view, batch_size) for view in views) / len(views)

    def start_training(self, x: np.ndarray, y: np.ndarray, config: TrainConfig,
                       layers: frozenset[str] | None = None) -> None:
        """Readies the built model for `train_step` on these images (what `fit` does first).

        Keeps the training set on the host, where `fit` draws each step's batch
        (backends/pipeline.py), and creates the optimizer and step function.

        Args:
            x: training images, uint8 (N, H, W, C).
            y: integer labels (N,).
            config: the shared recipe (its optimizer, loss and class weighting are used).
            layers: the only layers to train (`_prepare_training`); None: all.
        """
        if self.model_name is None:
            raise RuntimeError("build() a model before training it")
        if config.precision != self.precision:
            raise ValueError(f"the model was built for precision {self.precision}; build it "
                             f"with precision={config.precision!r} to train in it")
        _check_images(x, y)
        weights = class_weight_table(y, self.num_classes, config.class_weighting)
        self._prepare_training(config, weights, layers)
        self._train_set, self._base_learning_rate = (x, y), config.learning_rate
        self._class_weights_table = weights

    def train_step(self, indices: np.ndarray) -> float:
        """One training step on the samples `indices` of `start_training`'s images.

        The same code path as each step of `fit`, at the recipe's base learning rate
        (`TrainConfig.learning_rate`: no schedule, which needs epochs) and without
        augmentation, so a timing probe times the framework's step; returns once the
        device is idle.

        Args:
            indices: int64 indices into the training images: one batch.

        Returns:
            The step's loss.
        """
        x, y = self._train_set
        batch = host_batch(x, y, indices, AugmentConfig(), seed=0, epoch=0, step=0)
        return self._train_epoch([batch], np.array([self._base_learning_rate]))

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        on_epoch_end: Callable[[EpochLog], None] | None = None,
        cpu_wait_clock: Callable[[], float | None] | None = None,
        head_layers: frozenset[str] | None = None,
        others_cpu_clock: Callable[[], float | None] | None = None,
    ) -> list[EpochLog]:
        """Trains the built model on uint8 NHWC images with the shared batch schedule.

        Every epoch's sample order comes from `epoch_batches(len(x), batch_size, seed,
        epoch)`, so two backends given the same data and seed see identical batches.
        After each epoch the validation set is scored; the best epoch by
        `config.selection_metric` is kept as a canonical `get_weights()` snapshot and
        loaded back with `set_weights` at the end, so the model leaves `fit` holding it
        (`self.selection` says which). This is the same code for every backend: given
        the same validation scores, both frameworks keep the same epoch. `fit` never
        sees a test set.

        Args:
            x: training images, uint8 (N, H, W, C).
            y: integer labels (N,).
            config: the shared recipe.
            validation: optional (images, labels) scored after each epoch, for the log
                and for selection and early stopping.
            on_epoch_end: called with each epoch's log (progress reporting).
            cpu_wait_clock: cumulative seconds this process's threads waited for a CPU
                (None where unknown); read at both ends of each epoch's training, inside
                its timing, for `EpochLog.cpu_wait_s`.
            head_layers: the canonical layers the first `config.freeze_epochs` epochs
                train alone (a pretrained model's re-initialised ones); needed, and only
                read, when freeze_epochs > 0. The unfreeze starts a fresh optimizer over
                every parameter; the learning-rate schedule runs on undisturbed.
            others_cpu_clock: cumulative CPU seconds other processes used (None where
                unknown); read like `cpu_wait_clock`, for `EpochLog.others_cpu_s`.

        Returns:
            One EpochLog per epoch trained.
        """
        metric = config.selection_metric if validation is not None else "last"
        if config.patience is not None and metric == "last":
            raise ValueError("early stopping (patience) needs a validation set")
        if config.lr_schedule == "plateau" and validation is None:
            raise ValueError("the plateau learning-rate schedule needs a validation set")
        frozen = config.freeze_epochs > 0
        if frozen and not head_layers:
            raise ValueError("freeze_epochs needs the layers to train while the others are "
                             "frozen: a --pretrained checkpoint's re-initialised layers")
        self.start_training(x, y, config, frozenset(head_layers) if frozen else None)
        plateau = PlateauState(config.plateau_patience, config.lr_gamma)
        logs, best, snapshot, stale = [], None, None, 0
        for epoch in range(config.epochs):
            if frozen and epoch == config.freeze_epochs:
                self._prepare_training(config, self._class_weights_table, None)
            log = self._fit_epoch(x, y, config, epoch, plateau.factor,
                                  {"cpu_wait_s": cpu_wait_clock, "others_cpu_s": others_cpu_clock})
            if validation is not None:
                start = time.perf_counter()
                probs = self.predict_proba(validation[0], config.eval_batch_size)
                self.synchronize()
                log.val_s = time.perf_counter() - start
                log.val_loss, log.val_accuracy = _loss_and_accuracy(validation[1], probs)
                # Warm-up epochs neither set the best loss nor count as stalled.
                if config.lr_schedule == "plateau" and epoch >= config.warmup_epochs:
                    plateau.update(log.val_loss)
            logs.append(log)
            if on_epoch_end is not None:
                on_epoch_end(log)
            if metric == "last":
                continue
            if best is None or _selection_key(log, metric) > _selection_key(best, metric):
                best, stale = log, 0
                # After the last planned epoch the model already holds these weights.
                snapshot = self.get_weights() if log.epoch < config.epochs else None
            else:
                stale += 1
                if stale == config.patience:
                    break
        last = logs[-1]
        if best is None:
            best = last
        elif best is not last:
            self.set_weights(snapshot)
        self.selection = Selection(metric, best.epoch, last.epoch, last.epoch < config.epochs)
        return logs

    def _fit_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        config: TrainConfig,
        epoch: int,
        plateau_factor: float,
        clocks: dict[str, Callable[[], float | None] | None],
    ) -> EpochLog:
        """Trains one epoch (0-based `epoch`) of `fit`; returns its log, validation unset.

        Args:
            x, y, config: as for `fit`.
            epoch: the 0-based epoch.
            plateau_factor: the plateau schedule's factor on the learning rate.
            clocks: EpochLog field → a cumulative clock (or None), read at both ends of
                the epoch's training; the field gets the difference (None if unknown).

        Returns:
            The epoch's log, validation unset.
        """
        batches = epoch_batches(len(x), config.batch_size, config.seed, epoch)
        learning_rates = step_learning_rates(config, epoch, len(batches), plateau_factor)
        stream = EpochStream(x, y, batches, config.augment, config.seed, epoch)
        # Synchronised at both ends so each epoch is billed exactly its own device work.
        self.synchronize()
        start = time.perf_counter()
        started = {name: clock() if clock else None for name, clock in clocks.items()}
        loss = self._train_epoch(stream, learning_rates)
        self.synchronize()
        read = {name: clock() if started[name] is not None else None
                for name, clock in clocks.items()}
        spent = {name: None if read[name] is None else read[name] - started[name]
                 for name in clocks}
        return EpochLog(
            epoch=epoch + 1,
            train_loss=loss,
            train_s=time.perf_counter() - start,
            steps=len(batches),
            images=int(sum(len(b) for b in batches)),
            learning_rate=float(learning_rates[0]),
            augment_s=stream.timing.augment_s,
            input_wait_s=stream.timing.wait_s,
            **spent,
        )


def _check_images(x: np.ndarray, y: np.ndarray) -> None:
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(
            f"images must be uint8 (N, H, W, C). Received: dtype={x.dtype}, shape={x.shape}"
        )
    if len(x) != len(y):
        raise ValueError(f"images and labels differ in length: {len(x)} != {len(y)}")


def _loss_and_accuracy(y: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    picked = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return float(-np.log(picked).mean()), float((probs.argmax(1) == y).mean())
