"""bench/model_quality.py: the border-line score and the banding score react to what they name."""

from __future__ import annotations

import numpy as np

from bench import model_quality as mq


def _texture(seed: int = 0, size: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.normal(128, 30, (size // 8, size // 8, 3))
    img = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 8, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_border_score_is_zero_for_an_untouched_image_and_sees_a_left_line() -> None:
    imgs = [_texture(s) for s in range(3)]
    same = mq.border_scores(imgs, imgs)
    assert abs(same["worst"]) < 1e-9
    lined = []
    for img in imgs:
        out = img.astype(np.int16)
        out[:, 1] += 40  # a bright line one pixel in from the left edge
        lined.append(np.clip(out, 0, 255).astype(np.uint8))
    s = mq.border_scores(imgs, lined)
    assert s["left"]["mean"] > 2.5
    assert abs(s["right"]["mean"]) < 0.5 and abs(s["top"]["mean"]) < 0.5
    assert s["worst"] == s["left"]["mean"]


def test_border_score_ignores_a_global_change() -> None:
    imgs = [_texture(s) for s in range(3)]
    brighter = [np.clip(i.astype(np.int16) * 2 - 100, 0, 255).astype(np.uint8) for i in imgs]
    assert abs(mq.border_scores(imgs, brighter)["worst"]) < 1.0


def test_banding_score_low_on_smooth_gradients_high_on_bands() -> None:
    for top, bottom, direction in mq.GRADIENTS.values():
        img = mq.gradient_image(256, top, bottom, direction)
        assert mq.banding_score(img, direction) < 0.5  # 8-bit rounding only
        # a smooth tone curve is not banding
        curved = np.clip(255 * (img / 255.0) ** 1.8, 0, 255).astype(np.uint8)
        assert mq.banding_score(curved, direction) < 0.7
        # posterised to 8 levels: bands of ~30 px
        bands = (img // 32 * 32 + 16).astype(np.uint8)
        assert mq.banding_score(bands, direction) > 3.0
    # texture along the level lines averages out; bands across them do not
    rng = np.random.default_rng(0)
    img = mq.gradient_image(256, *mq.GRADIENTS["sky_vertical"][:2], "vertical").astype(np.float64)
    noisy = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    assert mq.banding_score(noisy, "vertical") < 1.5


def test_the_noisy_gradients_score_as_smooth_and_keep_their_bands_visible() -> None:
    """The second banding figure's inputs: the noise alone is not banding, and bands under it still are."""
    for top, bottom, direction in mq.GRADIENTS.values():
        img = mq.gradient_image(mq.GRADIENT_SIZE, top, bottom, direction)
        noisy = mq.with_noise(img, mq.GRADIENT_NOISE)
        assert np.array_equal(noisy, mq.with_noise(img, mq.GRADIENT_NOISE))  # seeded
        assert 0 < np.abs(noisy.astype(int) - img).mean() < 3
        assert mq.banding_score(noisy, direction) < 0.5
        bands = (img // 32 * 32 + 16).astype(np.uint8)
        assert mq.banding_score(mq.with_noise(bands, mq.GRADIENT_NOISE), direction) > 3.0
