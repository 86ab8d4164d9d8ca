"""LK at the speckle's scale: the shrink factor and smoothing upscaled cines."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from track_errors import rmse

from napari_dustrack.io.table import labels_of, to_array
from napari_dustrack.simulate import noisy_estimates, simulate
from napari_dustrack.tracking.smoothing import Grid, smooth
from napari_dustrack.tracking.smoothing.motion import pair_fields
from napari_dustrack.tracking.smoothing.scale import auto_shrink, shrink_frame, speckle_grain

UP = 4


@pytest.fixture(scope="module")
def cines():
    """A simulated cine, and the same cine upscaled 4 times (as a screen recording shows it)."""
    sim = simulate("cardiac", n_frames=30, shape=(128, 128), seed=2)
    truth, _ = to_array(sim.truth, labels_of(sim.truth), len(sim.frames))
    big = np.stack(
        [cv2.resize(f, None, fx=UP, fy=UP, interpolation=cv2.INTER_CUBIC) for f in sim.frames]
    )
    return sim.frames, big, truth


def test_grain_and_shrink_follow_the_upscaling(cines):
    small, big, _ = cines
    g_small, g_big = speckle_grain(small[0]), speckle_grain(big[0])
    assert 1.5 <= g_small <= 4.5
    assert 3 * g_small <= g_big <= 5 * g_small
    assert auto_shrink(small) == 1
    assert auto_shrink(big) in (UP - 1, UP)  # back to about the speckle scale of the original
    noise = np.random.default_rng(0).integers(0, 256, (600, 800)).astype(np.uint8)
    assert auto_shrink(noise[None]) == 1  # fine texture: as is


def test_shrunk_fields_are_in_full_size_pixels(cines):
    _, big, _ = cines
    shift = np.float32([[1, 0, 6.0], [0, 1, -3.0]])  # a known motion of the whole frame
    moved = cv2.warpAffine(big[0], shift, big[0].shape[::-1], borderMode=cv2.BORDER_REFLECT)
    ref = np.array([[256.0, 256.0], [300.0, 200.0]])
    grid = Grid(shrink=UP)
    fields = pair_fields(shrink_frame(big[0], UP), shrink_frame(moved, UP), ref, grid=grid)
    np.testing.assert_allclose(fields[:, 0], [[6.0, -3.0]] * 2, atol=0.5)


def test_fast_on_an_upscaled_cine_tracks_at_the_speckle_scale(cines):
    _, big, truth = cines
    truth = (truth + 0.5) * UP - 0.5
    raw = noisy_estimates(truth, seed=4, sigma=1.2 * UP, outlier_rate=0.0)
    auto = smooth(big, raw, 9, "fast")
    full = smooth(big, raw, 9, "fast", grid=Grid(shrink=1))
    assert rmse(auto, truth) < 0.6 * rmse(raw, truth)
    assert rmse(auto, truth) < rmse(full, truth)
