"""Batch prediction + smoothing on dask.distributed: frames/s with 1 and 2 workers, and the
peak memory of a worker on a long (default 20,000-frame) video.

Usage::

    python benchmarks/bench_batch.py                  # 20,000 frames, 128x128
    python benchmarks/bench_batch.py --frames 2000    # a quicker run
    python benchmarks/bench_batch.py --workers 1 2 4 --chunk 1000 --smooth 0.5

Input: one cine of ``--frames`` frames at ``--size`` x ``--size`` pixels, from the simulator
(``simulate("cardiac")``): a 400-frame clip played forwards and backwards in turn (the
simulator holds a whole cine in memory, so a 20,000-frame one is built from a clip), written
as H.264 MP4 to ``benchmarks/_data/batch/`` and kept for later runs. The model is a small heatmap
model trained for ``--train-minutes`` on 80 frames of the clip (kept there too); its accuracy
does not matter here.

For each worker count: a ``LocalCluster(n_workers=k, threads_per_worker=1, processes=True)``,
whose workers import torch and the model code before the clock starts (start-up excluded),
then :func:`napari_dustrack.workers.batch.run_batch` on the cine with ``--chunk`` frames per task,
prediction then fusion smoothing with a ``--smooth`` s window. Reported: wall time from submit to
the last table written and frames/s = frames / wall time; each worker's peak resident memory
(``ru_maxrss`` of the worker process, measured in the worker at the end of every task) and its
resident memory after warm-up (imports done, nothing computed), so the growth caused by the
work is visible.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data" / "batch"
CLIP = 400


def make_video(frames: int, size: int) -> Path:
    """The long cine (cached): a simulated clip played forwards and backwards in turn."""
    from napari_dustrack.io.video_write import write_video
    from napari_dustrack.simulate import simulate

    path = DATA / f"cardiac_{size}px_{frames}f.mp4"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    sim = simulate("cardiac", n_frames=min(CLIP, frames), shape=(size, size), seed=0)
    n = len(sim.frames)

    def stream():
        for i in range(frames):
            k, r = divmod(i, n)
            yield sim.frames[r if k % 2 == 0 else n - 1 - r]

    t0 = time.perf_counter()
    write_video(stream(), path, sim.fps, crf=18)
    print(
        f"wrote {path.name} ({frames} frames) in {time.perf_counter() - t0:.0f} s", file=sys.stderr
    )
    return path


def make_model(size: int, minutes: float) -> Path:
    """A small heatmap model (cached), trained on every 5th of the clip's first 400 frames."""
    from napari_dustrack.simulate import simulate
    from napari_dustrack.tracking.heatmap import HeatmapConfig
    from napari_dustrack.tracking.heatmap.store import has_model
    from napari_dustrack.worker_env import prepare_worker

    folder = DATA / f"model_{size}px"
    if has_model(folder):
        return folder
    prepare_worker()  # training here, as in a worker: before torch loads its OpenMP runtime
    from napari_dustrack.tracking.heatmap.train import train

    sim = simulate("cardiac", n_frames=CLIP, shape=(size, size), seed=0)
    labels = sim.labels[:4]
    rows = sim.truth[sim.truth["label"].isin(labels) & (sim.truth["frame"] % 5 == 0)]
    train(sim.frames, rows, folder, HeatmapConfig(scale=0.5, minutes=minutes, seed=0))
    return folder


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _warm() -> int:
    """Import what the tasks import (torch, the model code) and return the resident bytes."""
    from napari_dustrack.worker_env import prepare_worker

    prepare_worker()  # as the tasks do, before torch loads its OpenMP runtime
    import napari_dustrack.tracking.heatmap.predict  # noqa: F401
    import napari_dustrack.tracking.smoothing  # noqa: F401

    return _rss()


def run(
    video: Path, model: Path, workers: int, chunk: int, smooth: float | None, frames: int
) -> dict:
    from distributed import Client, LocalCluster

    from napari_dustrack.workers.batch import BatchSettings, run_batch

    out = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",
                memory_limit=0,
            ) as lc,
            Client(lc, set_as_default=False) as client,
        ):
            warm = client.run(_warm)
            t0 = time.perf_counter()
            result = run_batch(
                [video], model, out, BatchSettings(smooth=smooth, chunk_frames=chunk), client=client
            )
            wall = time.perf_counter() - t0
            pids = client.run(os.getpid)
        row = result.summary.iloc[0]
        if row["status"] != "done":
            raise SystemExit(f"batch failed: {row['reason']}")
        warm_by_pid = {pids[a]: warm[a] for a in warm if a in pids}
        return {
            "workers": workers,
            "wall_s": wall,
            "frames_per_s": frames / wall,
            "task_s": float(row["seconds"]),
            "peak_rss": result.peak_rss,
            "warm_rss": warm_by_pid,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=20_000)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--chunk", type=int, default=1000, help="frames per task")
    p.add_argument("--smooth", type=float, default=0.5, help="window, s (0: no smoothing)")
    p.add_argument("--train-minutes", type=float, default=1.0)
    args = p.parse_args(argv)

    video = make_video(args.frames, args.size)
    model = make_model(args.size, args.train_minutes)
    print(
        f"video {video.name}: {args.frames} frames {args.size}x{args.size}; chunk "
        f"{args.chunk} frames; smoothing {args.smooth or 'off'} s (fusion); "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'workers':>7} {'wall s':>8} {'frames/s':>9} {'task s':>8}  peak RSS per worker "
        "(after warm-up) MiB"
    )
    for k in args.workers:
        r = run(video, model, k, args.chunk, args.smooth or None, args.frames)
        mib = 2**20
        mem = ", ".join(
            f"{r['peak_rss'][pid] / mib:.0f} ({r['warm_rss'].get(pid, 0) / mib:.0f})"
            for pid in sorted(r["peak_rss"])
        )
        print(
            f"{k:>7} {r['wall_s']:>8.1f} {r['frames_per_s']:>9.1f} {r['task_s']:>8.1f}  {mem}",
            flush=True,
        )


if __name__ == "__main__":
    main()
