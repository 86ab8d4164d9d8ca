"""Run DUSTrack's own ``lk_moving_average_filter`` on a video + raw tracks (the peer).

Runs with the DUSTrack venv's interpreter (benchmarks/_envs/dustrack), never imported by
napari-dustrack. Input: the video and an ``.npy`` of raw tracks (N, L, 2); output: an ``.npy``
of DUSTrack's smoothed tracks, the grayscale frames DUSTrack decoded (``--frames-out``, for an
exact comparison on identical pixels) and a JSON line with the wall and CPU time (all threads)
on stdout.

    python dustrack_smooth_driver.py VIDEO RAW.npy --window 0.5 --out OUT.npy [--frames-out F.npy]
"""

import argparse
import contextlib
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("video")
    ap.add_argument("raw")
    ap.add_argument("--window", type=float, default=0.5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames-out", default=None)
    args = ap.parse_args()

    from dustrack.annotations import VideoAnnotation
    from dustrack.lk_filter import gray, lk_moving_average_filter

    raw = np.load(args.raw)
    tmp = Path(tempfile.mkdtemp(prefix="dustrack_peer_"))
    try:
        # DUSTrack wants its own layout: <stem>.mp4 next to <stem>_annotations_<layer>.json,
        # labels named "0".."9"
        video = tmp / Path(args.video).name
        shutil.copy(args.video, video)
        data = {
            str(lab): {
                str(f): [float(raw[f, lab, 0]), float(raw[f, lab, 1])] for f in range(raw.shape[0])
            }
            for lab in range(raw.shape[1])
        }
        ann_path = tmp / f"{video.stem}_annotations_raw.json"
        ann_path.write_text(json.dumps(data))
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            ann = VideoAnnotation(str(ann_path), str(video))
            t0, c0 = time.perf_counter(), time.process_time()
            result = lk_moving_average_filter(
                ann, window_size=args.window, use_parallel=True, save_raw=False
            )
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out = np.stack(
            [
                np.array([result.data[str(lab)][f] for f in range(raw.shape[0])])
                for lab in range(raw.shape[1])
            ],
            axis=1,
        )
        np.save(args.out, out)
        if args.frames_out:
            frames = np.stack([gray(ann.video[i].asnumpy()) for i in range(raw.shape[0])])
            np.save(args.frames_out, frames)
        n_win = round(args.window * ann.video.get_avg_fps())
        print(
            json.dumps(
                {
                    "wall_s": wall,
                    "cpu_s": cpu,
                    "window_frames": n_win,
                    "fps": ann.video.get_avg_fps(),
                    "n_frames": len(ann.video),
                }
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
