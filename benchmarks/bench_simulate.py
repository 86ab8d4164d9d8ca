"""Simulator speed, truth consistency and MP4 fidelity.

Usage::

    python benchmarks/bench_simulate.py              # 256x256 and 1920x1080, both scenarios
    python benchmarks/bench_simulate.py --hd-frames 0   # skip 1080p

Prints, per scenario:

- rendering time per frame at 256x256 and 1920x1080: median wall clock, the fastest frame
  (the least disturbed by other processes: close to the cost on an idle core) and the mean
  process CPU time, so that numbers taken on a busy machine can be judged;
- how well the image motion matches the ground truth: pyramidal LK (DUSTrack's 45x45 window)
  from the truth position in frame i to frame i+3, median error against the truth in i+3, and
  the median truth displacement over those 3 frames (what a stationary guess would miss by);
- H.264 (CRF 8, as ``write_simulation``) encode speed, size and the mean absolute grey-level
  error after decoding.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def render_speed(scenario: str, shape, n: int) -> tuple[float, float, float]:
    """Per-frame milliseconds: median wall, fastest wall (least disturbed), mean CPU."""
    from napari_dustrack.simulate import iter_frames

    frames = iter_frames(scenario, n_frames=n + 1, shape=shape)
    next(frames)  # setup (scatterers, textures) is not per-frame work
    times, cpu = [], time.process_time()
    t = time.perf_counter()
    for _ in frames:
        now = time.perf_counter()
        times.append(now - t)
        t = now
    cpu = (time.process_time() - cpu) / n
    return float(np.median(times)) * 1e3, min(times) * 1e3, cpu * 1e3


def truth_consistency(sim, gap: int = 3) -> tuple[float, float]:
    from napari_dustrack.io.table import to_array
    from napari_dustrack.tracking.lk import lk_track

    xy, _ = to_array(sim.truth, n_frames=len(sim.frames))
    err, moved = [], []
    for i in range(len(sim.frames) - gap):
        new, _, _ = lk_track(sim.frames[i], sim.frames[i + gap], xy[i])
        err.append(np.linalg.norm(new - xy[i + gap], axis=1))
        moved.append(np.linalg.norm(xy[i + gap] - xy[i], axis=1))
    return float(np.nanmedian(err)), float(np.median(moved))


def mp4_fidelity(sim) -> tuple[float, float, float]:
    import av

    from napari_dustrack.io.video_write import write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.mp4"
        t = time.perf_counter()
        write_video(sim.frames, path, sim.fps, crf=8)
        fps = len(sim.frames) / (time.perf_counter() - t)
        with av.open(str(path)) as c:
            dec = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
        size_mb = os.path.getsize(path) / 1e6
    return fps, size_mb, float(np.abs(dec.astype(float) - sim.frames).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="frames for the 256x256 runs")
    parser.add_argument("--hd-frames", type=int, default=20, help="frames for 1920x1080 (0: skip)")
    args = parser.parse_args()
    from napari_dustrack.simulate import SCENARIOS, simulate

    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    for scenario in SCENARIOS:
        sizes = [(256, 256, args.frames)] + (
            [(1080, 1920, args.hd_frames)] if args.hd_frames else []
        )
        for h, w, n in sizes:
            med, best, cpu = render_speed(scenario, (h, w), n)
            print(
                f"[{scenario}] {w}x{h} render: median {med:.1f} ms/frame, fastest {best:.1f} "
                f"ms, CPU {cpu:.1f} ms/frame"
            )
        sim = simulate(scenario, n_frames=args.frames)
        err, moved = truth_consistency(sim)
        print(
            f"[{scenario}] LK(45x45) i->i+3 vs truth: median error {err:.2f} px "
            f"(truth moved {moved:.2f} px)"
        )
        fps, size, mae = mp4_fidelity(sim)
        print(
            f"[{scenario}] H.264 CRF 8: {fps:.0f} frames/s encode, {size:.2f} MB for "
            f"{len(sim.frames)} frames, mean |decoded - original| {mae:.2f} grey levels"
        )


if __name__ == "__main__":
    main()
