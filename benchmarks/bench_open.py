"""Open / step / jump timings of the lazy cine reader on a long 1080p H.264 cine.

Usage::

    python benchmarks/bench_open.py                 # 10,000 frames (generates ~2-10 min once)
    python benchmarks/bench_open.py --frames 600    # quicker, smaller cine

The cine is generated once into ``benchmarks/_data/`` (gitignored) and reused: 1920x1080,
30 fps, H.264 (libx264 veryfast, CRF 23, B-frames on, a keyframe every 30 frames exactly), an
ultrasound-like picture (log-compressed speckle inside a fan-shaped sector on black, moving
smoothly, a little fresh noise per frame and a frame counter burnt in).

Each measurement runs in a fresh subprocess so that memory is measured from a clean start:
open (``open_cine`` + the first frame as napari asks for it), extra RSS, next-frame step,
random jump before the background frame cache holds the frame and after, and the background
cache fill rate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
H, W, FPS, GOP = 1080, 1920, 30, 30


# -- the test cine ----------------------------------------------------------------------------
def _speckle(rng, h, w):
    import cv2

    re = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.5, sigmaY=1.0)
    im = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 2.5, sigmaY=1.0)
    db = 20 * np.log10(np.sqrt(re**2 + im**2) + 1e-3)
    return np.clip((db - db.max() + 45) / 45 * 255, 0, 255).astype(np.uint8)


def generate(path: Path, n_frames: int) -> Path:
    """Write the benchmark cine (see module docstring) to ``path``."""
    import av
    import cv2

    rng = np.random.default_rng(0)
    texture = _speckle(rng, H + 200, W + 200)
    yy, xx = np.mgrid[0:H, 0:W]
    radius = np.hypot(yy + 60, xx - W / 2)
    angle = np.degrees(np.arctan2(xx - W / 2, yy + 60))
    sector = ((radius > 100) & (radius < H - 40) & (np.abs(angle) < 40)).astype(np.float32)
    gain = np.clip(1.2 - radius / H * 0.6, 0, 1).astype(np.float32) * sector
    noise = [rng.integers(0, 8, (H, W), dtype=np.uint8) for _ in range(8)]
    tmp = path.with_suffix(".part.mp4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "crf": "23",
            "g": str(GOP),
            "keyint_min": str(GOP),
            "sc_threshold": "0",
        }
        t0 = time.perf_counter()
        for i in range(n_frames):
            dy = int(100 + 60 * np.sin(i / 20))
            dx = int(100 + 30 * np.cos(i / 33))
            img = cv2.add(texture[dy : dy + H, dx : dx + W], noise[i % len(noise)])
            img = (img * gain).astype(np.uint8)
            cv2.putText(img, f"frame {i}", (40, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.5, 255, 2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="gray")):
                out.mux(packet)
            if i % 1000 == 999:
                rate = (i + 1) / (time.perf_counter() - t0)
                print(f"  generated {i + 1}/{n_frames} frames ({rate:.0f} frames/s)", flush=True)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


def cine_path(n_frames: int) -> Path:
    path = DATA / f"cine_{W}x{H}_{n_frames}f_gop{GOP}.mp4"
    if not path.exists():
        print(f"generating {path} (once) ...", flush=True)
        generate(path, n_frames)
    return path


# -- measurements (each in a fresh process) ---------------------------------------------------
def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def measure_open(path: str) -> dict:
    """Time from ``open_cine`` to the first frame computed through the dask array."""
    import dask.array

    import napari_dustrack.io.cine  # noqa: F401

    # One-offs per napari session, timed apart from opening: the first dask compute imports
    # dask.distributed (already done when the DUSTrack widget is open), the first video
    # opened imports PyAV.
    t0 = time.perf_counter()
    np.asarray(dask.array.zeros(1))
    t_dask = time.perf_counter() - t0
    t0 = time.perf_counter()
    import napari_dustrack.io.video  # noqa: F401

    t_av = time.perf_counter() - t0
    rss0 = _rss()
    t0 = time.perf_counter()
    cine = napari_dustrack.io.cine.open_cine(path)
    t_open = time.perf_counter() - t0
    first = np.asarray(cine.data[0])
    t_first = time.perf_counter() - t0
    rss1 = _rss()
    mid = len(cine) // 2
    t1 = time.perf_counter()
    np.asarray(cine.data[mid])
    t_mid = time.perf_counter() - t1
    cine.close()
    return {
        "open_s": t_open,
        "first_frame_s": t_first,
        "dask_warmup_s": t_dask,
        "av_import_s": t_av,
        "extra_rss_mb": (rss1 - rss0) / 2**20,
        "middle_frame_s": t_mid,
        "n_frames": len(cine),
        "shape": list(first.shape),
    }


def measure_access(path: str, n_samples: int) -> dict:
    """Next-frame steps and random jumps with the frame cache disabled (decoder only)."""
    from napari_dustrack.io.cine import open_cine

    cine = open_cine(path, fill_cache=False)
    n = len(cine)
    rng = np.random.default_rng(1)
    start = int(rng.integers(0, max(n - n_samples - 1, 1)))
    cine[start]
    steps, step_cpu = [], []
    for i in range(start + 1, min(start + 1 + n_samples, n)):
        t0, c0 = time.perf_counter(), time.process_time()
        np.asarray(cine.data[i])
        steps.append(time.perf_counter() - t0)
        step_cpu.append(time.process_time() - c0)
    jumps, jump_cpu = [], []
    for i in rng.integers(0, n, n_samples):
        t0, c0 = time.perf_counter(), time.process_time()
        np.asarray(cine.data[int(i)])
        jumps.append(time.perf_counter() - t0)
        jump_cpu.append(time.process_time() - c0)
    cine.close()
    return {
        "step_ms": 1000 * statistics.median(steps),
        "jump_ms": 1000 * statistics.median(jumps),
        "jump_p90_ms": 1000 * float(np.percentile(jumps, 90)),
        "step_cpu_ms": 1000 * statistics.median(step_cpu),
        "jump_cpu_ms": 1000 * statistics.median(jump_cpu),
    }


def measure_cache(path: str, n_samples: int, max_wait: float) -> dict:
    """Fill the background frame cache from scratch, then time random jumps served from it."""
    from napari_dustrack.io.cine import open_cine

    cine = open_cine(path)
    cache = cine.frame_cache
    if cache is None:
        return {"error": "no frame cache"}
    time.sleep(2.0)  # the fill starts 1 s after opening; time it once it runs
    t0, c0 = time.perf_counter(), time.process_time()
    done0 = cache.n_filled
    cache.wait(timeout=max_wait)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0  # the process only fills meanwhile
    filled = cache.n_filled - done0
    rng = np.random.default_rng(2)

    def cached_jumps():
        held = np.flatnonzero(cache.filled)
        times = []
        for i in rng.choice(held, min(n_samples, len(held)), replace=False):
            t0 = time.perf_counter()
            np.asarray(cine.data[int(i)])
            times.append(time.perf_counter() - t0)
        return 1000 * statistics.median(times)

    busy = cached_jumps()  # the fill thread still running (a long cine)
    cache.close()  # as when the cache is complete
    idle = cached_jumps()
    out = {
        "fill_fps": filled / elapsed,
        "fill_cpu_ms": 1000 * cpu / max(filled, 1),
        "filled": int(cache.n_filled),
        "n_frames": len(cine),
        "cache_shape": list(cache.frame_shape),
        "cache_jump_ms": idle,
        "cache_jump_busy_ms": busy,
        "complete": bool(cache.complete),
    }
    cine.close()
    return out


def _child(what: str, path: str, args) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        what,
        "--path",
        path,
        "--samples",
        str(args.samples),
        "--max-wait",
        str(args.max_wait),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{what} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=60, help="steps/jumps to time")
    parser.add_argument(
        "--max-wait",
        type=float,
        default=240.0,
        help="seconds to let the background cache fill before timing it",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        func = {
            "open": lambda: measure_open(args.path),
            "access": lambda: measure_access(args.path, args.samples),
            "cache": lambda: measure_cache(args.path, args.samples, args.max_wait),
        }[args.child]
        print(json.dumps(func()))
        return
    from napari_dustrack.io.sidecar import sidecar_dir

    path = cine_path(args.frames)
    sidecar = sidecar_dir(path)
    shutil.rmtree(sidecar, ignore_errors=True)  # measure a first open, cold frame cache
    size_mb = path.stat().st_size / 2**20
    print(
        f"cine: {path.name}, {size_mb:.0f} MB, {args.frames} frames, CPU cores: "
        f"{os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}"
    )
    opened = _child("open", str(path), args)
    reopened = _child("open", str(path), args)  # the frame index is now in the sidecar
    shutil.rmtree(sidecar, ignore_errors=True)
    access = _child("access", str(path), args)
    cache = _child("cache", str(path), args)
    shutil.rmtree(sidecar, ignore_errors=True)
    rows = [
        ("open -> first frame (s)", f"{opened['first_frame_s']:.3f}", "<= 1.0"),
        ("  of which open_cine (s)", f"{opened['open_s']:.3f}", ""),
        ("reopen -> first frame (s, index kept)", f"{reopened['first_frame_s']:.3f}", ""),
        ("once per session: import PyAV (s)", f"{opened['av_import_s']:.3f}", ""),
        ("once per session: first dask compute (s)", f"{opened['dask_warmup_s']:.3f}", ""),
        ("extra memory after open (MB)", f"{opened['extra_rss_mb']:.0f}", "<= 300"),
        ("jump to middle frame (ms)", f"{1000 * opened['middle_frame_s']:.0f}", ""),
        ("next-frame step, median (ms)", f"{access['step_ms']:.1f}", "<= 15"),
        ("  CPU time per step, median (ms)", f"{access['step_cpu_ms']:.1f}", ""),
        ("random jump, no cache, median (ms)", f"{access['jump_ms']:.0f}", "<= 150"),
        ("  CPU time per jump, median (ms)", f"{access['jump_cpu_ms']:.0f}", ""),
        ("random jump, no cache, p90 (ms)", f"{access['jump_p90_ms']:.0f}", ""),
        ("random jump, from frame cache, median (ms)", f"{cache['cache_jump_ms']:.1f}", "<= 10"),
        ("  the same while the fill still runs (ms)", f"{cache['cache_jump_busy_ms']:.1f}", ""),
        ("background cache fill (frames/s)", f"{cache['fill_fps']:.0f}", ">= 150"),
        ("  CPU time per cached frame (ms)", f"{cache['fill_cpu_ms']:.1f}", ""),
    ]
    print(
        f"frame cache: {cache['cache_shape'][0]}x{cache['cache_shape'][1]} per frame, "
        f"{cache['filled']}/{cache['n_frames']} frames filled in the timed window"
    )
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)} | {'value':>8} | target")
    print(f"{'-' * width}-|-{'-' * 8}-|-------")
    for name, value, target in rows:
        print(f"{name.ljust(width)} | {value:>8} | {target}")
    print(
        f"load average after: {os.getloadavg()[0]:.1f} (other work on the machine slows "
        "every wall-clock number; CPU times are what one idle core would need)"
    )


if __name__ == "__main__":
    main()
