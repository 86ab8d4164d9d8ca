"""Run DUSTrack's ``lucas_kanade_rstc`` on given frames and keyframes (peer for bench_flow.py).

Runs inside DUSTrack's own virtual environment (``benchmarks/_envs/dustrack``), started as a
subprocess by ``bench_flow.py``; it imports only DUSTrack's public function and calls it the way
DUSTrack's GUI does. Usage::

    python dustrack_rstc_driver.py JOB.npz OUT.npz

``JOB.npz`` holds ``keys`` (N, L, 2; NaN except keyframes), ``mode`` and either ``frames``
(N, H, W uint8, already decoded) or ``video`` (path of the MP4, decoded by DUSTrack's own
reader inside the timed region). Modes:

* ``per_label``: one call per label per keyframe segment, as DUSTrack's "interpolate between all
  labelled frames" (``check_labels_with_lk(mode="all")`` in dustrack/gui.py) does.
* ``all_labels``: one call per keyframe segment carrying every label that has both keyframes,
  as its "interpolate selected interval, all labels" (``interpolate_with_lk(all_labels=True)``).

``OUT.npz`` receives ``xy`` (N, L, 2), ``seconds`` and ``cpu_seconds`` (best wall and process
CPU time of ``repeat`` runs).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from dustrack.lk_opticalflow import lucas_kanade_rstc


class _Frame:
    def __init__(self, img):
        self._img = img

    def asnumpy(self):
        return self._img


class DecodedVideo:
    """Already-decoded grayscale frames behind the reader interface DUSTrack indexes."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        return _Frame(self.frames[i])


def segments(keys):
    """Per label, consecutive keyframe pairs (s, e)."""
    out = {}
    for lab in range(keys.shape[1]):
        kf = np.flatnonzero(np.isfinite(keys[:, lab, 0]))
        out[lab] = list(zip(kf[:-1].tolist(), kf[1:].tolist(), strict=False))
    return out


def run(video, keys, mode):
    xy = np.full(keys.shape, np.nan)
    segs = segments(keys)
    if mode == "per_label":
        for lab, pairs in segs.items():
            for s, e in pairs:
                path = lucas_kanade_rstc(video, s, e, keys[s, [lab]], keys[e, [lab]])
                xy[s : e + 1, lab] = path[:, 0]
    elif mode == "all_labels":
        by_pair = {}
        for lab, pairs in segs.items():
            for pair in pairs:
                by_pair.setdefault(pair, []).append(lab)
        for (s, e), labs in sorted(by_pair.items()):
            path = lucas_kanade_rstc(video, s, e, keys[s, labs], keys[e, labs])
            xy[s : e + 1, labs] = path
    else:
        raise SystemExit(f"unknown mode {mode}")
    return xy


def main(job_path, out_path):
    job = np.load(job_path, allow_pickle=False)
    keys, mode = job["keys"], str(job["mode"])
    repeat = int(job["repeat"]) if "repeat" in job else 1
    best, best_cpu, xy = np.inf, np.inf, None
    for _ in range(repeat):
        if "frames" in job:
            video = DecodedVideo(job["frames"])  # decoded outside the timed region
            t0, c0 = time.perf_counter(), time.process_time()
            xy = run(video, keys, mode)
        else:
            from datanavigator.video_reader import VideoReader

            t0, c0 = time.perf_counter(), time.process_time()  # open + decode are timed
            xy = run(VideoReader(str(job["video"])), keys, mode)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    np.savez(out_path, xy=xy, seconds=best, cpu_seconds=best_cpu)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
