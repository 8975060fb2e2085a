"""The independent second generator: the shape masks it returns, and pixels unchanged by asking for them."""

import hashlib

import numpy as np
import pytest

from video_swin.data import second_generator

# sha256 of `generate(8, seed=5, background=...)[0]` from the generator before masks were added (commit
# cee1304): the clips a seed gives must never change, or every figure measured on them would.
PIXELS_BEFORE_MASKS = {
    "solid": "f91d4e750344d1e87f21d74e28fa643847e89661f9daad4919e04756fcf079f9",
    "gradient": "f9717b0c12fb740f5ad64d888b9e60d8a55b2a551b2bfe1c4f6a1de3a9cdbede",
}


@pytest.mark.parametrize("background", second_generator.BACKGROUNDS)
def test_masks_leave_the_pixels_of_a_seed_as_they_were(background):
    x, y = second_generator.generate(8, seed=5, background=background)
    xm, ym, masks = second_generator.generate(8, seed=5, background=background, return_masks=True)
    assert hashlib.sha256(x.tobytes()).hexdigest() == PIXELS_BEFORE_MASKS[background]
    np.testing.assert_array_equal(xm, x)
    np.testing.assert_array_equal(ym, y)
    assert masks.shape == x.shape[:4] and masks.dtype == bool


def test_masks_cover_the_shape_and_only_the_shape():
    """On solid backgrounds, pixels in the mask are far from the background colour (the clip's median)
    and pixels outside it are background plus noise (amplitude <= 20 per channel)."""
    x, _, masks = second_generator.generate(16, seed=11, return_masks=True)
    for clip, mask in zip(x, masks):
        assert 0.002 < mask.mean() < 0.3 and mask.any(axis=(1, 2)).all()  # a shape in every frame
        distance = np.abs(clip.astype(np.int16) - np.median(clip.reshape(-1, 3), axis=0)).sum(axis=-1)
        assert np.median(distance[mask]) > 100
        assert np.median(distance[~mask]) < 35


def test_render_returns_the_mask_of_each_frame_of_a_moving_shape():
    """A shape moving right: the mask's centroid moves right every frame, and its area stays put."""
    clip, mask = second_generator.render(1, np.random.default_rng(3), return_mask=True)
    xs = np.array([np.nonzero(m)[1].mean() for m in mask])
    assert (np.diff(xs) > 0).all()
    areas = mask.sum(axis=(1, 2))
    assert areas.max() <= 1.25 * areas.min()
