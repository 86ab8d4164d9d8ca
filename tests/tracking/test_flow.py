"""LK propagation and RSTC interpolation (tracking/flow.py) on textures with known motion."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pandas as pd
import pytest

from napari_dustrack.errors import Cancelled, DustrackError
from napari_dustrack.io.table import make_table
from napari_dustrack.tracking import _flow_engine as engine
from napari_dustrack.tracking import flow
from napari_dustrack.tracking.flow import (
    FlowError,
    fill_between,
    keys_from_table,
    propagate,
    step_points,
)
from napari_dustrack.tracking.lk import LKParams, rstc_weight

P = LKParams()
CV_KW = dict(winSize=(P.win_size, P.win_size), maxLevel=P.max_level, criteria=P.criteria)


# ------------------------------------------------------------------------------------------
# a smooth random texture moved by a known sub-pixel rigid motion (cv2.warpAffine)


def _texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(tex, None, 10, 245, cv2.NORM_MINMAX)


def _movie(n=40, size=96, seed=0, drift=(0.0, 0.0)):
    """Frames (n, size, size) uint8 and the 2x3 matrices mapping texture -> frame."""
    tex = _texture(2 * size, seed)
    frames, mats = [], []
    for t in range(n):
        phase = 2 * np.pi * t / n
        m = cv2.getRotationMatrix2D((size, size), 3.0 * np.sin(phase), 1.0)
        m[:, 2] += (
            4.0 * np.sin(1.3 * phase) - size / 2 + drift[0] * t,
            3.0 * np.cos(phase) - size / 2 + drift[1] * t,
        )
        img = cv2.warpAffine(
            tex, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
        )
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
        mats.append(m)
    return np.stack(frames), np.stack(mats)


def _truth(mats, pts_in_texture):
    """(n, L, 2) positions of texture points in each frame."""
    homog = np.c_[pts_in_texture, np.ones(len(pts_in_texture))]
    return np.einsum("tij,lj->tli", mats, homog)


@pytest.fixture(params=[False, True], ids=["one-thread", "sweep-thread"])
def threads(request, monkeypatch):
    """Run a test with the backward sweeps inline and in their worker thread."""
    monkeypatch.setattr(engine, "SWEEP_THREAD", request.param)
    return request.param


@pytest.fixture(scope="module")
def scene():
    frames, mats = _movie()
    rng = np.random.default_rng(1)
    truth = _truth(mats, rng.uniform(78, 114, (4, 2)))  # well inside the 96 px frames
    return frames, truth


def _keys(truth, every=10, noise=0.0, seed=2):
    keys = np.full_like(truth, np.nan)
    idx = list(range(0, len(truth), every)) + [len(truth) - 1]
    keys[idx] = truth[idx] + np.random.default_rng(seed).normal(0, noise, truth[idx].shape)
    return keys


# ------------------------------------------------------------------------------------------
# reference: plain per-point, per-segment calcOpticalFlowPyrLK on raw frames


def _ref_chain(frames, start, stop, pt):
    """Track one point frame by frame with one cv2 call per pair; NaN once lost."""
    step = 1 if stop > start else -1
    out = {start: np.asarray(pt, float)}
    cur = np.asarray(pt, np.float32).reshape(1, 1, 2)
    h, w = frames[0].shape
    for t in range(start, stop, step):
        if cur is None:
            out[t + step] = np.full(2, np.nan)
            continue
        new, status, _ = cv2.calcOpticalFlowPyrLK(frames[t], frames[t + step], cur, None, **CV_KW)
        x, y = new.reshape(2)
        if status[0, 0] and 0 <= x <= w - 1 and 0 <= y <= h - 1:
            out[t + step], cur = new.reshape(2).astype(float), new
        else:
            out[t + step], cur = np.full(2, np.nan), None
    return out


def _ref_rstc(frames, keys):
    xy = np.full(keys.shape, np.nan)
    for lab in range(keys.shape[1]):
        kf = np.flatnonzero(np.isfinite(keys[:, lab, 0]))
        for s, e in zip(kf[:-1], kf[1:], strict=False):
            fwd = _ref_chain(frames, s, e, keys[s, lab])
            bwd = _ref_chain(frames, e, s, keys[e, lab])
            for t in range(s + 1, e):
                w = rstc_weight(t, s, e, 0.01)
                xy[t, lab] = w * fwd[t] + (1 - w) * bwd[t]
        xy[kf, lab] = keys[kf, lab]
    return xy


# ------------------------------------------------------------------------------------------
# equivalences


def test_batched_fill_equals_per_point_per_segment_calls(scene, threads):
    frames, truth = scene
    keys = _keys(truth, every=10, noise=0.5)
    keys[5:15, 2] = np.nan  # labels with different keyframes share the calls too
    keys[23, 2] = truth[23, 2]
    xy, conf = fill_between(frames, keys)
    np.testing.assert_array_equal(xy, _ref_rstc(frames, keys))


def test_forced_small_sweeps_give_the_same_result(scene, threads):
    frames, truth = scene
    keys = _keys(truth, every=7)
    keys[::7, 1] = np.nan  # label 1 keyframes out of step with the others
    keys[[3, 17, 31, 39], 1] = truth[[3, 17, 31, 39], 1]
    default = fill_between(frames, keys, extend=3, method="dustrack")
    tiny = engine.run(frames, keys, P, 3, 3, None, None, None, cache_bytes=1)
    np.testing.assert_array_equal(default[0], tiny[0])
    np.testing.assert_array_equal(default[1], tiny[1])


def test_propagate_equals_plain_calls_both_ways(scene):
    frames, truth = scene
    xy, conf = propagate(frames, 12, truth[12], 20)
    assert xy.shape == (21, 4, 2) and conf.shape == (21, 4)
    for lab in range(4):
        ref = _ref_chain(frames, 12, 32, truth[12, lab])
        np.testing.assert_array_equal(xy[:, lab], np.array([ref[t] for t in range(12, 33)]))
    back, _ = propagate(frames, 30, truth[30], -25)
    ref = _ref_chain(frames, 30, 5, truth[30, 0])
    np.testing.assert_array_equal(back[:, 0], np.array([ref[t] for t in range(30, 4, -1)]))
    assert np.array_equal(back[0], truth[30]) and np.all(conf[0] == 1)


def test_extension_equals_propagation_from_the_end_keyframes(scene):
    frames, truth = scene
    keys = np.full_like(truth, np.nan)
    keys[[10, 20]] = truth[[10, 20]]
    xy, conf = fill_between(frames, keys, extend=6, method="dustrack")
    after, c_after = propagate(frames, 20, truth[20], 6)
    before, c_before = propagate(frames, 10, truth[10], -6)
    np.testing.assert_array_equal(xy[20:27], after)
    np.testing.assert_array_equal(xy[4:11][::-1], before)
    np.testing.assert_array_equal(conf[20:27], c_after)
    assert np.isnan(xy[:4]).all() and np.isnan(xy[27:]).all()
    assert (conf[:4] == 0).all()


# ------------------------------------------------------------------------------------------
# RSTC properties and accuracy


def test_keyframes_returned_exactly_and_path_joins_them(scene):
    frames, truth = scene
    keys = _keys(truth, every=10, noise=0.7)
    xy, conf = fill_between(frames, keys)
    kf = np.isfinite(keys[..., 0])
    np.testing.assert_array_equal(xy[kf], keys[kf])
    assert np.all(conf[kf] == 1.0)
    # the blend weight itself is 1 at s and 0 at e, so the path is continuous at keyframes
    assert rstc_weight(10, 10, 20) == pytest.approx(1.0, abs=1e-12)
    assert rstc_weight(20, 10, 20) == pytest.approx(0.0, abs=1e-12)
    step_next_to_key = np.hypot(*(xy[11] - keys[10]).T)
    true_step = np.hypot(*(truth[11] - truth[10]).T)
    assert np.all(step_next_to_key < true_step + 1.5)


def test_accuracy_on_moving_texture(scene):
    frames, truth = scene
    keys = _keys(truth, every=10)
    xy, conf = fill_between(frames, keys)
    inner = ~np.isfinite(keys[..., 0])
    err = np.hypot(*(xy[inner] - truth[inner]).T)
    assert np.sqrt(np.mean(err**2)) < 0.15, err.max()
    assert err.max() < 0.5
    assert conf[inner].min() > 0.8  # tracks agree: high confidence
    # far better than joining the keyframes with straight lines
    lin = np.full_like(keys, np.nan)
    for i in range(4):
        kf = np.flatnonzero(~inner[:, i])
        for c in (0, 1):
            lin[:, i, c] = np.interp(np.arange(len(truth)), kf, keys[kf, i, c])
    lin_err = np.hypot(*(lin[inner] - truth[inner]).T)
    assert np.sqrt(np.mean(lin_err**2)) > 3 * np.sqrt(np.mean(err**2))


def test_confidence_drops_when_forward_and_backward_disagree(scene):
    frames, truth = scene
    keys = _keys(truth, every=20)
    good, c_good = fill_between(frames, keys, method="dustrack")
    wrong = keys.copy()
    wrong[20, 0] += (6.0, -5.0)  # a mis-clicked keyframe: the tracks meet in the middle badly
    bad, c_bad = fill_between(frames, wrong, method="dustrack")
    mid = slice(5, 16)
    assert c_bad[mid, 0].mean() < 0.5 * c_good[mid, 0].mean()
    np.testing.assert_array_equal(c_bad[mid, 1:], c_good[mid, 1:])  # other labels unaffected


# ------------------------------------------------------------------------------------------
# lost points


def test_point_leaving_the_image_becomes_nan_with_zero_confidence():
    frames, mats = _movie(n=25, drift=(-2.0, 0.0))  # the texture slides left 2 px/frame
    truth = _truth(mats, np.array([[70.0, 100.0], [110.0, 96.0]]))  # near the left edge, middle
    xy, conf = propagate(frames, 0, truth[0], 24)
    leaves = int(np.argmax(truth[:, 0, 0] < 0))
    assert leaves > 0
    assert np.isnan(xy[leaves:, 0]).all() and (conf[leaves:, 0] == 0).all()
    assert np.isfinite(xy[: leaves - 2, 0]).all()
    assert np.isfinite(xy[:, 1]).all() and conf[:, 1].min() > 0.5


def test_flat_region_loses_the_point_and_only_one_track_survives():
    frames = _movie(n=20)[0]
    frames = frames.copy()
    frames[:8, :66] = 128  # textureless top in the first frames: LK cannot lock on there
    keys = np.full((20, 2, 2), np.nan)
    keys[[2, 18], 0] = [[48.0, 25.0], [48.5, 24.0]]
    keys[[2, 18], 1] = [[48.0, 85.0], [48.5, 84.0]]
    xy, conf = fill_between(frames, keys, method="dustrack")
    fwd, _ = propagate(frames, 2, keys[2], 16)
    bwd, _ = propagate(frames, 18, keys[18], -16)
    assert np.isnan(fwd[1:, 0]).all()  # forward track of label 0 lost at once
    survived = np.isfinite(bwd[::-1][1:-1, 0]).all(axis=1)  # frames 3..17
    t = np.arange(3, 18)[survived]
    assert len(t) > 5
    np.testing.assert_array_equal(xy[t, 0], bwd[::-1][t - 2, 0])  # the survivor, unblended
    assert conf[t, 0].max() <= flow.LOST_ONE_FACTOR
    assert np.all((conf[~np.isfinite(xy[:, 0, 0]), 0]) == 0)
    assert conf[3:18, 1].min() > flow.LOST_ONE_FACTOR  # the other label is unaffected


# ------------------------------------------------------------------------------------------
# frames, progress, cancel, failures


class Recorder:
    """Frames that note every index read (and can fail at one)."""

    def __init__(self, frames, fail_at=None):
        self.frames, self.fail_at, self.reads = frames, fail_at, []
        self.path = "movie.mp4"

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        self.reads.append(i)
        if i == self.fail_at:
            raise OSError("corrupt packet")
        return self.frames[i]


def test_frames_decoded_once_in_order_and_progress_reaches_total(scene, threads):
    frames, truth = scene
    keys = _keys(truth, every=10)
    keys[:10] = np.nan  # span starts at 10
    rec, calls = Recorder(frames), []
    fill_between(rec, keys, extend=3, progress=lambda d, t: calls.append((d, t)))
    assert rec.reads == list(range(7, 40))
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1][0] == calls[-1][1] > 0


def test_cancel_returns_a_consistent_partial_result(scene, threads):
    frames, truth = scene
    keys = _keys(truth, every=10)
    full, full_conf = fill_between(frames, keys)
    stop = threading.Event()

    def progress(done, total):
        if done >= total // 2:
            stop.set()

    with pytest.raises(Cancelled) as info:
        fill_between(frames, keys, progress=progress, cancel=stop)
    part, part_conf = info.value.partial
    have = np.isfinite(part).all(axis=2)
    assert have[np.isfinite(keys[..., 0])].all()  # keyframes always there
    assert have.sum() < have.size and have[1:10].all()
    np.testing.assert_array_equal(part[have], full[have])
    assert (part_conf[~have] == 0).all()


def test_decode_failure_keeps_what_was_computed(scene, threads):
    frames, truth = scene
    keys = _keys(truth, every=10)
    full, _ = fill_between(frames, keys)
    with pytest.raises(FlowError) as info:
        fill_between(Recorder(frames, fail_at=25), keys)
    msg = str(info.value)
    assert msg.startswith("movie.mp4: frame 25 could not be decoded") and "corrupt packet" in msg
    assert "\n" not in msg
    part, conf = info.value.partial
    have = np.isfinite(part).all(axis=2)
    assert have[:21].all() and not have[21:30].any()  # segments 0-10, 10-20 finished
    np.testing.assert_array_equal(part[:21], full[:21])


def test_propagate_beyond_the_video_gives_nan_rows(scene):
    frames, truth = scene
    xy, conf = propagate(frames, 35, truth[35], 10)
    assert xy.shape == (11, 4, 2)
    assert np.isfinite(xy[:5]).all() and np.isnan(xy[5:]).all() and (conf[5:] == 0).all()
    nan_row = truth[35].copy()
    nan_row[1] = np.nan
    xy, conf = propagate(frames, 35, nan_row, -5)
    assert np.isnan(xy[:, 1]).all() and np.isfinite(xy[:, 0]).all()


# ------------------------------------------------------------------------------------------
# bad input


def test_bad_input_messages(scene):
    frames, truth = scene
    n = len(frames)
    keys = _keys(truth, every=10)
    longer = np.full((n + 5, 4, 2), np.nan)
    longer[:n] = keys
    longer[n + 2, 1] = (10, 10)
    with pytest.raises(DustrackError, match=r"frame 42 outside the video \(40 frames"):
        fill_between(frames, longer)
    outside = keys.copy()
    outside[20, 3] = (120.0, 5.0)
    with pytest.raises(DustrackError, match=r"outside the 96x96 image, first: label 'd' at frame"):
        fill_between(frames, outside, labels=list("abcd"))
    half = keys.copy()
    half[10, 0, 1] = np.nan
    with pytest.raises(DustrackError, match="NaN coordinate"):
        fill_between(frames, half)
    with pytest.raises(DustrackError, match="start frame 40 is outside"):
        propagate(frames, 40, truth[0], 3)
    with pytest.raises(DustrackError, match="shape"):
        fill_between(frames, keys[..., 0])


def test_single_keyframe_is_an_error_unless_extended_or_skipped(scene):
    frames, truth = scene
    keys = _keys(truth, every=10)
    keys[:, 2] = np.nan
    keys[17, 2] = truth[17, 2]
    with pytest.raises(DustrackError, match=r"single keyframe.*'c' \(frame 17\)"):
        fill_between(frames, keys, labels=list("abcd"))
    xy, _ = fill_between(frames, keys, single_keyframe="skip")
    assert np.flatnonzero(np.isfinite(xy[:, 2, 0])).tolist() == [17]
    xy, _ = fill_between(frames, keys, extend=4)
    assert np.flatnonzero(np.isfinite(xy[:, 2, 0])).tolist() == list(range(13, 22))


def test_keys_from_table_checks_frames_and_labels():
    table = make_table([0, 5, 9], ["a", "b", "a"], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    keys, labels = keys_from_table(table, 10)
    assert labels == ["a", "b"] and keys.shape == (10, 2, 2) and keys[9, 0, 0] == 3.0
    with pytest.raises(DustrackError, match=r"k.csv: keyframe\(s\) at frame 9 outside the video"):
        keys_from_table(table, 9, path="k.csv")
    with pytest.raises(DustrackError, match=r"unknown label\(s\) \['b'\]"):
        keys_from_table(table, 10, labels=["a", "c"])
    assert isinstance(table, pd.DataFrame)


def test_long_backward_propagation_runs_in_blocks_with_the_same_result(scene, monkeypatch):
    frames, truth = scene
    whole, whole_conf = propagate(frames, 39, truth[39], -39)
    monkeypatch.setattr(engine, "CACHE_BYTES", 1)  # blocks of MIN_BLOCK frames
    rec = Recorder(frames)
    blocks, blocks_conf = propagate(rec, 39, truth[39], -39)
    np.testing.assert_array_equal(blocks, whole)
    np.testing.assert_allclose(blocks_conf, whole_conf, rtol=1e-12, atol=0)
    ref = _ref_chain(frames, 39, 0, truth[39, 2])
    np.testing.assert_array_equal(blocks[:, 2], np.array([ref[t] for t in range(39, -1, -1)]))
    # each block is read in increasing order, the top block first
    block = flow.MIN_BLOCK
    assert rec.reads[1:] == [
        *range(39 - block, 40),
        *range(39 - 2 * block, 39 - block + 1),
        *range(0, 39 - 2 * block + 1),
    ]


def test_inner_lk_call_matches_the_lk_primitive(scene):
    from napari_dustrack.tracking.lk import lk_track

    frames, truth = scene
    pts = np.concatenate([truth[3], [[np.nan, np.nan], [94.8, 50.0], [1.0, 1.0], [-3.0, 40.0]]])
    for a, b in ((frames[3], frames[4]), (frames[9], frames[2])):
        ours = engine.track_pair(a, b, pts, P)
        ref = lk_track(a, b, pts, P)
        for x, y in zip(ours, ref, strict=False):
            np.testing.assert_array_equal(x, y)
        assert ours[1][:4].all() and not ours[1][4]


def test_propagate_failure_and_cancel_keep_rows_with_real_frame_numbers(scene, monkeypatch):
    frames, truth = scene
    whole, _ = propagate(frames, 20, truth[20], 10)
    with pytest.raises(FlowError, match="movie.mp4: frame 25 could not be decoded") as info:
        propagate(Recorder(frames, fail_at=25), 20, truth[20], 10)
    part, conf = info.value.partial
    assert part.shape == (11, 4, 2)
    np.testing.assert_array_equal(part[:5], whole[:5])  # frames 20..24
    assert np.isnan(part[5:]).all() and (conf[5:] == 0).all()

    monkeypatch.setattr(engine, "CACHE_BYTES", 1)  # backward in blocks of MIN_BLOCK frames
    back, _ = propagate(frames, 39, truth[39], -39)
    stop = threading.Event()
    with pytest.raises(Cancelled) as info:
        propagate(
            frames,
            39,
            truth[39],
            -39,
            cancel=stop,
            progress=lambda done, total: done >= flow.MIN_BLOCK + 2 and stop.set(),
        )
    part, conf = info.value.partial
    have = np.isfinite(part).all(axis=(1, 2))
    assert have[: flow.MIN_BLOCK + 1].all() and not have.all()  # the first block is complete
    np.testing.assert_array_equal(part[have], back[have])


def test_step_points_is_one_checked_lk_step(scene):
    from napari_dustrack.tracking.lk import lk_track

    frames, truth = scene
    pts = np.concatenate([truth[5], [[np.nan, np.nan], [-3.0, 40.0]]])
    xy, conf = step_points(frames[5], frames[6], pts, params=P)
    new, ok, _ = lk_track(frames[5], frames[6], pts, P)
    np.testing.assert_array_equal(xy, new)
    np.testing.assert_allclose(xy[:4], truth[6], atol=0.3)
    assert (conf[:4] > 0.9).all() and (conf[4:] == 0).all()
    with pytest.raises(TypeError):  # options are keyword-only
        propagate(frames, 5, truth[5], 3, P)
