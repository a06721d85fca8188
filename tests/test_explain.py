"""Feature maps and Grad-CAM are the same in every framework (docs/design.md §9).

Each model is built in torch and in each other backend with the same weights (`calibrated_weights`,
tests/conftest.py: random enough that every stage and every map is far from zero), on the
smallest input that leaves its last stage at least 2×2, so that a Grad-CAM map has shape.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402

from backends import create_backend  # noqa: E402
from backends.catalog import MODEL_NAMES, model_stages  # noqa: E402
from backends.explain import grad_cam_maps, resize_bilinear  # noqa: E402
from tests.conftest import (  # noqa: E402
    COMPARED_BACKENDS,
    REFERENCE_BACKEND,
    calibrated_weights,
    missing_framework,
    same_weights_pair,
)

NUM_CLASSES = 7
# docs/design.md §9: max |Δmap| as a share of the map's range (max − min), image by image.
GRAD_CAM_TOLERANCE = 1e-3
FEATURE_TOLERANCE = 1e-4  # max |Δ| as a share of the stage's largest |activation|
# The smallest square grey input whose last stage is at least 2×2.
SIDES = {"proposed_cnn": 16, "sanet": 16, "vgg16": 64, "alexnet": 32, "resnet18": 64,
         "resnet50": 64}
FAST = ("proposed_cnn", "sanet")  # about a second each; the others build for many
# The tests below that are about tf and torch alone (the stage marks, the explain command
# over a tf and a torch run).
NEEDS_TF = pytest.mark.skipif(missing_framework("tf") is not None,
                              reason=str(missing_framework("tf")))


def _pair(name: str, compared: str = "tf"):
    shape = (SIDES[name], SIDES[name], 1)
    backends = same_weights_pair(name, shape, NUM_CLASSES, compared)
    images = np.random.default_rng(3).integers(0, 256, (6, *shape), dtype=np.uint8)
    return backends, images


def _params(names):
    """(model, backend) for every compared backend; the FAST models in the fast run."""
    params = []
    for name in names:
        for backend in COMPARED_BACKENDS:
            marks = [] if name in FAST else [pytest.mark.slow]
            if reason := missing_framework(backend):
                marks.append(pytest.mark.skip(reason=reason))
            params.append(pytest.param(name, backend, marks=marks, id=f"{name}-{backend}"))
    return params


@pytest.mark.parametrize(("name", "compared"), _params(MODEL_NAMES))
def test_both_frameworks_give_the_same_grad_cam(name, compared):
    backends, images = _pair(name, compared)
    # Explain each image's predicted class and one other, fixed class.
    predicted = backends[REFERENCE_BACKEND].predict_proba(images).argmax(1)
    worst = 0.0
    for classes in (predicted, (predicted + 3) % NUM_CLASSES):
        maps = {b: backend.grad_cam(images, classes) for b, backend in backends.items()}
        expected, actual = maps[REFERENCE_BACKEND], maps[compared]
        assert expected.shape == actual.shape == images.shape[:3]
        assert actual.dtype == np.float32 and (actual >= 0).all()
        spread = expected.max(axis=(1, 2)) - expected.min(axis=(1, 2))
        if classes is predicted:
            # Most maps show some evidence for the predicted class: a test of real maps.
            assert (spread > 0).mean() >= 0.5, spread
        difference = np.abs(expected - actual).max(axis=(1, 2))
        kept = spread > 0
        # A class with no positive evidence anywhere gives a map of zeros in both.
        np.testing.assert_array_equal(actual[~kept], 0.0)
        worst = max(worst, float((difference[kept] / spread[kept]).max(initial=0.0)))
    print(f"\ngrad-cam parity {name} {compared}: worst |Δ| / range = {worst:.2e}")
    assert worst <= GRAD_CAM_TOLERANCE


@pytest.mark.parametrize(("name", "compared"), _params(MODEL_NAMES))
def test_both_frameworks_give_the_same_feature_maps(name, compared):
    backends, images = _pair(name, compared)
    maps = {b: backend.feature_maps(images) for b, backend in backends.items()}
    assert list(maps[REFERENCE_BACKEND]) == list(maps[compared]) == list(model_stages(name))
    for stage in model_stages(name):
        a, b = maps[REFERENCE_BACKEND][stage], maps[compared][stage]
        assert a.shape == b.shape and a.dtype == b.dtype == np.float32
        assert a.shape[0] == len(images) and a.shape[1] <= images.shape[1]
        scale = np.abs(a).max()
        assert scale > 0
        assert np.abs(a - b).max() <= FEATURE_TOLERANCE * scale, stage


@NEEDS_TF
def test_feature_maps_are_nhwc_with_the_stage_widths():
    backends, images = _pair("proposed_cnn")
    maps = backends["tf"].feature_maps(images, stages=("block1", "block4"))
    assert maps["block1"].shape == (6, 16, 16, 32)  # full size, 32 channels, before pooling
    assert maps["block4"].shape == (6, 2, 2, 256)
    with pytest.raises(ValueError, match="has no stages"):
        backends["torch"].feature_maps(images, stages=("layer4",))


@NEEDS_TF
def test_the_stage_names_are_the_torch_modules_and_the_keras_marks():
    """Every catalog stage is a module of the torch model and a marked Keras tensor."""
    for name in FAST:
        backends, _ = _pair(name)
        modules = dict(backends["torch"].model.named_modules())
        for stage in model_stages(name):
            assert stage in modules
            assert backends["tf"].model.get_layer(f"{stage}.out") is not None


@NEEDS_TF
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


# --- python -m benchmarks.explain and the report's image sections ---------------------------
@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    """A report folder with one ok torch run of proposed_cnn whose weights were saved."""
    from backends.weights import WeightsMeta, save_weights
    from benchmarks.record.layout import test_split_file_name
    from tests.report_fixtures import make_record, write_results

    record = make_record("torch", "proposed_cnn", seed=0)
    names = record["data"]["class_names"]
    labels = np.asarray(record["test_labels"])
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (len(labels), 16, 16, 1), dtype=np.uint8)
    record["data"].update(split="holdout-s0", image_shape=[16, 16, 1])
    record["artifacts"] = {"weights_file": "torch-run.npz", "weights_bytes": 1}
    folder = write_results(tmp_path_factory.mktemp("explain"), [record])
    (folder / "weights").mkdir()
    backend = create_backend("torch")
    backend.build("proposed_cnn", (16, 16, 1), len(names), dropout=0.0)
    weights = calibrated_weights(backend, (16, 16, 1), seed=4)
    probabilities = np.full((len(labels), len(names)), 0.1, np.float32)
    probabilities[np.arange(len(labels)), record["test_predictions"]] = 0.7
    meta = WeightsMeta(model="proposed_cnn", input_shape=(16, 16, 1), num_classes=len(names),
                       class_names=tuple(names), backend="torch")
    save_weights(folder / "weights" / "torch-run.npz", weights, meta, probabilities)
    np.savez_compressed(folder / "weights" / test_split_file_name("holdout-s0"),
                        x_test=images, y_test=labels, class_names=np.asarray(names))
    return folder


@NEEDS_TF
def test_explain_writes_both_frameworks_grad_cam_and_the_report_embeds_it(saved_folder):
    import json

    from benchmarks import explain

    assert explain.main([str(saved_folder), "--per-class", "2"]) == 0
    summary = json.loads((saved_folder / "explain" / "explain.json").read_text())
    (entry,) = summary["runs"]
    assert entry["frameworks"] == ["tf", "torch"] and entry["trained_by"] == "torch"
    assert entry["gradcam_max_relative_difference"] <= GRAD_CAM_TOLERANCE
    assert entry["feature_max_relative_difference"] <= FEATURE_TOLERANCE
    # Two images of each of the 4 classes, the same draw every time.
    labels = np.load(saved_folder / "weights" / "test-holdout-s0.npz")["y_test"]
    assert sorted(labels[entry["samples"]].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert entry["samples"] == explain.sample_per_class(labels, 2, 0).tolist()
    page = (saved_folder / "report.html").read_text()
    for anchor in ("gradcam-", "features-", "mistakes-"):
        assert f'id="{anchor}torch-proposed_cnn-synthetic-seed0"' in page
    assert "Accuracy per class" in page and "<script" not in page
    markdown = (saved_folder / "report.md").read_text()
    assert "| accuracy for class |" in markdown


def test_the_gallery_shows_the_most_confident_mistakes_first():
    from benchmarks.report.gallery import confident_mistakes

    labels = np.array([0, 1, 1, 0])
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.95, 0.05], [0.2, 0.8]])
    assert confident_mistakes(labels, probabilities, 5).tolist() == [2, 3, 1]


@NEEDS_TF
@pytest.mark.parametrize("damage, expected", [
    ("no weights", "no run saved its weights"),
    ("truncated", "truncated or damaged"),
    ("another model", "weights for model 'proposed_cnn', expected 'sanet'"),
    # Checked before anything is computed: the folder holds torch runs only.
    ("reference", "--reference-backend 'tf' is not among the backends compared (torch)"),
])
def test_explain_bad_input_is_one_line_and_exit_2(saved_folder, tmp_path, capsys, damage,
                                                  expected):
    import shutil

    from benchmarks import explain
    from benchmarks.record.store import append_record, read_records

    folder = tmp_path / "run"
    shutil.copytree(saved_folder, folder)
    weights = folder / "weights" / "torch-run.npz"
    if damage == "no weights":
        (record,) = read_records(folder)
        record["artifacts"] = {"weights_file": None, "weights_bytes": None}
        (folder / "results.jsonl").unlink()
        append_record(folder, record)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "another model":
        (record,) = read_records(folder)
        record["model"] = "sanet"
        (folder / "results.jsonl").unlink()
        append_record(folder, record)
    chosen = ["--reference-backend", "tf"] if damage == "reference" else []
    shutil.rmtree(folder / "explain", ignore_errors=True)
    assert explain.main([str(folder), *chosen]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and expected in error, error
    assert not (folder / "explain").exists()  # nothing written
    if damage == "truncated":
        assert str(weights) in error
