"""What the napari reader adds to opening a cine, and how long a sample takes to open.

- A synthetic 1080p screen capture (changing image, still text and side panel), H.264:
  ``open_cine`` alone against the napari reader (colour check, region detection on the first
  24 frames, contrast limits from percentiles): a first open (empty sidecar) and a re-open
  (what the first found, read back from the sidecar's ``view.json``), imports done before.
- The sample cine: first use (the shipped cine copied to an empty cache) against simulating it
  (what the first use cost before it was shipped).

Usage: ``python benchmarks/bench_native.py [--frames 60]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np


def screen_capture(folder: Path, n: int) -> Path:
    from napari_dustrack.io.video_write import write_video

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1080 + n, 1920 + n), dtype=np.uint8)
    base = cv2.GaussianBlur(base, (0, 0), 2)
    frames = np.stack([base[i : i + 1080, i : i + 1920] for i in range(n)])
    frames[:, :80, :600] = 220  # patient text
    frames[:, :, 1700:] = 40  # the scanner's side panel
    return write_video(frames, folder / "screen.mp4", 30.0, crf=18, preset="veryfast")


def time_reader(video: Path, warmup: Path, repeat: int = 3) -> None:
    """First open (nothing in the sidecar) and re-open (region, contrast and colour read back
    from ``view.json``) of ``video`` through the napari reader, against ``open_cine`` alone."""
    import napari_dustrack._napari.reader as reader
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.io.sidecar import sidecar_dir

    reader._warn = lambda message: None  # no napari notification outside a viewer
    reader.read_cine_layer(str(warmup))  # once per session: imports (PyAV, dask, OpenCV)
    for run in range(repeat):
        shutil.rmtree(sidecar_dir(video), ignore_errors=True)
        t0 = time.perf_counter()
        open_cine(video, rgb="auto", region=False, fill_cache=False).close()
        t1 = time.perf_counter()
        layers = reader.read_cine_layer(str(video))
        t2 = time.perf_counter()
        again = reader.read_cine_layer(str(video))
        t3 = time.perf_counter()
        region = layers[0][1]["metadata"]["dustrack"]["region"]
        assert again[0][1]["metadata"]["dustrack"]["region"] == region
        print(
            f"run {run}: open_cine {t1 - t0:.2f} s | napari reader, first open {t2 - t1:.2f} s, "
            f"re-open {t3 - t2:.2f} s | region {region}"
        )


def time_sample() -> None:
    from napari_dustrack._napari import sample_data
    from napari_dustrack.simulate import simulate

    with tempfile.TemporaryDirectory() as cache:
        os.environ[sample_data.CACHE_ENV] = cache
        t0 = time.perf_counter()
        sample_data.cardiac()
        t1 = time.perf_counter()
        sample_data.cardiac()
        t2 = time.perf_counter()
    t3 = time.perf_counter()
    simulate("cardiac")
    t4 = time.perf_counter()
    print(
        f"sample 'cardiac': first use {t1 - t0:.2f} s, cached {t2 - t1:.2f} s; "
        f"simulating it instead {t4 - t3:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_DUSTRACK_FRAME_CACHE", "0")
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as folder:
        from napari_dustrack._napari.sample_data import SHIPPED

        warmup = Path(shutil.copy(SHIPPED / "cardiac.mp4", Path(folder) / "warmup.mp4"))
        time_reader(screen_capture(Path(folder), args.frames), warmup)
    time_sample()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
