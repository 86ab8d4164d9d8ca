"""Windowed Tracks layers (issue 11): painting and scrubbing the long cine with three 80,000-row
Tracks layers, each shown whole (napari's way: every vertex uploaded, the shader hides the rows
outside the tail) and through the plugin's window of frames, measured in the same run.

Usage (re-runs itself under ``xvfb-run`` when there is no display)::

    python benchmarks/bench_track_window.py [--frames 10000] [--labels 8]

For each mode: the time of a synchronous repaint of the canvas at 20 frames spread over the cine
(median, p95; wall and GUI-thread CPU), and the event loop's lateness (a 20 ms watchdog, as in
``bench_gui.py``) while 150 frame changes 30 ms apart sweep the cine (bench_gui's *scrub*). The
load average is printed with the figures: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_gui  # noqa: E402 - the long cine, the watchdog and the event-loop helpers

LAYERS = ("annotation tracks", "model tracks", "smoothed")


def tracks_table(n_frames: int, n_labels: int, seed: int):
    import pandas as pd

    from napari_dustrack.io.colours import track_colour_values

    rng = np.random.default_rng(seed)
    track = np.repeat(np.arange(1, n_labels + 1, dtype=float), n_frames)
    frame = np.tile(np.arange(n_frames, dtype=float), n_labels)
    yx = np.c_[200 + 80 * track, 300 + 150 * track] + rng.normal(0, 3, (len(track), 2))
    features = pd.DataFrame(
        {
            "label": [f"p{int(t)}" for t in track],
            "confidence": rng.uniform(0.5, 1, len(track)),
            "colour": track_colour_values(track, n_labels),
        }
    )
    return np.c_[track, frame, yx], features


def add_layers(viewer, n_frames, n_labels):
    from napari.layers import Tracks

    from napari_dustrack._widgets.common import label_colormap, show_tracks
    from napari_dustrack.io.colours import label_hex

    hexes = label_hex([f"p{i + 1}" for i in range(n_labels)])
    colormap = label_colormap(list(hexes.values()), "bench-labels")
    for seed, name in enumerate(LAYERS):
        data, features = tracks_table(n_frames, n_labels, seed)

        def new(rows, row_features, name=name):
            return Tracks(
                rows,
                features=row_features,
                name=name,
                tail_length=30,
                head_length=0,
                colormaps_dict={"colour": colormap},
                color_by="colour",
                blending="translucent",
            )

        show_tracks(viewer, None, data, features, colormap, new)


def measure(mode: str, cine: dict, n_labels: int) -> dict:
    import napari

    from napari_dustrack._widgets import _track_window

    _track_window.THRESHOLD = 10**12 if mode == "all rows" else 20_000
    n = cine["n"]
    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1280, 800)
    viewer.add_image(cine["data"], name="long cine", contrast_limits=(0, 255), multiscale=False)
    add_layers(viewer, n, n_labels)
    rows = [len(viewer.layers[name].data) for name in LAYERS]
    native = viewer.window._qt_viewer.canvas.native
    bench_gui.wait(1000)
    walls, cpus = [], []
    for f in np.linspace(0, n - 1, 20).astype(int):
        viewer.dims.set_current_step(0, int(f))
        bench_gui.wait(400)  # the window moves (on its timer) before the timed paint
        t0, c0 = time.perf_counter(), time.thread_time()
        native.repaint()  # paintGL, synchronously
        walls.append(1000 * (time.perf_counter() - t0))
        cpus.append(1000 * (time.thread_time() - c0))
    dog = bench_gui.Watchdog()
    with dog.during("scrub"):
        step = max(1, n // 150)
        for f in range(0, min(n, 150 * step), step):
            viewer.dims.set_current_step(0, f)
            bench_gui.wait(30)
        bench_gui.wait(500)
    dog.timer.stop()
    viewer.close()
    late = np.asarray(dog.late["scrub"])
    return {
        "rows": rows,
        "paint": (np.median(walls), np.percentile(walls, 95)),
        "paint_cpu": (np.median(cpus), np.percentile(cpus, 95)),
        "scrub": (np.percentile(late, 95), late.max()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=8)
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, __file__]
        return subprocess.call([*cmd, *sys.argv[1:]])
    from napari._qt.qt_event_loop import get_qapp

    get_qapp()
    cine = bench_gui.long_cine(n=args.frames, n_labels=args.labels)
    results = {mode: measure(mode, cine, args.labels) for mode in ("all rows", "windowed")}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average after the run: {load}; {os.cpu_count()} CPUs.\n")
    print(
        "| mode | rows per layer | paint median / p95 (ms) | paint CPU median / p95 (ms) "
        "| scrub p95 / max late (ms) |"
    )
    print("|---|---|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {max(r['rows']):,} | {r['paint'][0]:.0f} / {r['paint'][1]:.0f} "
            f"| {r['paint_cpu'][0]:.0f} / {r['paint_cpu'][1]:.0f} "
            f"| {r['scrub'][0]:.0f} / {r['scrub'][1]:.0f} |"
        )
    whole, windowed = results["all rows"], results["windowed"]
    print(
        f"\npaint median: windowed / all rows = {windowed['paint'][0] / whole['paint'][0]:.2f}; "
        f"scrub p95: {windowed['scrub'][0] / max(whole['scrub'][0], 1e-9):.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
