"""Keyframe interpolation (LK + RSTC): napari-dustrack beside DUSTrack 1.3.2 on simulated cines.

Usage::

    python benchmarks/bench_flow.py                       # both scenarios, best of 3 runs each
    python benchmarks/bench_flow.py --scenarios cardiac --repeat 1 --frames 120

For each simulator scenario (``napari_dustrack.simulate``) the cine is written as H.264 MP4
(``write_simulation``) and decoded once with ``open_cine``; keyframes are the ground truth every
0.4 s plus N(0, 0.5 px) annotator noise per coordinate (seeded). Methods, all on the same
decoded frames and the same keyframes:

* ``napari-dustrack``: ``tracking.flow.fill_between(method="dustrack")`` (DUSTrack's
  LK-RSTC, all labels and segments batched; the default ``robust`` method is benchmarked in
  bench_robust.py).
* ``DUSTrack per label``: ``dustrack.lk_opticalflow.lucas_kanade_rstc``, one call per label per
  keyframe segment, as DUSTrack's own "interpolate all labelled frames" does.
* ``DUSTrack all labels``: the same function, one call per segment carrying every label.
* ``linear``: straight lines between keyframes (the floor to beat).

DUSTrack runs in its own virtual environment (``benchmarks/_envs/dustrack``, created with
``pip install dustrack==1.3.2`` when missing) through ``benchmarks/dustrack_rstc_driver.py``.

Timings, wall clock, best of ``--repeat`` runs per method, the runs of all methods interleaved
(ours, then each DUSTrack variant, then again) so that load from other processes falls on all
alike; DUSTrack's interpreter start and imports are outside its timed region:

* *decoded*: frames already decoded into memory (a numpy array, handed to DUSTrack behind its
  reader interface): decoding is outside the timed region for both.
* *from MP4*: opening and decoding the MP4 inside the timed region for both (``open_cine`` for
  ours, DUSTrack's ``datanavigator`` ``VideoReader``; its frame index cache on disk is warm after
  the first run, which favours DUSTrack).

Errors are Euclidean distances to the ground truth on the non-keyframe frames between the first
and last keyframe, every label: RMSE and 95th percentile (pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from _peer import PEER, ensure_peer_env

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data" / "flow"
DRIVER = HERE / "dustrack_rstc_driver.py"
KEY_EVERY_S = 0.4
NOISE_PX = 0.5


def prepare(scenario: str, n_frames: int | None, seed: int):
    """Simulated cine -> MP4, decoded frames, truth and noisy keyframes."""
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.io.table import to_array
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate(scenario, n_frames=n_frames, seed=seed)
    paths = write_simulation(sim, DATA / scenario)
    with open_cine(paths["video"], fill_cache=False) as cine:
        frames = np.stack([cine[i] for i in range(len(cine))])
    truth, labels = to_array(sim.truth, sim.labels, len(frames))
    every = int(round(KEY_EVERY_S * sim.fps))
    idx = np.arange(0, len(frames), every)
    keys = np.full_like(truth, np.nan)
    rng = np.random.default_rng(seed)
    keys[idx] = truth[idx] + rng.normal(0.0, NOISE_PX, truth[idx].shape)
    return sim, paths["video"], frames, truth, keys, idx, every


def errors(xy, truth, idx):
    """Euclidean errors on the non-keyframe frames between the first and last keyframe."""
    mask = np.zeros(len(truth), bool)
    mask[idx[0] : idx[-1] + 1] = True
    mask[idx] = False
    d = np.hypot(*(xy[mask] - truth[mask]).transpose(2, 0, 1)).ravel()
    return d


def linear(keys):
    out = np.full_like(keys, np.nan)
    t = np.arange(len(keys))
    for lab in range(keys.shape[1]):
        kf = np.flatnonzero(np.isfinite(keys[:, lab, 0]))
        for c in (0, 1):
            out[kf[0] : kf[-1] + 1, lab, c] = np.interp(t[kf[0] : kf[-1] + 1], kf, keys[kf, lab, c])
    return out


def run_ours(frames, keys, video, source):
    """One timed run of ours; returns (xy, wall seconds, CPU seconds of the process)."""
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.tracking.flow import fill_between

    t0, c0 = time.perf_counter(), time.process_time()
    if source == "decoded":
        xy, _conf = fill_between(frames, keys, method="dustrack")
    else:
        with open_cine(video, fill_cache=False) as cine:
            xy, _conf = fill_between(cine, keys, method="dustrack")
    return xy, time.perf_counter() - t0, time.process_time() - c0


def run_peer(frames, keys, video, mode, source):
    """One timed run of DUSTrack in its own interpreter; returns (xy, wall s, CPU s)."""
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.npz", Path(tmp) / "out.npz"
        payload = {"keys": keys, "mode": np.array(mode), "repeat": np.array(1)}
        if source == "decoded":
            payload["frames"] = frames
        else:
            payload["video"] = np.array(str(video))
        np.savez(job, **payload)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["QT_QPA_PLATFORM"] = "offscreen"
        res = subprocess.run(
            [str(PEER), str(DRIVER), str(job), str(out)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp,
        )
        if res.returncode:
            raise SystemExit(f"DUSTrack driver failed:\n{res.stderr[-3000:]}")
        got = np.load(out)
        return got["xy"], float(got["seconds"]), float(got["cpu_seconds"])


METHODS = (
    ("napari-dustrack", None),
    ("DUSTrack per label", "per_label"),
    ("DUSTrack all labels", "all_labels"),
)


def timed_runs(frames, keys, video, repeat):
    """Best time of each method and source; the runs are interleaved so that load from other
    processes on the machine falls on every method alike."""
    best, cpu, xy = {}, {}, {}
    for _ in range(repeat):
        for name, mode in METHODS:
            for source in ("decoded", "mp4"):
                if mode is None:
                    out, sec, cpu_sec = run_ours(frames, keys, video, source)
                else:
                    out, sec, cpu_sec = run_peer(frames, keys, video, mode, source)
                xy.setdefault((name, source), out)
                best[name, source] = min(best.get((name, source), np.inf), sec)
                cpu[name, source] = min(cpu.get((name, source), np.inf), cpu_sec)
    assert np.array_equal(
        xy["napari-dustrack", "decoded"], xy["napari-dustrack", "mp4"], equal_nan=True
    ), "decoded and MP4 runs differ"
    return best, cpu, xy


def pyramid_share(frames, keys, calls=200):
    """How much of one LK call is pyramid building: the most pyramid reuse could save.

    Times ``calcOpticalFlowPyrLK`` on consecutive frames with every label's keyframe position,
    and ``buildOpticalFlowPyramid`` of the two frames (with derivatives for the first, as the call
    makes them). With perfect reuse each frame's pyramid would be built once for its four roles
    (previous/next image of a forward and of a backward call), i.e. half a build per call.
    """
    import cv2

    pts = keys[np.isfinite(keys[..., 0]).any(axis=1)][0].astype(np.float32).reshape(-1, 1, 2)
    win, lvl, crit = (45, 45), 2, (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)
    idx = [i % (len(frames) - 1) for i in range(calls)]
    best_call = best_build = best_deriv = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for i in idx:
            cv2.calcOpticalFlowPyrLK(
                frames[i], frames[i + 1], pts, None, winSize=win, maxLevel=lvl, criteria=crit
            )
        best_call = min(best_call, (time.perf_counter() - t0) / calls)
        t0 = time.perf_counter()
        for i in idx:
            cv2.buildOpticalFlowPyramid(frames[i], win, lvl, withDerivatives=True)
        t1 = time.perf_counter()
        for i in idx:
            cv2.buildOpticalFlowPyramid(frames[i + 1], win, lvl, withDerivatives=False)
        t2 = time.perf_counter()
        best_deriv = min(best_deriv, (t1 - t0) / calls)
        best_build = min(best_build, (t1 - t0 + t2 - t1) / calls)
    bound = best_call / max(best_call - best_build + 0.5 * best_deriv, 1e-9)
    print(
        f"\nOne LK call ({len(pts)} points): {best_call * 1e3:.3f} ms; building its two "
        f"pyramids: "
        f"{best_build * 1e3:.3f} ms ({100 * best_build / best_call:.0f}%). Perfect pyramid reuse "
        f"would make the LK work at most {bound:.2f}x faster."
    )
    return dict(call_ms=best_call * 1e3, pyramids_ms=best_build * 1e3, reuse_bound=bound)


def stats(d):
    d = d[np.isfinite(d)]
    return float(np.sqrt(np.mean(d**2))), float(np.percentile(d, 95))


def bench(scenario, args):
    import cv2

    sim, video, frames, truth, keys, idx, every = prepare(scenario, args.frames, args.seed)
    n, h, w = frames.shape
    print(
        f"\n## {scenario}: {n} frames {w}x{h} at {sim.fps:g} fps, {truth.shape[1]} labels, "
        f"keyframes every {every} frames ({len(idx)} keyframes, noise {NOISE_PX} px)"
    )
    best, cpu, xy = timed_runs(frames, keys, video, args.repeat)
    rows = [(name, xy[name, "decoded"]) for name, _ in METHODS]
    rows.append(("linear interpolation", linear(keys)))
    print("\nAccuracy (non-keyframe frames, all labels):\n")
    print("| method | RMSE px | p95 px | lost points |")
    print("|---|---|---|---|")
    result = {}
    for name, pos in rows:
        d = errors(pos, truth, idx)
        rmse, p95 = stats(d)
        lost = int((~np.isfinite(d)).sum())
        print(f"| {name} | {rmse:.3f} | {p95:.3f} | {lost} |")
        result[name] = dict(rmse=rmse, p95=p95, lost=lost)
    print(f"\nTime (best of {args.repeat}; ratio = method / napari-dustrack):\n")
    print(
        "| method | wall decoded s | ratio | wall from MP4 s | ratio | CPU decoded s | ratio "
        "| CPU from MP4 s | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ours = "napari-dustrack"
    for name, _ in METHODS:
        cells = []
        for table in (best, cpu):
            for source in ("decoded", "mp4"):
                t, ref = table[name, source], table[ours, source]
                cells += [f"{t:.3f}", f"{t / ref:.1f}x"]
        print(f"| {name} | " + " | ".join(cells) + " |")
        result[name].update(
            {
                f"{kind}_{source}": table[name, source]
                for kind, table in (("wall", best), ("cpu", cpu))
                for source in ("decoded", "mp4")
            }
        )
    result["pyramid_share"] = pyramid_share(frames, keys)
    print(
        f"\n(OpenCV {cv2.__version__} here; cv2.getNumThreads() = {cv2.getNumThreads()}, "
        f"{os.cpu_count()} CPUs)"
    )
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=["cardiac", "muscle"])
    parser.add_argument(
        "--frames", type=int, default=None, help="frames per cine (default: the simulator's)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per method (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    ensure_peer_env()
    results = {sc: bench(sc, args) for sc in args.scenarios}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
