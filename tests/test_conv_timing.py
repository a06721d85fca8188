"""The convolution study's parts that decide what it reports (benchmarks/conv_timing.py)."""

from __future__ import annotations

import pytest

from backends.catalog import model_cost
from benchmarks.conv_timing import NUM_CLASSES, ConvCase, main, xla_lowering
from tests.conftest import missing_framework

# Optimized-HLO lines as XLA 0.10's CPU compiler writes them for resnet50's layer4 3×3
# conv on a 2×2 map (operands swapped by algsimp), a canonical one, and a YNNPACK fusion.
_SWAPPED = ("  ROOT %conv.1 = f32[32,2,2,512]{3,2,1,0} convolution(%rev, %x), "
            "window={size=2x2 rhs_reversal=1x1}, dim_labels=01fb_o01i->f01b")
_CANONICAL = ("  %conv.2 = f32[512,3,3,512]{3,2,1,0} convolution(%a, %b), "
              "window={size=2x2 pad=1_1x1_1}, dim_labels=b01f_01io->b01f")
_YNN_BODY = ("%fused_computation.7 (p0: f32[32,6,6,64], p1: f32[1,1,64,256]) -> f32[32,6,6,256] {\n"
             "  ROOT %conv.3 = f32[32,6,6,256]{3,2,1,0} convolution(%p0, %p1), "
             "window={size=1x1}, dim_labels=b01f_01io->b01f\n}\n")
_YNN_CALL = ("  %ynn_fusion.7 = f32[32,6,6,256]{3,2,1,0} fusion(%x, %k), kind=kCustom, "
             "calls=%fused_computation.7, backend_config={\"fusion_config\":"
             "{\"kind\":\"__ynn_fusion\"}}")


def _module(*entry_lines: str, prefix: str = "") -> str:
    return prefix + "ENTRY %main (x: f32[1]) -> f32[1] {\n" + "\n".join(entry_lines) + "\n}\n"


@pytest.mark.parametrize(("module", "expected"), [
    (_module(_YNN_CALL, prefix=_YNN_BODY), "ynn"),
    (_module(_YNN_CALL, _CANONICAL, prefix=_YNN_BODY), "eigen"),
    (_module(_YNN_CALL, _CANONICAL, _SWAPPED, prefix=_YNN_BODY), "loop"),
    # A swapped form inside a YNNPACK fusion is YNNPACK's to run, not XLA's loop nest.
    (_module(_YNN_CALL, prefix=_YNN_BODY.replace("b01f_01io->b01f", "01fb_o01i->f01b")), "ynn"),
])
def test_xla_lowering_names_the_worst_path_outside_ynnpack(module: str, expected: str) -> None:
    assert xla_lowering(module) == expected


def test_a_case_knows_its_output_shape_and_work() -> None:
    # resnet50's layer3 strided 3×3 at 48×48: a 6×6 map to 3×3, 256 channels.
    case = ConvCase((32, 6, 6, 256), (3, 3, 256, 256), (2, 2), (1, 1), (1, 1), 1)
    assert case.output_nhwc == (32, 3, 3, 256)
    assert case.forward_gflop == pytest.approx(2 * 32 * 9 * 256 * 9 * 256 / 1e9)
    assert case.label == "3×3/2 256→256 @6×6"


@pytest.mark.skipif(missing_framework("jax") is not None, reason="needs the jax extra")
def test_the_jaxpr_finds_every_convolution_the_catalog_counts() -> None:
    from benchmarks.conv_timing import model_convolutions

    cases = model_convolutions("resnet50", 48, 2)
    # 1 stem, 16 bottlenecks × 3, 4 shortcuts.
    assert sum(case.count for case in cases) == 53
    # The stem alone reads the images: no backward to its input in training.
    assert [case.image_input for case in cases] == [True] + [False] * (len(cases) - 1)
    assert cases[0].trained_passes == ("forward", "backward_kernel")
    conv_flops = sum(case.count * case.forward_gflop * 1e9 for case in cases) / 2
    dense_flops = 2 * 2048 * NUM_CLASSES
    assert conv_flops == pytest.approx(
        model_cost("resnet50", (48, 48, 1), NUM_CLASSES).matmul_flops - dense_flops)


@pytest.mark.parametrize(("argv", "named"), [
    (["--model", "resnet5"], "--model"),
    (["--repeats", "0"], "--repeats"),
    (["--model", "vgg16", "--side", "16"], "--side 16"),
])
def test_bad_input_exits_2_naming_the_option(argv: list[str], named: str, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert named in capsys.readouterr().err.splitlines()[-1]
