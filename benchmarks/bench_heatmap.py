"""Accuracy, speed and memory of the U-Net heatmap model on the simulated cardiac cine.

Trains on ``k`` labelled frames spread evenly over a 250-frame 256x256 simulated cine (ground
truth known), predicts every frame through the lazy video reader, and prints the error on the
frames it was not trained on, training time, prediction speed and peak memory (one JSON line
per run, plus the validation-error-vs-training-time curve).

    python benchmarks/bench_heatmap.py --labelled 30 --minutes 4
    python benchmarks/bench_heatmap.py --labelled 5 10 20 30 60 --minutes 4 --clock cpu

``--clock cpu`` counts the training budget in process CPU time per thread (what the run takes
on otherwise idle cores), for shared machines whose other users' load would otherwise decide
the result; wall and CPU seconds are both printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_dustrack.io.cine import open_cine
from napari_dustrack.io.table import read_points_csv, to_array
from napari_dustrack.simulate import simulate, write_simulation
from napari_dustrack.tracking.heatmap import HeatmapConfig  # imports torch only inside run_one
from napari_dustrack.worker_env import prepare_worker

DATA = Path(__file__).resolve().parent / "_data" / "heatmap"


def cine(scenario: str, seed: int) -> dict:
    """The simulated video and truth (cached in benchmarks/_data/heatmap)."""
    folder = DATA / f"{scenario}-{seed}"
    video, truth = folder / f"{scenario}.mp4", folder / f"{scenario}_truth.csv"
    if not (video.exists() and truth.exists()):
        write_simulation(simulate(scenario, seed=seed), folder)
    return {"video": video, "truth": truth}


def spread(n_frames: int, k: int) -> np.ndarray:
    return np.unique(np.round(np.linspace(0, n_frames - 1, k)).astype(int))


def run_one(paths: dict, k: int, config: HeatmapConfig, out: Path) -> dict:
    from napari_dustrack.tracking.heatmap.predict import predict_video
    from napari_dustrack.tracking.heatmap.train import train

    truth = read_points_csv(paths["truth"])
    video = open_cine(paths["video"], fill_cache=False)
    n = len(video)
    keys = spread(n, k)
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    meta = train(video, truth[truth["frame"].isin(keys)], out, config)
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    video.close()
    video = open_cine(paths["video"], fill_cache=False)
    t0, c0 = time.perf_counter(), time.process_time()
    pred = predict_video(video, out, threads=config.threads)
    t_pred, c_pred = time.perf_counter() - t0, time.process_time() - c0
    video.close()
    labels = meta["labels"]
    p, _ = to_array(pred, labels, n)
    g, _ = to_array(truth, labels, n)
    err = np.linalg.norm(p - g, axis=-1)
    test = np.setdiff1d(np.arange(n), keys)
    threads = config.threads or len(os.sched_getaffinity(0))
    return {
        "labelled": int(len(keys)),
        "minutes": config.minutes,
        "clock": config.clock,
        "encoder": config.encoder,
        "working_size": meta["working_size"],
        "median_px": float(np.median(err[test])),
        "p95_px": float(np.percentile(err[test], 95)),
        "mean_px": float(np.mean(err[test])),
        "max_px": float(np.max(err[test])),
        "train_wall_s": t_train,
        "train_cpu_s": c_train,
        "steps": meta["metrics"]["steps"],
        "predict_fps_wall": n / t_pred,
        "predict_fps_cpu": n / (c_pred / threads),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "load_avg_start": load0,
        "load_avg_end": os.getloadavg()[0],
        "curve": [(round(h["seconds"], 1), round(h["val_error_px"], 3)) for h in meta["history"]],
    }


def main(argv=None) -> int:
    # this process trains and predicts as a worker does: the workers' OpenMP wait policy (set
    # before torch loads; without it, spinning threads spend the CPU budget on a busy machine)
    prepare_worker()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", type=int, nargs="+", default=[30])
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--scenario", default="cardiac")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="append results here (JSON lines)")
    args = ap.parse_args(argv)
    paths = cine(args.scenario, args.seed)
    config = HeatmapConfig(minutes=args.minutes, clock=args.clock, threads=args.threads)
    for k in args.labelled:
        with tempfile.TemporaryDirectory() as tmp:
            res = run_one(paths, k, config, Path(tmp) / "model")
        line = json.dumps(res)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
