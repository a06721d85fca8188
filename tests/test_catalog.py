"""The catalog, its options and the framework-neutral parameter and FLOP counts."""

from __future__ import annotations

import pytest

from backends.catalog import (
    CARD_MODELS,
    CATALOG,
    MODEL_NAMES,
    check_model_args,
    describe_models,
    model_cost,
    model_options,
)


def test_card_models_are_the_design_cards() -> None:
    assert sorted(CARD_MODELS) == ["proposed_cnn", "resnet50", "sanet", "vgg16"]


def test_describe_models_reports_reference_counts() -> None:
    rows = describe_models()
    assert [r["name"] for r in rows] == list(MODEL_NAMES)
    for row in rows:
        info = CATALOG[row["name"]]
        assert row["card"] == info.card and row["summary"] == info.summary
        assert row["params"] == info.reference_params
        assert row["flops"] == model_cost(row["name"], (48, 48, 1), 7).flops


def test_describe_models_follows_the_input_shape() -> None:
    small = {r["name"]: r for r in describe_models()}
    large = {r["name"]: r for r in describe_models((96, 96, 3), 10)}
    for name in MODEL_NAMES:
        assert large[name]["flops"] > 3 * small[name]["flops"], name
    # Global pooling makes the resnets' size independent of the input's height and width.
    assert large["resnet50"]["params"] - small["resnet50"]["params"] == 64 * 49 * 2 + 3 * 2048 + 3


def test_proposed_cnn_flops_by_hand() -> None:
    # 2 per multiply-add of each 3×3 conv at its map size (48, 24, 12, 6), plus the head.
    convs = [
        (48, 1, 32), (48, 32, 32), (24, 32, 64), (24, 64, 64), (12, 64, 128), (12, 128, 128),
        (6, 128, 256),
    ]
    expected = sum(2 * s * s * 9 * cin * cout for s, cin, cout in convs) + 2 * 256 * 7
    assert model_cost("proposed_cnn", (48, 48, 1), 7).matmul_flops == expected


@pytest.mark.parametrize(
    ("name", "dropout", "expected"),
    [
        ("vgg16", None, {"dropout": 0.5}),
        ("sanet", 0.0, {"dropout": 0.0}),
        ("alexnet", 0.25, {"dropout": 0.25}),
        ("resnet50", None, {}),
        ("resnet18", 0.0, {}),
    ],
)
def test_model_options_resolve_dropout(name, dropout, expected) -> None:
    assert model_options(name, dropout=dropout) == expected


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("vgg16", {"dropout": 1.0}, r"dropout must be in \[0, 1\)\. Received: dropout=1\.0"),
        ("sanet", {"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ("resnet50", {"dropout": 0.3}, "resnet50 has no dropout layers"),
        ("densenet", {}, "unknown model 'densenet'"),
    ],
)
def test_model_options_reject_invalid_overrides(name, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        model_options(name, **overrides)


def test_model_options_reject_unknown_options() -> None:
    with pytest.raises(TypeError, match="width"):
        model_options("vgg16", width=2)


def test_model_args_are_validated() -> None:
    with pytest.raises(ValueError, match="num_classes must be ≥ 2. Received: num_classes=1"):
        check_model_args((48, 48, 1), 1)
    with pytest.raises(ValueError, match="input_shape must be"):
        check_model_args((48, 48), 7)


@pytest.mark.parametrize(("name", "side"), [("vgg16", 16), ("alexnet", 8), ("proposed_cnn", 4)])
def test_too_small_inputs_are_rejected(name: str, side: int) -> None:
    with pytest.raises(ValueError, match=f"input_shape is too small for {name}"):
        model_cost(name, (side, side, 1), 7)
