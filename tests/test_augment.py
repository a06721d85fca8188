"""Host-side augmentation and test-time views (docs/design.md §3, "Augmentation")."""

import dataclasses

import numpy as np
import pytest

from backends.augment import (
    AUGMENT_LEVELS,
    AugmentConfig,
    AugmentParams,
    apply_params,
    augment_batch,
    augment_config,
    batch_rng,
    draw_params,
    tta_views,
)


def _images(n=6, h=48, w=48, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def _params(n, h, w, **changes):
    """Identity choices for a batch, with `changes` (arrays or scalars) on top."""
    base = draw_params(n, h, w, AugmentConfig(), np.random.default_rng(0))
    return dataclasses.replace(base, **{k: np.broadcast_to(v, getattr(base, k).shape).copy()
                                        for k, v in changes.items()})


def _asymmetric_pattern(side=16):
    """A pattern with no rotational symmetry, so a wrong turn shows."""
    img = np.zeros((1, side, side, 1), np.uint8)
    img[0, 2:5, 3:12] = 200
    img[0, 9:14, 1:3] = 90
    img[0, 0, side - 1] = 255
    return img


@pytest.mark.parametrize("level", AUGMENT_LEVELS)
def test_the_same_seed_gives_the_same_bytes_and_another_step_others(level):
    images = _images()
    first = augment_batch(images, augment_config(level), batch_rng(7, 2, 5))
    again = augment_batch(images, augment_config(level), batch_rng(7, 2, 5))
    assert first.dtype == np.uint8 and first.shape == images.shape
    assert first.tobytes() == again.tobytes()
    assert first is not images and not np.shares_memory(first, images)
    other = augment_batch(images, augment_config(level), batch_rng(7, 2, 6))
    assert (level == "none") == np.array_equal(first, other)


def test_none_is_an_exact_copy_and_draws_nothing():
    images = _images(c=3)
    rng = batch_rng(0, 0, 0)
    state = rng.bit_generator.state
    out = augment_batch(images, augment_config("none"), rng)
    assert np.array_equal(out, images) and out.dtype == np.uint8
    assert rng.bit_generator.state == state


def test_the_augment_stream_is_not_the_shuffle_stream():
    assert not np.array_equal(batch_rng(3, 1, 0).random(8), np.random.default_rng([3, 1]).random(8))
    assert not np.array_equal(batch_rng(3, 1, 0).random(8), batch_rng(3, 1, 1).random(8))


def test_the_draws_do_not_depend_on_the_pixels():
    config = augment_config("standard")
    dark, bright = np.zeros((32, 48, 48, 1), np.uint8), _images(32)
    rng_a, rng_b = batch_rng(1, 0, 3), batch_rng(1, 0, 3)
    augment_batch(dark, config, rng_a)
    augment_batch(bright, config, rng_b)
    assert rng_a.bit_generator.state == rng_b.bit_generator.state
    drawn = draw_params(32, 48, 48, config, batch_rng(1, 0, 3))
    assert drawn.equals(draw_params(32, 48, 48, config, batch_rng(1, 0, 3)))
    assert drawn.flip.any() and drawn.erase.any()  # the batch exercises both


def test_turning_an_op_on_leaves_the_other_choices_alone():
    light = draw_params(16, 48, 48, augment_config("light"), batch_rng(0, 0, 0))
    standard = draw_params(16, 48, 48, augment_config("standard"), batch_rng(0, 0, 0))
    assert np.array_equal(light.flip, standard.flip)
    assert np.array_equal(light.crop_box, standard.crop_box)


@pytest.mark.parametrize("shape", [(5, 48, 48, 1), (3, 40, 56, 3), (2, 8, 8, 1)])
def test_shape_and_dtype_are_kept(shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    config = AugmentConfig(pad_crop_frac=0.1, resized_crop_prob=0.5, flip_prob=0.5,
                           rotate_deg=30, brightness=0.3, contrast=0.3, erase_prob=0.5)
    out = augment_batch(images, config, batch_rng(0, 0, 0))
    assert out.shape == shape and out.dtype == np.uint8


@pytest.mark.parametrize("c", [1, 3])
def test_flip_with_probability_one_mirrors_exactly(c):
    images = _images(h=20, w=31, c=c)
    out = augment_batch(images, AugmentConfig(flip_prob=1.0), batch_rng(0, 0, 0))
    assert np.array_equal(out, images[:, :, ::-1])


def test_no_rotation_and_no_shift_are_the_identity_exactly():
    images = _images(h=30, w=44, c=3)
    # The last image's flip sends the whole batch through the sampler; the others sample
    # at a rotation of 0 degrees and a shift of 0 pixels.
    flip = np.array([False] * 5 + [True])
    out = apply_params(images, _params(6, 30, 44, angle_deg=0.0, flip=flip))
    assert np.array_equal(out[:5], images[:5])
    assert np.array_equal(out[5], images[5, :, ::-1])
    config = AugmentConfig(pad_crop_frac=0.0, rotate_deg=0.0, contrast=0.0, erase_prob=0.0,
                           brightness=1e-9)
    assert np.array_equal(augment_batch(images, config, batch_rng(0, 0, 0)), images)


def test_pad_crop_shifts_by_whole_pixels_and_repeats_the_edge():
    images = _images(n=1, h=16, w=16)
    out = apply_params(images, _params(1, 16, 16, crop_box=np.array([-2.0, 3.0, 16, 16])))
    # The output's (y, x) is the source's (y - 2, x + 3), clamped into the image.
    rows = np.clip(np.arange(16) - 2, 0, 15)
    cols = np.clip(np.arange(16) + 3, 0, 15)
    assert np.array_equal(out[0], images[0][rows][:, cols])


def test_pad_crop_offsets_stay_within_the_pad():
    params = draw_params(500, 48, 48, AugmentConfig(pad_crop_frac=1 / 12), batch_rng(0, 0, 0))
    shifts = params.crop_box[:, :2]
    assert shifts.min() == -4 and shifts.max() == 4
    assert np.array_equal(shifts, np.rint(shifts))
    assert (params.crop_box[:, 2:] == 48).all()


@pytest.mark.parametrize("k", [1, -1, 2])
def test_rotation_by_90_degrees_is_rot90(k):
    img = _asymmetric_pattern()
    out = apply_params(img, _params(1, 16, 16, angle_deg=90.0 * k))
    assert np.array_equal(out, np.rot90(img, k, axes=(1, 2)))


def test_rotation_keeps_the_centre_and_repeats_the_edge():
    img = np.full((1, 9, 9, 1), 50, np.uint8)
    img[0, 4, 4] = 250
    out = apply_params(img, _params(1, 9, 9, angle_deg=45.0))
    assert out[0, 4, 4, 0] == 250
    assert (out[0, 0, 0] == 50).all()  # corners sample past the edge: no black fill


def test_brightness_shifts_the_mean_and_clips():
    images = np.full((2, 16, 16, 1), 100, np.uint8)
    images[1] = 250
    out = apply_params(images, _params(2, 16, 16, brightness=np.array([30.0, 30.0])))
    assert (out[0] == 130).all() and (out[1] == 255).all()
    drawn = draw_params(1000, 16, 16, AugmentConfig(brightness=0.2), batch_rng(0, 0, 0))
    assert abs(drawn.brightness).max() <= 0.2 * 255 and abs(drawn.brightness).max() > 45


def test_contrast_keeps_each_images_mean():
    images = np.random.default_rng(0).integers(80, 176, (4, 32, 32, 1), dtype=np.uint8)
    images[1] += 20
    factors = np.array([0.8, 1.2, 0.5, 1.0])
    out = apply_params(images, _params(4, 32, 32, contrast=factors))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), images.mean(axis=(1, 2, 3)), atol=0.5)
    spread = out.std(axis=(1, 2, 3)) / images.std(axis=(1, 2, 3))
    np.testing.assert_allclose(spread, factors, rtol=0.02)


def test_erasing_fills_one_rectangle_within_the_area_range():
    config = AugmentConfig(erase_prob=1.0, erase_scale_min=0.05, erase_scale_max=0.2)
    images = np.zeros((64, 48, 48, 1), np.uint8)
    params = draw_params(64, 48, 48, config, batch_rng(0, 0, 0))
    params = dataclasses.replace(params, erase_value=np.full(64, 255, np.uint8))
    out = apply_params(images, params)
    assert params.erase.all()
    for image, (top, left, h, w) in zip(out[..., 0], params.erase_box, strict=True):
        changed = np.argwhere(image == 255)
        assert changed.min(axis=0).tolist() == [top, left]
        assert changed.max(axis=0).tolist() == [top + h - 1, left + w - 1]
        assert len(changed) == h * w
        # h and w are rounded to whole pixels, which moves the fraction by up to about
        # (h + w) / 2 pixels.
        slack = (h + w) / 2 / 48**2
        assert 0.05 - slack <= h * w / 48**2 <= 0.2 + slack
        assert h < 48 and w < 48


def test_resized_crop_at_scale_one_and_ratio_one_is_the_identity():
    images = _images(h=32, w=32, c=3)
    config = AugmentConfig(resized_crop_prob=1.0, resized_crop_scale=1.0, resized_crop_ratio=1.0)
    assert np.array_equal(augment_batch(images, config, batch_rng(0, 0, 0)), images)


def test_resized_crop_draws_windows_in_range_and_resizes_them():
    config = AugmentConfig(resized_crop_prob=1.0, resized_crop_scale=0.3, resized_crop_ratio=1.5)
    params = draw_params(200, 48, 48, config, batch_rng(0, 0, 0))
    top, left, h, w = params.crop_box.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 48).all()
    assert (left + w <= 48).all()
    assert (h * w >= 0.3 * 48**2 - 48).all() and (h * w < 48**2).any()
    # The 2×2 top-left window of a 4×4 ramp, resized to 4×4: output pixel i samples the
    # source at (i + 0.5) / 2 - 0.5 (pixel centres), clamped into the image; the ramp is
    # linear, so bilinear sampling reproduces it exactly there.
    img = (np.arange(16, dtype=np.uint8).reshape(1, 4, 4, 1) * 10)
    out = apply_params(img, _params(1, 4, 4, crop_box=np.array([[0.0, 0.0, 2, 2]])))
    at = np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 3)
    expected = np.rint(10 * (4 * at[:, None] + at[None, :]))
    assert np.array_equal(out[0, :, :, 0], expected)


def test_the_first_images_of_a_batch_get_the_choices_of_a_smaller_batch():
    config = augment_config("standard")
    big = draw_params(8, 48, 48, config, batch_rng(0, 0, 0))
    small = draw_params(3, 48, 48, config, batch_rng(0, 0, 0))
    assert np.array_equal(big.crop_box[:3], small.crop_box)
    assert np.array_equal(big.erase_box[:3], small.erase_box)


def test_the_config_round_trips_through_asdict():
    config = augment_config("standard")
    assert AugmentConfig(**dataclasses.asdict(config)) == config
    assert augment_config("none").is_identity and not augment_config("light").is_identity


@pytest.mark.parametrize("field, value", [
    ("flip_prob", 1.5), ("flip_prob", -0.1), ("resized_crop_prob", 2), ("erase_prob", -1),
    ("pad_crop_frac", 0.5), ("pad_crop_frac", -0.1), ("resized_crop_scale", 0.0),
    ("resized_crop_scale", 1.1), ("resized_crop_ratio", 0.5), ("rotate_deg", 181),
    ("rotate_deg", float("nan")), ("brightness", 1.5), ("contrast", -0.2),
    ("erase_scale_min", 0.0), ("erase_ratio", 0.9), ("flip_prob", True), ("flip_prob", "0.5"),
])
def test_bad_settings_name_their_field(field, value):
    with pytest.raises(ValueError, match=f"{field} must be .* Received: {field}="):
        AugmentConfig(**{field: value})


def test_the_erase_range_must_be_ordered():
    with pytest.raises(ValueError, match="erase_scale_max"):
        AugmentConfig(erase_scale_min=0.3, erase_scale_max=0.2)


def test_bad_levels_modes_and_batches_are_refused():
    with pytest.raises(ValueError, match="level must be one of none, light, standard"):
        augment_config("heavy")
    with pytest.raises(ValueError, match="mode must be one of none, flip, tencrop"):
        tta_views(_images(), "fivecrop")
    with pytest.raises(ValueError, match="crop_frac"):
        tta_views(_images(), "tencrop", crop_frac=0.0)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(_images().astype(np.float32), augment_config("light"), batch_rng(0, 0, 0))
    with pytest.raises(ValueError, match="shape"):
        augment_batch(_images()[0], augment_config("light"), batch_rng(0, 0, 0))
    with pytest.raises(ValueError, match="another batch shape"):
        apply_params(_images(n=2), _params(3, 48, 48))
    with pytest.raises(ValueError, match="n must be"):
        draw_params(0, 48, 48, AugmentConfig(), batch_rng(0, 0, 0))


def test_tta_none_and_flip():
    images = _images(c=3)
    (view,) = tta_views(images, "none")
    assert view is images
    same, mirrored = tta_views(images, "flip")
    assert same is images and np.array_equal(mirrored, images[:, :, ::-1])


def test_tencrop_gives_ten_views_and_view_0_is_the_top_left_crop_resized():
    images = _images(n=3, h=48, w=40)
    views = tta_views(images, "tencrop", crop_frac=0.875)
    assert len(views) == 10
    assert all(v.shape == images.shape and v.dtype == np.uint8 for v in views)
    box = np.array([0.0, 0.0, 42, 35])  # round(0.875 · 48), round(0.875 · 40)
    assert np.array_equal(views[0], apply_params(images, _params(3, 48, 40, crop_box=box)))
    for k in range(5):
        assert np.array_equal(views[5 + k], views[k][:, :, ::-1])
    assert len({v.tobytes() for v in views}) == 10


def test_a_full_size_tencrop_is_five_copies_and_their_mirrors():
    images = _images(n=2, h=16, w=16)
    views = tta_views(images, "tencrop", crop_frac=1.0)
    assert all(np.array_equal(v, images) for v in views[:5])
    assert all(np.array_equal(v, images[:, :, ::-1]) for v in views[5:])


def test_params_are_a_plain_record():
    params = draw_params(2, 8, 8, augment_config("standard"), batch_rng(0, 0, 0))
    assert isinstance(params, AugmentParams) and params.size == (8, 8)
    assert params.crop_box.shape == (2, 4) and params.erase_value.dtype == np.uint8
