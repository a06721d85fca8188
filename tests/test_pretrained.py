"""--pretrained: checkpoints on disk into both frameworks alike (backends/pretrained.py).

The torchvision-layout checkpoints here are written without torchvision: the zoo's torch
ResNets carry torchvision's module names, so their state_dict (BatchNorm's
num_batches_tracked included), built for 3-channel input and 1000 classes and filled
with random values, is byte for byte the layout of torchvision's files; the key sets are
also checked against torchvision's, written out by hand. tests/test_torchvision_reference.py
checks the same loader against torchvision itself, where it is installed.
"""

import argparse
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from backends import create_backend  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402
from backends.pretrained import (  # noqa: E402
    TORCHVISION,
    fold_adaptive_pool,
    map_checkpoint,
    read_checkpoint,
    staged_checkpoint,
    torchvision_keys,
)
from backends.torch.models import create_model  # noqa: E402
from backends.train_config import TrainConfig  # noqa: E402
from backends.weights import WeightsMeta, save_weights  # noqa: E402
from benchmarks import run  # noqa: E402
from benchmarks.record.store import read_records  # noqa: E402
from benchmarks.report.data import analyse, pretrained_rows  # noqa: E402
from benchmarks.report.html import render_html  # noqa: E402
from benchmarks.report.markdown import render_markdown  # noqa: E402
from benchmarks.reproduce.fixtures import torchvision_layout  # noqa: E402
from benchmarks.runner.config import RunSpec, record_header  # noqa: E402
from benchmarks.runner.worker import load_pretrained  # noqa: E402

SIDE, CLASSES = 32, 7
# torchvision's VGG-16 (configuration D): every conv of `features` and every Linear of
# `classifier`, by index, as torchvision.models.vgg16().state_dict() names them.
VGG16_TORCHVISION_KEYS = {f"{part}.{i}.{p}" for part, indices in (
    ("features", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)), ("classifier", (0, 3, 6)))
    for i in indices for p in ("weight", "bias")}


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoints") / "resnet18-random.pth"
    torch.save(torchvision_layout("resnet18"), path)
    return path


def _images(count: int = 4, channels: int = 1) -> np.ndarray:
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (count, SIDE, SIDE, 1), dtype=np.uint8)
    return np.repeat(gray, channels, axis=3)


def _scaled(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) - 127.5) / 127.5).astype(np.float32)


def _loaded(backend_name: str, checkpoint, classes: int, model: str = "resnet18"):
    backend = create_backend(backend_name)
    backend.build(model, (SIDE, SIDE, 1), classes)
    template = backend.get_weights()
    initial = shared_initial_weights(template, seed=3)
    fitted = map_checkpoint(checkpoint, template, initial)
    backend.set_weights(fitted.weights)
    return backend, fitted, initial


def test_the_key_layouts_are_torchvisions():
    assert set(torchvision_keys("vgg16")) == VGG16_TORCHVISION_KEYS
    assert torchvision_keys("vgg16")["features.28.weight"] == "block5.conv3.weight"
    assert torchvision_keys("vgg16")["classifier.6.bias"] == "classifier.fc3.bias"
    for architecture, count in (("resnet18", 122), ("resnet50", 320)):
        with torch.device("meta"):  # names and shapes only: no memory, no drawing
            state = create_model(architecture, (SIDE, SIDE, 3), 1000).state_dict()
        # torchvision's resnet18 has 122 entries, resnet50 320, with num_batches_tracked.
        assert len(state) == count
        stored = {k for k in state if not k.endswith("num_batches_tracked")}
        assert set(torchvision_keys(architecture)) == stored
    assert "layer1.0.downsample.0.weight" in torchvision_keys("resnet50")
    assert "layer1.0.downsample.0.weight" not in torchvision_keys("resnet18")


def test_a_torchvision_resnet18_starts_both_frameworks_alike(resnet18_file):
    checkpoint = read_checkpoint(resnet18_file)
    assert (checkpoint.source, checkpoint.architecture) == (TORCHVISION, "resnet18")
    assert checkpoint.sha256 == hashlib.sha256(resnet18_file.read_bytes()).hexdigest()
    logits = {}
    for name in ("tf", "torch"):
        backend, fitted, initial = _loaded(name, checkpoint, CLASSES)
        logits[name] = backend.logits(_scaled(_images()))
        weights = backend.get_weights()
        layers = list(dict.fromkeys(k.rpartition(".")[0] for k in weights))
        assert fitted.loaded == [layer for layer in layers if layer not in ("conv1", "fc")]
        assert list(fitted.adapted) == ["conv1"] and "summed" in fitted.adapted["conv1"]
        assert fitted.reinitialised == {
            "fc": "weight 1000×512 stored, 7×512 here; bias 1000 stored, 7 here"}
        np.testing.assert_array_equal(weights["fc.weight"], initial["fc.weight"])
        np.testing.assert_array_equal(weights["layer3.1.bn2.running_var"],
                                      checkpoint.arrays["layer3.1.bn2.running_var"])
    difference = np.abs(logits["tf"] - logits["torch"]).max()
    assert difference <= 1e-4 and np.abs(logits["torch"]).max() > 0.1


def test_the_summed_stem_computes_what_the_3_channel_stem_does_on_gray(resnet18_file):
    state = torch.load(resnet18_file, weights_only=True)
    reference = create_model("resnet18", (SIDE, SIDE, 3), 1000).eval()
    reference.load_state_dict(state)
    with torch.no_grad():
        expected = reference(torch.from_numpy(_scaled(_images(channels=3))).permute(0, 3, 1, 2))
    backend, fitted, _ = _loaded("torch", read_checkpoint(resnet18_file), 1000)
    assert fitted.reinitialised == {}  # 1000 classes: every layer from the checkpoint
    np.testing.assert_allclose(backend.get_weights()["conv1.weight"],
                               state["conv1.weight"].numpy().sum(axis=1, keepdims=True),
                               rtol=1e-6)
    np.testing.assert_allclose(backend.logits(_scaled(_images())), expected.numpy(), atol=1e-4)


@pytest.mark.parametrize("side", [1, 2, 3, 5, 7, 9])
def test_the_folded_vgg_pool_is_torchvisions_pool_then_fc1(side):
    generator = torch.Generator().manual_seed(side)
    x = torch.randn(2, 3, side, side, generator=generator)
    kernel = torch.randn(5, 3 * 49, generator=generator)
    expected = torch.nn.functional.adaptive_avg_pool2d(x, (7, 7)).flatten(1) @ kernel.T
    folded = torch.from_numpy(fold_adaptive_pool(kernel.numpy(), 3, side, side))
    torch.testing.assert_close(x.flatten(1) @ folded.T, expected, rtol=1e-5, atol=1e-5)


def test_a_fer_bench_weights_file_loads_whole_or_with_a_new_head(tmp_path):
    source = create_backend("torch")
    source.build("proposed_cnn", (SIDE, SIDE, 1), CLASSES)
    path = tmp_path / "run.npz"
    meta = WeightsMeta("proposed_cnn", (SIDE, SIDE, 1), CLASSES,
                       tuple(f"c{i}" for i in range(CLASSES)), "torch")
    save_weights(path, source.get_weights(), meta)
    checkpoint = read_checkpoint(path)
    assert (checkpoint.source, checkpoint.architecture) == ("fer-bench", "proposed_cnn")
    _, whole, _ = _loaded("tf", checkpoint, CLASSES, "proposed_cnn")
    assert whole.reinitialised == {} and whole.adapted == {}
    _, headless, _ = _loaded("tf", checkpoint, 5, "proposed_cnn")
    assert list(headless.reinitialised) == ["classifier"]
    # Staged for the workers and read back unchanged.
    staged = staged_checkpoint(checkpoint.stage(tmp_path / "staged.npz"))
    assert staged.describe() == checkpoint.describe()
    assert staged.stored_shape == (SIDE, SIDE, 1)
    assert all(np.array_equal(staged.arrays[k], v) for k, v in checkpoint.arrays.items())


# --- bad input: one line naming the file and what was expected, exit 2, nothing written --
def _write_bad_file(kind: str, folder, resnet18_file):
    path = folder / {"text": "notes.pt", "not-zip": "notes.txt", "refused": "training-state.pt",
                     "unknown": "resnet34ish.pth", "missing": "absent.pth",
                     "foreign-npz": "proposed_cnn.npz", "another": "resnet18.pth",
                     "int8": "quantised.pth", "complex64": "complex.pth", "nan": "nan.pth",
                     "inf-npz": "inf.npz"}[kind]
    if kind in ("text", "not-zip"):
        path.write_text("these are not weights\n")
    elif kind == "refused":
        torch.save({"conv1.weight": torch.zeros(1), "args": argparse.Namespace(lr=1.0)}, path)
    elif kind == "unknown":
        state = torch.load(resnet18_file, weights_only=True)
        torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, path)
    elif kind == "foreign-npz":
        meta = WeightsMeta("proposed_cnn", (SIDE, SIDE, 1), CLASSES,
                           tuple(f"c{i}" for i in range(CLASSES)), "torch")
        save_weights(path, {"block1.conv1.weight": np.zeros((32, 1, 3, 3), np.float32)}, meta)
    elif kind == "another":
        path = resnet18_file
    elif kind in ("int8", "complex64", "nan"):
        # Cast to float32 without a word, or trained on for a whole run, before.
        state = torch.load(resnet18_file, weights_only=True)
        if kind == "nan":
            state["fc.weight"][0, 0] = float("nan")
        else:
            state["conv1.weight"] = state["conv1.weight"].to(getattr(torch, kind))
        torch.save(state, path)
    elif kind == "inf-npz":
        meta = WeightsMeta("proposed_cnn", (SIDE, SIDE, 1), CLASSES,
                           tuple(f"c{i}" for i in range(CLASSES)), "torch")
        save_weights(path, {"block1.conv1.weight": np.full((32, 1, 3, 3), np.inf, np.float32)},
                     meta)
    return path


@pytest.mark.parametrize("kind, models, message", [
    ("missing", "resnet18", "no such file; expected a torchvision resnet18"),
    ("text", "resnet18", "not a readable PyTorch checkpoint"),
    ("not-zip", "resnet18", "not a checkpoint (neither a torch.save zip nor an .npz)"),
    ("refused", "resnet18", "refused by torch.load(weights_only=True)"),
    ("unknown", "resnet18", "none of torchvision's resnet18, resnet50, vgg16 (closest resnet18"),
    ("another", "resnet50", "a torchvision resnet18 checkpoint, but the run builds resnet50"),
    ("foreign-npz", "resnet18", "a fer-bench proposed_cnn checkpoint, but the run builds"),
    ("int8", "resnet18", "tensors conv1.weight (int8) are not floating point"),
    ("complex64", "resnet18", "tensors conv1.weight (complex64) are not floating point"),
    ("nan", "resnet18", "fc.weight hold NaN or Inf: no weights to start from"),
    ("inf-npz", "proposed_cnn", "block1.conv1.weight hold NaN or Inf"),
])
def test_a_bad_checkpoint_is_one_line_and_exit_2(kind, models, message, resnet18_file,
                                                 tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    path = _write_bad_file(kind, folder, resnet18_file)
    out = tmp_path / "out"
    argv = ["--models", models, "--pretrained", str(path), "--out", str(out)]
    assert run.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and "\n" not in err
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("argv, message", [
    (["--freeze-epochs", "1"], "freeze_epochs 1 (of resnet18) needs --pretrained"),
    (["--init", "native", "--pretrained", "x.pth"], "drop --init native"),
    (["--freeze-epochs", "9", "--epochs", "2"], "freeze_epochs must be an integer in [0, "),
])
def test_freezing_or_native_init_without_their_counterpart_is_refused(argv, message, tmp_path,
                                                                      capsys):
    assert run.main(["--models", "resnet18", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_the_worker_loads_the_staged_checkpoint_and_the_spec_names_it(resnet18_file,
                                                                      tmp_path):
    checkpoint = read_checkpoint(resnet18_file)
    staged = checkpoint.stage(tmp_path / "pretrained.npz")
    spec = RunSpec(backend="torch", model="resnet18", dataset="synthetic", prepared_data="",
                   train=TrainConfig(epochs=2, freeze_epochs=1),
                   pretrained=checkpoint.describe(), pretrained_file=str(staged))
    assert RunSpec.from_json(spec.to_json()) == spec
    assert record_header(spec)["pretrained"] == checkpoint.describe()
    # The digest takes the file's content, not where it lies or where it was staged.
    moved = replace(spec, pretrained={**spec.pretrained, "path": "elsewhere.pth"},
                    pretrained_file="other.npz")
    assert moved.spec_digest == spec.spec_digest
    assert replace(spec, pretrained=None, pretrained_file=None,
                   train=TrainConfig(epochs=2)).spec_digest != spec.spec_digest
    backend = create_backend("torch")
    backend.build("resnet18", (SIDE, SIDE, 1), CLASSES)
    backend.set_weights(shared_initial_weights(backend.get_weights(), spec.train.seed))
    initial_fc = backend.get_weights()["fc.weight"]
    fitted = load_pretrained(spec, backend)
    assert (list(fitted.adapted), list(fitted.reinitialised)) == (["conv1"], ["fc"])
    weights = backend.get_weights()
    np.testing.assert_array_equal(weights["fc.weight"], initial_fc)
    np.testing.assert_array_equal(weights["layer2.0.downsample.0.weight"],
                                  checkpoint.arrays["layer2.0.downsample.0.weight"])


@pytest.mark.slow
def test_a_pretrained_fine_tune_is_recorded_and_reported(resnet18_file, tmp_path):
    """One torch run through benchmarks.run: checkpoint, layers, freeze, report.

    The ci preset's tiny set (32×32, 6 people, 1 thread, short latency probe), no weights;
    about 15 s on a quiet 2-core machine, so a slow test.
    """
    out = tmp_path / "reports"
    argv = ["--preset", "ci", "--backend", "torch", "--models", "resnet18", "--pretrained",
            str(resnet18_file), "--epochs", "2", "--freeze-epochs", "1", "--no-report",
            "--out", str(out)]
    assert run.main(argv) == 0
    (folder,) = out.iterdir()
    (record,) = read_records(folder / "results.jsonl")
    found = record["pretrained"]
    assert found["sha256"] == hashlib.sha256(resnet18_file.read_bytes()).hexdigest()
    assert (found["path"], found["format"], found["architecture"]) == (
        str(resnet18_file), "torchvision", "resnet18")
    assert found["bytes"] == resnet18_file.stat().st_size
    assert list(found["adapted_layers"]) == ["conv1"] and list(found["reinitialised_layers"]) \
        == ["fc"] and "layer4.1.bn2" in found["loaded_layers"]
    assert record["config"]["freeze_epochs"] == 1 and len(record["history"]) == 2
    json.dumps(record)  # JSON through and through
    # A failed run of the same file says which file, not yet which layers.
    failed = {**record, "run_id": "tf-resnet18-synthetic-seed0", "backend": "tf",
              "status": "failed", "error": "boom", "stderr_tail": "",
              "pretrained": {k: v for k, v in found.items() if not k.endswith("_layers")}}
    data = analyse([record, failed], folder / "results.jsonl")
    headers, rows = pretrained_rows(data)
    assert rows[0][1:4] == [f"resnet18-random.pth (torchvision resnet18, "
                            f"{found['bytes'] / 1e6:,.1f} MB)", found["sha256"][:12], "40 layers"]
    assert rows[0][4] == "conv1: 3 input channels summed to 1 (grayscale)"
    assert rows[0][5] == "fc (weight 1000×512 stored, 7×512 here; bias 1000 stored, 7 here)"
    assert rows[1][1:] == rows[0][1:3] + ["—", "—", "—"]
    assert "## Starting weights (--pretrained)" in render_markdown(data)
    assert "Starting weights (--pretrained)" in render_html(data, [])
