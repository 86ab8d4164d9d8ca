"""The optical-flow smoother on simulated ultrasound cines with known motion."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from track_errors import rmse

from napari_dustrack.errors import Cancelled, DustrackError
from napari_dustrack.io.cine import open_cine
from napari_dustrack.io.table import labels_of, to_array
from napari_dustrack.simulate import noisy_estimates, simulate, write_simulation
from napari_dustrack.tracking.lk import LKParams, rstc_weight
from napari_dustrack.tracking.smoothing import (
    check_inputs,
    kalman_rts,
    plan_chunks,
    savgol,
    smooth,
    window_frames,
)
from napari_dustrack.workers.smoothing import smooth_chunked

PEER_PY = (
    Path(__file__).resolve().parents[2] / "benchmarks" / "_envs" / "dustrack" / "bin" / "python"
)
DRIVER = Path(__file__).resolve().parents[2] / "benchmarks" / "dustrack_smooth_driver.py"
W = 9


@pytest.fixture(scope="module")
def sim():
    s = simulate("muscle", n_frames=36, shape=(112, 112), seed=3)
    truth, _ = to_array(s.truth, labels_of(s.truth), len(s.frames))
    return s, truth, noisy_estimates(truth, seed=1, outlier_rate=0.02)


@pytest.fixture(scope="module")
def video(sim, tmp_path_factory):
    return write_simulation(sim[0], tmp_path_factory.mktemp("smooth_video"))["video"]


def naive_dustrack(frames, xy, window):
    """Window by window, as the method is written down: LK on full frames for every window."""
    frames = [np.asarray(f) for f in frames]
    n = len(xy)
    wf = rstc_weight(np.arange(window), 0, window - 1)
    total = np.zeros(xy.shape)
    count = np.zeros(xy.shape[:2])
    p = LKParams()
    kw = dict(winSize=(p.win_size, p.win_size), maxLevel=p.max_level, criteria=p.criteria)
    for s in range(n - window + 1):

        def path(start, order):
            pts = xy[start].astype(np.float32).reshape(-1, 1, 2)
            out = [pts.reshape(-1, 2).astype(float)]
            for a, b in zip(order[:-1], order[1:], strict=False):
                pts, _, _ = cv2.calcOpticalFlowPyrLK(frames[a], frames[b], pts, None, **kw)
                out.append(pts.reshape(-1, 2).astype(float))
            return np.array(out)

        idx = list(range(s, s + window))
        fwd = path(s, idx)
        bwd = path(s + window - 1, idx[::-1])[::-1]
        total[s : s + window] += wf[:, None, None] * fwd + (1 - wf[:, None, None]) * bwd
        count[s : s + window] += 1
    return total / count[..., None]


def test_dustrack_mode_equals_window_by_window_lk(sim):
    s, _, raw = sim
    ours = smooth(s.frames, raw, W, "dustrack")
    ref = naive_dustrack(s.frames, raw, W)
    assert np.abs(ours - ref).max() < 1e-3
    # DUSTrack leaves the first and last frame as the input (single precision)
    assert np.array_equal(ours[0], raw[0].astype(np.float32).astype(float))


@pytest.mark.skipif(
    not PEER_PY.exists(),
    reason=f"DUSTrack venv not found at {PEER_PY} (python benchmarks/bench_smooth.py creates it)",
)
def test_dustrack_mode_matches_dustrack_itself(sim, video, tmp_path):
    s, _, raw = sim
    np.save(tmp_path / "raw.npy", raw)
    seconds = W / s.fps
    proc = subprocess.run(
        [
            str(PEER_PY),
            str(DRIVER),
            str(video),
            str(tmp_path / "raw.npy"),
            "--window",
            str(seconds),
            "--out",
            str(tmp_path / "peer.npy"),
            "--frames-out",
            str(tmp_path / "frames.npy"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["window_frames"] == W
    peer = np.load(tmp_path / "peer.npy")
    same_pixels = smooth(np.load(tmp_path / "frames.npy"), raw, W, "dustrack")
    assert np.abs(same_pixels - peer).max() < 0.01
    with open_cine(video) as cine:  # our own decoder: gray may differ by 1 level
        own = smooth(cine, raw, W, "dustrack")
    assert np.abs(own - peer).max() < 0.05


@pytest.mark.parametrize("mode", ["dustrack", "fast", "fusion"])
def test_modes_remove_jitter(sim, mode):
    s, truth, raw = sim
    out = smooth(s.frames, raw, W, mode)
    assert out.shape == raw.shape
    assert rmse(out, truth) < 0.7 * rmse(raw, truth)


def test_fusion_beats_dustrack_and_plain_filters(sim):
    s, truth, raw = sim
    fused = rmse(smooth(s.frames, raw, W, "fusion"), truth)
    assert fused < rmse(smooth(s.frames, raw, W, "dustrack"), truth)
    assert fused < rmse(savgol(raw, W), truth)
    assert fused < rmse(kalman_rts(raw), truth)


def test_fusion_smooths_first_and_last_frames(sim):
    s, truth, raw = sim
    out = smooth(s.frames, raw, W, "fusion")
    ends = [0, len(raw) - 1]
    assert not np.allclose(out[ends], raw[ends])
    assert rmse(out[ends], truth[ends]) < rmse(raw[ends], truth[ends])


def test_fusion_resists_one_outlier_and_uses_confidence(sim):
    s, truth, _ = sim
    rng = np.random.default_rng(7)
    raw = truth + rng.normal(0, 0.5, truth.shape)
    t = 17
    raw[t, 0] += [9.0, -6.0]
    clean = smooth(s.frames, raw, W, "fusion")
    assert np.linalg.norm(clean[t, 0] - truth[t, 0]) < 1.5
    # the same outlier with a low confidence pulls even less
    conf = np.ones(raw.shape[:2])
    conf[t, 0] = 0.05
    weighted = smooth(s.frames, raw, W, "fusion", confidence=conf)
    assert np.linalg.norm(weighted[t, 0] - truth[t, 0]) <= np.linalg.norm(clean[t, 0] - truth[t, 0])


@pytest.mark.parametrize("mode", ["dustrack", "fast", "fusion"])
def test_gaps_split_tracks_and_labels_are_independent(sim, mode):
    s, truth, raw = sim
    gapped = raw.copy()
    gapped[14:16, 1] = np.nan
    out = smooth(s.frames, gapped, W, mode)
    assert np.isnan(out[14:16, 1]).all()
    assert np.isfinite(out[:14, 1]).all() and np.isfinite(out[16:, 1]).all()
    # every other label is smoothed as if alone
    alone = smooth(s.frames, gapped[:, 2:3], W, mode)
    np.testing.assert_allclose(out[:, 2:3], alone, atol=1e-9)
    # the segment after the gap is long enough to be smoothed and is
    assert rmse(out[16:, 1], truth[16:, 1]) < rmse(raw[16:, 1], truth[16:, 1])


@pytest.mark.parametrize("mode", ["dustrack", "fast", "fusion"])
def test_chunks_give_the_one_pass_result(sim, mode):
    s, _, raw = sim
    one = smooth(s.frames, raw, W, mode)
    assert len(plan_chunks(len(raw), W, mode, 14)) > 2
    chunked = smooth_chunked(s.frames, raw, W, mode, chunk_frames=14)
    seq = smooth(s.frames, raw, W, mode, chunk_frames=14)
    if mode == "dustrack":  # sums of window paths added in another order
        np.testing.assert_allclose(chunked, one, rtol=0, atol=1e-9)
        np.testing.assert_allclose(seq, one, rtol=0, atol=1e-9)
    else:
        np.testing.assert_array_equal(chunked, one)
        np.testing.assert_array_equal(seq, one)


@pytest.mark.parametrize("mode", ["dustrack", "fast", "fusion"])
def test_chunks_keep_anchors_like_the_one_pass(sim, mode):
    s, truth, raw = sim
    anchored = raw.copy()
    anchors = np.zeros(raw.shape[:2], bool)
    anchors[::7] = True
    anchored[anchors] = truth[anchors]
    one = smooth(s.frames, anchored, W, mode, anchors=anchors)
    chunked = smooth_chunked(s.frames, anchored, W, mode, chunk_frames=14, anchors=anchors)
    np.testing.assert_allclose(chunked, one, rtol=0, atol=1e-9)
    assert np.abs(chunked[anchors] - truth[anchors]).max() < 0.1
    free = smooth_chunked(s.frames, anchored, W, mode, chunk_frames=14)
    assert np.abs(free[anchors] - truth[anchors]).max() > 0.1  # the anchors made the difference


def test_chunks_on_distributed_workers(sim, video):
    distributed = pytest.importorskip("distributed")
    s, _, raw = sim
    with open_cine(video) as cine:
        expected = {m: smooth(cine, raw, W, m) for m in ("dustrack", "fusion")}
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        for mode, want in expected.items():
            got = smooth_chunked(str(video), raw, W, mode, client=client, chunk_frames=12)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_progress_and_cancel(sim):
    s, _, raw = sim
    calls = []
    smooth(s.frames, raw, W, "fast", progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    cancel = threading.Event()
    cancel.set()
    for mode in ("dustrack", "fusion"):
        with pytest.raises(Cancelled):
            smooth(s.frames, raw, W, mode, cancel=cancel)


def test_bad_input_messages(sim):
    s, _, raw = sim
    with pytest.raises(DustrackError, match="fewer than the window"):
        smooth(s.frames[:8], raw[:8], W, "fusion")
    with pytest.raises(DustrackError, match="cover 30 frames but the video has 36"):
        smooth(s.frames, raw[:30], W, "fusion")
    empty = raw.copy()
    empty[:, 3] = np.nan
    with pytest.raises(DustrackError, match="'deep' have no positions"):
        check_inputs(len(raw), empty, W, "fusion", labels=["a", "b", "c", "deep", "e", "f"])
    with pytest.raises(DustrackError, match="unknown smoothing mode"):
        smooth(s.frames, raw, W, "median")
    with pytest.raises(DustrackError, match=r"no frame rate.*\(frames=\)"):
        window_frames(0.5, None)
    assert window_frames(0.5, 30.0) == 15 and window_frames(0.5, None, 7) == 7
