"""Annotation speed: step-and-adjust carry, model edits with autosave, widget redraws.

Usage::

    python benchmarks/bench_annotate.py                  # model + carry timings
    xvfb-run -a python benchmarks/bench_annotate.py --gui  # also the napari widget (a display)

What is measured (medians over repeats, plus p90 where it matters):

* **carry** — one step of step-and-adjust as the widget runs it in its worker thread: read the
  next frame of an H.264 cine (sequential decode, no frame cache), grayscale, LK forward for
  every label plus the forward-backward check. On a 600x800 and a 128x128 simulated cardiac
  cine, 6 labels. The widget would run it inline only if it stayed under ~50 ms.
* **edit** — ``AnnotationSession.set_point`` on a session holding 3,000 frames x 6 labels
  (18,000 points) with autosave on: the edit, its undo record and the journal line flushed to
  the OS (what makes a SIGKILL right after the edit lose nothing).
* **fill apply** — storing an 18,000-point optical-flow result (one undoable edit, journaled).
* **snapshot** — the debounced background write of points.csv + labels.json for 18,000 points.
* with ``--gui``: the Annotate widget's redraw after one click on an existing point, a click
  creating a new point, a deletion (row-level updates of the Points layer), and a full redraw
  of 18,000 points; the tracks rebuild.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _stats(samples) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {statistics.median(s):8.2f}   p90 {p90:8.2f}"


def bench_carry(shape, n_steps: int, tmp: Path) -> tuple[list[float], list[float], list[float]]:
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.simulate import simulate, write_simulation
    from napari_dustrack.tracking.flow import step_points
    from napari_dustrack.tracking.lk import LKParams, to_gray_u8

    sim = simulate("cardiac", n_frames=n_steps + 1, seed=0, shape=shape)
    paths = write_simulation(sim, tmp / f"{shape[0]}x{shape[1]}")
    truth = sim.truth
    xy = truth[truth["frame"] == 0][["x", "y"]].to_numpy()[:6]
    params = LKParams()
    cine = open_cine(paths["video"], fill_cache=False)
    try:
        img0 = to_gray_u8(np.asarray(cine[0]))
        total, cpu, decode = [], [], []
        for f in range(1, n_steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            img1 = to_gray_u8(np.asarray(cine[f]))
            t1 = time.perf_counter()
            new, _conf = step_points(img0, img1, xy, params=params)
            total.append(1000 * (time.perf_counter() - t0))
            cpu.append(1000 * (time.process_time() - c0))
            decode.append(1000 * (t1 - t0))
            img0, xy = img1, np.where(np.isfinite(new), new, xy)
    finally:
        cine.close()
    return total, cpu, decode


def big_session(video: Path, n_frames=3000, n_labels=6, delay=1.0):
    from napari_dustrack.session import open_session

    session = open_session(video, n_frames=n_frames, delay=delay)
    labels = [f"point{i}" for i in range(n_labels)]
    for name in labels:
        session.add_label(name)
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    session.apply_flow(
        rng.uniform(0, 500, (n_frames, n_labels, 2)),
        labels,
        confidence=rng.uniform(0, 1, (n_frames, n_labels)),
    )
    return session, labels, 1000 * (time.perf_counter() - t)


def bench_model(tmp: Path) -> None:
    session, labels, apply_ms = big_session(tmp / "model.mp4", delay=3600)
    rng = np.random.default_rng(1)
    edits = []
    for _ in range(300):
        f, j = int(rng.integers(0, 3000)), int(rng.integers(0, len(labels)))
        t = time.perf_counter()
        session.set_point(f, labels[j], float(rng.uniform(0, 500)), float(rng.uniform(0, 500)))
        edits.append(1000 * (time.perf_counter() - t))
    snaps = []
    for _ in range(5):
        session.set_point(0, labels[0], float(rng.uniform(0, 500)), 1.0)
        t = time.perf_counter()
        session.autosaver.save_now()
        snaps.append(1000 * (time.perf_counter() - t))
    session.close()
    print(f"edit (set_point + undo record + journal flush), 18k points (ms): {_stats(edits)}")
    print(f"fill apply: store 18,000 flow points as one edit (ms):          {apply_ms:8.1f}")
    print(f"snapshot: points.csv + labels.json, 18k points (ms):            {_stats(snaps)}")


def bench_gui(tmp: Path) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dustrack._widgets.annotate import AnnotateWidget
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate("cardiac", n_frames=20, seed=0, shape=(128, 128))
    paths = write_simulation(sim, tmp / "gui")
    viewer = napari.Viewer(show=False)
    viewer.open(str(paths["video"]), plugin="napari-dustrack")
    widget = AnnotateWidget(viewer)
    app = QApplication.instance()
    while widget.session is None:
        app.processEvents()
    session = widget.session
    session.n_frames = 3000  # a long cine's worth of points on the short one
    labels = [f"point{i}" for i in range(6)]
    for name in labels:
        widget.add_label(name)
    t = time.perf_counter()
    session.apply_flow(np.random.default_rng(0).uniform(0, 127, (3000, 6, 2)), labels)
    full_after_fill = 1000 * (time.perf_counter() - t)
    rng = np.random.default_rng(2)
    move, new, delete = [], [], []
    for _ in range(15):
        f = int(rng.integers(0, 3000))
        t = time.perf_counter()
        widget.place(f, labels[0], 10.0, 10.0)  # existing point: moved
        move.append(1000 * (time.perf_counter() - t))
        session.delete_point(f, labels[1])
        t = time.perf_counter()
        widget.place(f, labels[1], 20.0, 20.0)  # new row
        new.append(1000 * (time.perf_counter() - t))
        t = time.perf_counter()
        session.delete_point(f, labels[2])
        delete.append(1000 * (time.perf_counter() - t))
    redraw = []
    for _ in range(3):
        t = time.perf_counter()
        widget.refresh()
        redraw.append(1000 * (time.perf_counter() - t))
    tracks = []
    for _ in range(3):
        t = time.perf_counter()
        widget.refresh_tracks()
        tracks.append(1000 * (time.perf_counter() - t))
    print(f"widget: click moving an existing point, 18k points (ms):        {_stats(move)}")
    print(f"widget: click placing a new point (ms):                         {_stats(new)}")
    print(f"widget: deleting a point (ms):                                  {_stats(delete)}")
    print(f"widget: store + full redraw after an 18k-point fill (ms):       {full_after_fill:8.1f}")
    print(f"widget: full redraw of 18k points (ms):                         {_stats(redraw)}")
    print(f"widget: tracks rebuild, 18k points (debounced 300 ms) (ms):     {_stats(tracks)}")
    widget.unbind()
    viewer.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gui", action="store_true", help="also time the napari widget")
    parser.add_argument("--steps", type=int, default=40, help="carry steps per cine size")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for shape in ((600, 800), (128, 128)):
            total, cpu, decode = bench_carry(shape, args.steps, tmp)
            print(f"carry {shape[0]}x{shape[1]}, 6 labels: wall (ms):  {_stats(total)}")
            print(f"carry {shape[0]}x{shape[1]}, 6 labels: CPU (ms):   {_stats(cpu)}")
            print(f"carry {shape[0]}x{shape[1]}: of which decode (ms): {_stats(decode)}")
        bench_model(tmp)
        if args.gui:
            bench_gui(tmp)


if __name__ == "__main__":
    main()
