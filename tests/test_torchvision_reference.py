"""The zoo against torchvision itself: torchvision's resnet18, resnet50 and vgg16 with
random weights, loaded through `--pretrained`'s loader into both frameworks, give
torchvision's own logits (issue 18, item 4; docs/weights.md, "The torchvision cross-check").

torchvision has no CPU build beside the suite's torch 2.13.0, so this module runs in an
environment of its own, `make torchvision-check` (torch 2.14.1, torchvision 0.29.1);
elsewhere it is skipped. Each model is compared at the suite's default 48×48 and at
ImageNet's 224×224, with 1000 classes so that every layer comes from the checkpoint:

* torchvision sees the gray images replicated to three channels, the zoo the gray
  images with the stem's kernel summed over its input channels: the same computation;
* at 48×48 torchvision VGG-16's AdaptiveAvgPool2d((7, 7)) turns the 1×1 map into 7×7
  copies, which the loader folds into fc1; at 224×224 the map is already 7×7 and fc1 is
  loaded as stored. The ResNets' global average pool is the zoo's own.

BatchNorm's statistics, scales and shifts are drawn at random too (torchvision's
`weights=None` leaves them at 0, 1, 1, 0), so that evaluation-mode BatchNorm is exercised.
"""

import numpy as np
import pytest

torchvision = pytest.importorskip(
    "torchvision", reason="torchvision is not installed; `make torchvision-check` runs this "
                          "module in an environment that has it")
torch = pytest.importorskip("torch")
pytest.importorskip("tensorflow")

from backends import create_backend  # noqa: E402
from backends.init import shared_initial_weights  # noqa: E402
from backends.pretrained import map_checkpoint, read_checkpoint, staged_checkpoint  # noqa: E402

BATCH = 4
CLASSES = 1000  # torchvision's: every layer comes from the checkpoint
# Relative to the largest logit: float32 rounding through 16-50 layers in three
# implementations (torchvision, the zoo's torch and Keras models).
RELATIVE_TOLERANCE = 1e-4


def _randomised(architecture: str) -> "torch.nn.Module":
    torch.manual_seed(0)
    model = getattr(torchvision.models, architecture)(weights=None)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.num_features
                module.weight.copy_(1 + 0.2 * torch.randn(shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(shape, generator=generator))
    return model.eval()


@pytest.mark.parametrize("side", [48, 224])
@pytest.mark.parametrize("architecture", ["resnet18", "resnet50", "vgg16"])
def test_the_zoo_gives_torchvisions_logits(architecture, side, tmp_path):
    reference = _randomised(architecture)
    path = tmp_path / f"{architecture}.pth"
    torch.save(reference.state_dict(), path)
    rng = np.random.default_rng(side)
    gray = rng.integers(0, 256, (BATCH, side, side, 1), dtype=np.uint8)
    scaled = ((gray.astype(np.float32) - 127.5) / 127.5).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(np.repeat(scaled, 3, axis=3)).permute(0, 3, 1, 2))
    expected = expected.numpy()
    del reference
    # The command's own path: read, staged for the workers, read back, fitted, loaded.
    checkpoint = staged_checkpoint(read_checkpoint(path).stage(tmp_path / "staged.npz"))
    worst = {}
    for name in ("tf", "torch"):
        backend = create_backend(name)
        backend.build(architecture, (side, side, 1), CLASSES)
        template = backend.get_weights()
        fitted = map_checkpoint(checkpoint, template, shared_initial_weights(template, 0))
        assert fitted.reinitialised == {}
        folded = {"classifier.fc1"} if architecture == "vgg16" and side < 224 else set()
        stem = "block1.conv1" if architecture == "vgg16" else "conv1"
        assert set(fitted.adapted) == {stem} | folded
        backend.set_weights(fitted.weights)
        worst[name] = float(np.abs(backend.logits(scaled) - expected).max())
        del backend
    scale = float(np.abs(expected).max())
    print(f"\n{architecture} at {side}×{side}: worst |Δ| vs torchvision: tf {worst['tf']:.3g}, "
          f"torch {worst['torch']:.3g} (largest |logit| {scale:.3g}; relative "
          f"{max(worst.values()) / scale:.3g})")
    assert scale > 0
    assert max(worst.values()) <= RELATIVE_TOLERANCE * scale
