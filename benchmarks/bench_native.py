"""What the napari reader adds to opening a cine, and how long a sample takes to open.

- A synthetic 1080p screen capture (changing image, still text and side panel), H.264:
  ``open_cine`` alone against the napari reader (colour check, region detection on the first
  24 frames, contrast limits from percentiles), warm (the second and third runs).
- The sample cine: first use (the shipped cine copied to an empty cache) against simulating it
  (what the first use cost before it was shipped).

Usage: ``python benchmarks/bench_native.py [--frames 60]``
"""

from __future__ import annotations

import argparse
import os
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


def time_reader(video: Path, repeat: int = 3) -> None:
    import napari_dustrack._napari.reader as reader
    from napari_dustrack.io.cine import open_cine

    reader._warn = lambda message: None  # no napari notification outside a viewer
    for run in range(repeat):
        t0 = time.perf_counter()
        open_cine(video, region=False).close()
        t1 = time.perf_counter()
        layers = reader.read_cine_layer(str(video))
        t2 = time.perf_counter()
        region = layers[0][1]["metadata"]["dustrack"]["region"]
        print(
            f"run {run}: open_cine {t1 - t0:.2f} s, napari reader {t2 - t1:.2f} s "
            f"(+{t2 - t1 - (t1 - t0):.2f} s), region {region}"
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
        time_reader(screen_capture(Path(folder), args.frames))
    time_sample()
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
