"""ONNX export of a built PyTorch model with torch.onnx (`backends.onnx_export.export_onnx`).

Mirrors backends/tf/export.py. The exporter is torch's default, `torch.export`-based one
(`dynamo=True`), with the batch axis dynamic; the exported module holds the pixel
scaling and the softmax, so the graph takes uint8 images as `predict_proba` does.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch

from backends.base import PIXEL_CENTER, PIXEL_SCALE
from backends.onnx_export import INPUT_NAME, OUTPUT_NAMES
from backends.torch.backend import TorchBackend


class _Deployed(torch.nn.Module):
    """uint8 NHWC images → (logits, probabilities), as `TorchBackend.predict_proba` computes."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (images.permute(0, 3, 1, 2).float() - PIXEL_CENTER) / PIXEL_SCALE
        logits = self.model(x).float()
        return logits, torch.softmax(logits, dim=1)


def export_onnx(backend: TorchBackend, path: Path, input_shape: tuple[int, int, int],
                opset: int) -> None:
    """Writes `backend`'s model, eval mode, as ONNX: uint8 NHWC in, logits and softmax out.

    Args:
        backend: a built TorchBackend.
        path: the `.onnx` file to write.
        input_shape: (height, width, channels) of the model's input.
        opset: the ONNX operator set version.
    """
    # A CPU copy in the default memory format: the graph is the same on any device, and
    # the backend's own model (perhaps on a GPU, channels-last) is left as it was.
    model = copy.deepcopy(backend.model).to("cpu", memory_format=torch.contiguous_format)
    deployed = _Deployed(model.float()).eval()
    # Two images: torch.export specialises a dimension it sees as 1.
    example = torch.zeros((2, *input_shape), dtype=torch.uint8)
    with torch.no_grad(), _legacy_tf32_switch_readable():
        torch.onnx.export(
            deployed, (example,), str(path), input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), opset_version=opset, dynamo=True,
            dynamic_shapes={"images": {0: torch.export.Dim.DYNAMIC}}, external_data=False,
            verbose=False)


@contextlib.contextmanager
def _legacy_tf32_switch_readable() -> Iterator[None]:
    """Lets torch.export read cuDNN's TF32 switch, unchanged in meaning, for the block.

    torch.export reads it through the legacy `torch.backends.cudnn.allow_tf32`, which
    (torch 2.13) raises "a mix of the legacy and new APIs" once the per-operator
    precisions were set, as the runtime sets them (`runtime._pin_ieee_float32`). Set
    through the legacy switch to what the convolutions already use, it reads; the
    per-operator precisions are put back afterwards.
    """
    cudnn = torch.backends.cudnn
    if not hasattr(getattr(cudnn, "conv", None), "fp32_precision"):  # torch < 2.9
        yield
        return
    saved = (cudnn.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
    cudnn.allow_tf32 = saved[1] == "tf32"
    try:
        yield
    finally:
        cudnn.fp32_precision, cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved

