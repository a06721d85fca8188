"""Feature maps and Grad-CAM are the same in both frameworks (docs/design.md §9).

Each model is built in both frameworks with the same weights (tests/test_models.py's
`_test_weights`: random enough that every stage and every map is far from zero), on the
smallest input that leaves its last stage at least 2×2, so that a Grad-CAM map has shape.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")

import torch  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.catalog import CATALOG, MODEL_NAMES, model_stages  # noqa: E402
from backends.explain import grad_cam_maps, resize_bilinear  # noqa: E402
from tests.test_models import _test_weights  # noqa: E402

NUM_CLASSES = 7
# docs/design.md §9: max |Δmap| as a share of the map's range (max − min), image by image.
GRAD_CAM_TOLERANCE = 1e-3
FEATURE_TOLERANCE = 1e-4  # max |Δ| as a share of the stage's largest |activation|
# The smallest square grey input whose last stage is at least 2×2.
SIDES = {"proposed_cnn": 16, "sanet": 16, "vgg16": 64, "alexnet": 32, "resnet18": 64,
         "resnet50": 64}
FAST = ("proposed_cnn", "sanet")  # about a second each; the others build for many


def _pair(name: str):
    shape = (SIDES[name], SIDES[name], 1)
    backends = {b: create_backend(b) for b in ("torch", "tf")}
    overrides = {} if CATALOG[name].dropout is None else {"dropout": 0.0}
    for backend in backends.values():
        backend.build(name, shape, NUM_CLASSES, **overrides)
    weights = _test_weights(backends["torch"], shape, seed=1)
    backends["tf"].set_weights(weights)
    images = np.random.default_rng(3).integers(0, 256, (6, *shape), dtype=np.uint8)
    return backends, images


def _params(names):
    return [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in names]


@pytest.mark.parametrize("name", _params(MODEL_NAMES))
def test_both_frameworks_give_the_same_grad_cam(name):
    backends, images = _pair(name)
    # Explain each image's predicted class and one other, fixed class.
    predicted = backends["torch"].predict_proba(images).argmax(1)
    worst = 0.0
    for classes in (predicted, (predicted + 3) % NUM_CLASSES):
        maps = {b: backend.grad_cam(images, classes) for b, backend in backends.items()}
        assert maps["torch"].shape == maps["tf"].shape == images.shape[:3]
        assert maps["tf"].dtype == np.float32 and (maps["tf"] >= 0).all()
        spread = maps["torch"].max(axis=(1, 2)) - maps["torch"].min(axis=(1, 2))
        if classes is predicted:
            # Most maps show some evidence for the predicted class: a test of real maps.
            assert (spread > 0).mean() >= 0.5, spread
        difference = np.abs(maps["torch"] - maps["tf"]).max(axis=(1, 2))
        kept = spread > 0
        # A class with no positive evidence anywhere gives a map of zeros in both.
        np.testing.assert_array_equal(maps["tf"][~kept], 0.0)
        worst = max(worst, float((difference[kept] / spread[kept]).max(initial=0.0)))
    print(f"\ngrad-cam parity {name}: worst |Δ| / range = {worst:.2e}")
    assert worst <= GRAD_CAM_TOLERANCE


@pytest.mark.parametrize("name", _params(MODEL_NAMES))
def test_both_frameworks_give_the_same_feature_maps(name):
    backends, images = _pair(name)
    maps = {b: backend.feature_maps(images) for b, backend in backends.items()}
    assert list(maps["torch"]) == list(maps["tf"]) == list(model_stages(name))
    for stage in model_stages(name):
        a, b = maps["torch"][stage], maps["tf"][stage]
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        assert a.shape[0] == len(images) and a.shape[1] <= images.shape[1]
        scale = np.abs(a).max()
        assert scale > 0
        assert np.abs(a - b).max() <= FEATURE_TOLERANCE * scale, stage


def test_feature_maps_are_nhwc_with_the_stage_widths():
    backends, images = _pair("proposed_cnn")
    maps = backends["tf"].feature_maps(images, stages=("block1", "block4"))
    assert maps["block1"].shape == (6, 16, 16, 32)  # full size, 32 channels, before pooling
    assert maps["block4"].shape == (6, 2, 2, 256)
    with pytest.raises(ValueError, match="has no stages"):
        backends["torch"].feature_maps(images, stages=("layer4",))


def test_the_stage_names_are_the_torch_modules_and_the_keras_marks():
    """Every catalog stage is a module of the torch model and a marked Keras tensor."""
    for name in FAST:
        backends, _ = _pair(name)
        modules = dict(backends["torch"].model.named_modules())
        for stage in model_stages(name):
            assert stage in modules
            assert backends["tf"].model.get_layer(f"{stage}.out") is not None


def test_grad_cam_rejects_a_class_out_of_range():
    backends, images = _pair("proposed_cnn")
    with pytest.raises(ValueError, match=r"class_index must be in \[0, 7\)"):
        backends["torch"].grad_cam(images, 7)


def test_the_resize_is_torchs_bilinear_without_corner_alignment():
    maps = np.random.default_rng(0).random((2, 3, 5)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(maps)[:, None], size=(16, 11),
                                               mode="bilinear", align_corners=False)
    np.testing.assert_allclose(resize_bilinear(maps, (16, 11)), expected[:, 0].numpy(),
                               atol=1e-6)


def test_grad_cam_weights_each_channel_by_its_mean_gradient():
    # Channel 0 has a positive mean gradient, channel 1 a negative one: the map is the
    # ReLU of channel 0's activation times its weight, minus channel 1's.
    activations = np.zeros((1, 2, 2, 2), np.float32)
    activations[0, :, :, 0] = [[1, 0], [0, 0]]
    activations[0, :, :, 1] = [[0, 0], [0, 1]]
    gradients = np.stack([np.full((2, 2), 2.0), np.full((2, 2), -1.0)], -1)[None]
    cam = grad_cam_maps(activations, gradients.astype(np.float32), (2, 2))
    np.testing.assert_allclose(cam[0], [[2, 0], [0, 0]])
