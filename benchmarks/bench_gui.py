"""GUI responsiveness: how late napari's event loop runs while a user works through the loop.

Usage (one command; re-runs itself under ``xvfb-run`` when there is no display)::

    python benchmarks/bench_gui.py                      # short and long cine, ~5 min
    python benchmarks/bench_gui.py --only short --out docs/benchmarks/gui-short.md
    python benchmarks/bench_gui.py --only long --scrub-only   # the scrubs alone, ~1.5 min

A 20 ms ``QTimer`` (the watchdog) runs through the whole session; each tick records how late it
fired (interval - 20 ms). Lateness is attributed to the action running at the time. Reported:
p95 and max lateness per action (targets: p95 <= 100 ms, max <= 250 ms).

The session, as a user drives it in a shown napari viewer with the DUSTrack dock:

* **jump** — going to each of the 3 keyframes (napari reads a frame far from the last one);
* **click** — real mouse clicks on the canvas placing every label on those keyframes;
* **step** — 30 presses of Right, then 10 with step-and-adjust on (LK carries the points);
* **undo** — 5 x Ctrl+Z then 5 x Ctrl+Shift+Z;
* **fill** — F (LK + RSTC between the keyframes in a worker thread) until its result is applied;
* **accept** — R over the filled range, then "accept confident" predictions of every frame;
* **predict apply** — predictions for every frame arriving in batches of 32 frames every 50 ms
  through the Model tab's message handler (the same path as a dask worker's messages; the
  worker process itself is not run, its cost is not on the GUI thread), then the tracks;
* **smooth apply** — the Smooth tab on the ``model`` layer (worker thread), its result applied
  (on the long cine only the result is applied: smoothing 10,000 1080p frames takes minutes);
* **measure show** — the Measure tab brought to the front until its plots of every layer and
  frame are computed and drawn;
* **scrub** — 150 frame changes 30 ms apart with the Measure tab shown (plots of every frame);
  two floors of the same scrub: **scrub (image only)**, before the dock opens (napari and the
  cine alone), and **scrub (Measure hidden)**, with every plugin layer but another tab shown.

Cines: *short* — the simulator's cardiac scenario, 300 frames at 256x256, 3 labels, written to
MP4 and opened through the plugin's reader; *long* — 10,000 frames at 1080p, 8 labels, a lazy
dask array whose frames are generated on demand (a textured pattern moving with the labels).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TICK_MS = 20
TARGET_P95, TARGET_MAX = 100.0, 250.0
ACTIONS = (
    "jump",
    "click",
    "step",
    "undo",
    "fill",
    "accept",
    "predict apply",
    "smooth apply",
    "scrub (image only)",
    "scrub (Measure hidden)",
    "measure show",
    "scrub",
)


class Watchdog:
    """Records event-loop lateness per action."""

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.action = "idle"
        self.late: dict[str, list[float]] = {}
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setInterval(TICK_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self):
        now = time.perf_counter()
        late = max(0.0, (now - self._last) * 1000 - TICK_MS)
        self._last = now
        self.late.setdefault(self.action, []).append(late)

    def during(self, action):
        watchdog = self

        class _Ctx:
            def __enter__(self):
                watchdog._tick()  # close the previous period
                watchdog.action = action

            def __exit__(self, *exc):
                watchdog._tick()
                watchdog.action = "idle"

        return _Ctx()


def wait(ms: float) -> None:
    """Run the event loop for ``ms`` (the watchdog keeps ticking)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(ms), loop.quit)
    loop.exec_()


def wait_until(cond, timeout_s: float = 600.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError("benchmark step did not finish")
        wait(20)


# ----------------------------------------------------------------------------- cines
def short_cine(tmp: Path):
    from napari_dustrack.io.table import read_points_csv, to_array
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate("cardiac", n_frames=300, shape=(256, 256), seed=1)
    paths = write_simulation(sim, tmp / "short")
    truth_table = read_points_csv(paths["truth"])
    labels = list(dict.fromkeys(truth_table["label"]))[:3]
    truth, _ = to_array(truth_table, labels, 300)
    return {"path": paths["video"], "labels": labels, "truth": truth, "n": 300}


class LazyCine:
    """A (n, h, w) uint8 array-like whose frames are made on demand: a texture shifted along a
    slow sine (what a frame-cache-backed reader gives napari: one frame per index, in ms)."""

    def __init__(self, n, shape, pad=16):
        rng = np.random.default_rng(0)
        texture = rng.integers(0, 255, (shape[0] + 2 * pad, shape[1] + 2 * pad), dtype=np.uint8)
        self.texture = (texture // 2 + np.roll(texture, 3, axis=1) // 2).astype(np.uint8)
        self.shape, self.dtype, self.ndim, self.pad = (n, *shape), np.dtype(np.uint8), 3, pad

    def __len__(self):
        return self.shape[0]

    @staticmethod
    def shift(f):
        return np.round(8 * np.sin(2 * np.pi * np.asarray(f) / 100.0)).astype(int)

    def frame(self, f: int) -> np.ndarray:
        s, p = int(self.shift(f)), self.pad
        return self.texture[p + s : p + s + self.shape[1], p : p + self.shape[2]]

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(int(first))[rest] if rest else self.frame(int(first))
        frames = range(*first.indices(self.shape[0])) if isinstance(first, slice) else first
        return np.stack([self.frame(int(f)) for f in frames])[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a 10,000-frame 1080p cine is never read whole")


def long_cine(n=10_000, shape=(1080, 1920), n_labels=8):
    """The long cine: 10,000 frames at 1080p, 8 labels following the texture's motion."""
    data = LazyCine(n, shape)
    base = np.c_[np.linspace(300, 1600, n_labels), np.linspace(300, 800, n_labels)]
    # Frame f shows the texture from row pad + shift(f), so its content moves by -shift(f) in y.
    truth = base[None] - np.c_[np.zeros(n), LazyCine.shift(np.arange(n))][:, None, :]
    labels = [f"p{i + 1}" for i in range(n_labels)]
    return {"data": data, "labels": labels, "truth": truth.astype(float), "n": n}


# ----------------------------------------------------------------------------- session
def canvas_point(viewer, layer, x, y):
    from qtpy.QtCore import QPoint

    view = viewer.window._qt_viewer.canvas.view
    sy, sx = layer.scale[-2:]
    pos = (view.transform * view.scene.transform).map([x * sx, y * sy, 0, 1])
    return QPoint(int(round(pos[0])), int(round(pos[1])))


def key(viewer, k, modifier=None):
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    QTest.keyClick(viewer.window._qt_viewer.canvas.native, k, modifier or Qt.NoModifier)


def scrub(viewer, n: int, dog: Watchdog, action: str, before=None) -> None:
    """150 frame changes 30 ms apart across the cine (``before``: what the user does first,
    e.g. showing the Measure tab, counted in the action)."""
    viewer.dims.set_current_step(0, 0)
    wait(300)
    with dog.during(action):
        if before is not None:
            before()
        step = max(1, n // 150)
        for f in range(0, min(n, 150 * step), step):
            viewer.dims.set_current_step(0, f)
            wait(30)
        wait(500)


def feed_smoothed(smooth, labels, cine_layer, out, conf) -> None:
    """A smoothed result of the ``model`` layer applied as the Smooth tab applies its worker's:
    the ``smoothed`` layers filled, the model's layers hidden (superseded)."""
    smooth.output.begin(labels, len(out), cine_layer)
    smooth.output.put(np.arange(len(out)), out, conf)
    smooth.output.finish()
    smooth.hide_model()


def show_measure(dock, dog: Watchdog) -> None:
    """The Measure tab brought to the front, until its plots are computed and drawn."""
    with dog.during("measure show"):
        page = dock.pages["Measure"]
        drawn = page.redraws
        dock.show_page("Measure")
        wait_until(lambda: page.redraws > drawn and not page.drawing)
        wait(300)


def open_viewer(cine: dict):
    """A shown 1280 x 800 napari viewer with the cine open (through the plugin's reader, or the
    long cine's lazy array with the metadata the reader would give it)."""
    import napari

    viewer = napari.Viewer()
    viewer.window._qt_window.resize(1280, 800)
    if "path" in cine:
        viewer.open(str(cine["path"]), plugin="napari-dustrack")
    else:
        viewer.add_image(
            cine["data"],
            name="long cine",
            contrast_limits=(0, 255),
            multiscale=False,
            metadata={
                "dustrack": {
                    "fps": 50.0,
                    "n_frames": cine["n"],
                    "kind": "video",
                    "pixel_spacing": None,
                }
            },
        )
    return viewer


def feed_predictions(model, cine_layer, labels, pred, conf, pause_ms: float) -> None:
    """Predictions for every frame arriving as a dask worker's messages do, 32 frames at a time
    (the Model tab's own handler; the worker process itself is not run)."""
    n = len(pred)
    model.output.begin(labels, n, cine_layer)
    for start in range(0, n, 32):
        frames = np.arange(start, min(start + 32, n))
        model._on_message(
            {
                "kind": "result",
                "frames": frames.tolist(),
                "xy": pred[frames].tolist(),
                "confidence": conf[frames].tolist(),
            }
        )
        wait(pause_ms)


def session(name: str, cine: dict, dog: Watchdog, smooth_mode: str) -> None:
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from napari_dustrack._widgets.main import DustrackWidget

    viewer = open_viewer(cine)
    wait(500)
    scrub(viewer, cine["n"], dog, "scrub (image only)")
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    annotate, model, smooth, measure = (
        dock.pages[k] for k in ("Annotate", "Model", "Smooth", "Measure")
    )
    wait_until(lambda: annotate.session is not None)
    wait(500)
    labels, truth, n = cine["labels"], cine["truth"], cine["n"]
    for lab in labels:
        annotate.add_label(lab)
    layer = annotate.points_layer
    native = viewer.window._qt_viewer.canvas.native
    keyframes = (0, 40, 80)

    for f in keyframes:
        with dog.during("jump"):  # a random jump: the reader decodes from the last keyframe
            annotate.go_to(f)
            wait(100)
        with dog.during("click"):
            for j in range(len(labels)):
                annotate.pick_label_index(j)
                QTest.mouseClick(
                    native, Qt.LeftButton, pos=canvas_point(viewer, layer, *truth[f, j])
                )
                wait(60)
    with dog.during("step"):
        annotate.go_to(0)
        for _ in range(30):
            key(viewer, Qt.Key_Right)
            wait(40)
        annotate.set_step_adjust(True)
        for _ in range(10):
            key(viewer, Qt.Key_Right)
            wait(60)
        wait_until(lambda: not annotate.carrying)
        annotate.set_step_adjust(False)
    with dog.during("undo"):
        for mod in (Qt.ControlModifier, Qt.ControlModifier | Qt.ShiftModifier):
            for _ in range(5):
                key(viewer, Qt.Key_Z, mod)
                wait(60)
    with dog.during("fill"):
        key(viewer, Qt.Key_F)
        wait(100)
        wait_until(lambda: not annotate.taskbar.busy)
        wait(600)  # the tracks rebuild after edits pause
    with dog.during("accept"):
        annotate.from_spin.setValue(0)
        annotate.to_spin.setValue(keyframes[-1])
        key(viewer, Qt.Key_R)
        wait(600)
    with dog.during("predict apply"):
        rng = np.random.default_rng(1)
        pred = truth + rng.normal(0, 1.0, truth.shape)
        conf = rng.uniform(0.5, 1.0, truth.shape[:2])
        feed_predictions(
            model, annotate.cine_layer, labels, pred, conf, 50 if name == "short" else 5
        )
        model.output.finish()
        wait_until(lambda: not model.output.busy)
        model.viewer.layers["model"].metadata["review_frames"] = [int(f) for f in rng.choice(n, 20)]
    with dog.during("accept"):
        model.min_conf.setValue(0.9)
        model.accept_confident()
        wait(100)
        wait_until(lambda: not annotate.accepting)
        wait(600)
    with dog.during("smooth apply"):
        if smooth_mode:  # the Smooth tab, smoothing in its worker thread
            smooth.source.setCurrentText("model")
            smooth.mode.setCurrentText(smooth_mode)
            smooth.frames.setValue(9)
            smooth.run()
            wait_until(lambda: not smooth.taskbar.busy)
        else:  # optical-flow smoothing of 10,000 1080p frames takes minutes: its result only
            feed_smoothed(
                smooth, labels, annotate.cine_layer, truth + rng.normal(0, 0.3, truth.shape), conf
            )
        wait_until(lambda: not smooth.output.busy)
        wait(300)
    scrub(viewer, n, dog, "scrub (Measure hidden)")
    show_measure(dock, dog)
    scrub(viewer, n, dog, "scrub")
    annotate.unbind()
    viewer.close()


def rerun_under_xvfb(script: str) -> int | None:
    """Re-run ``script`` with this process's arguments under ``xvfb-run`` when there is no
    display: its exit status, or None when this process has a display (or is the re-run)."""
    if os.environ.get("DISPLAY") or not shutil.which("xvfb-run") or "BENCH_GUI_XVFB" in os.environ:
        return None
    env = dict(os.environ, BENCH_GUI_XVFB="1")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, script, *sys.argv[1:]]
    return subprocess.call(cmd, env=env)


def scene(viewer, cine: dict, *, keyframes=(0, 40, 80)):
    """The plugin's layers as the session leaves them before its scrubs, built without the
    clicks, steps and fill (for the scrub-only run and profile_scrub.py): the DUSTrack dock,
    every label set on ``keyframes``, predictions for every frame, the confident ones accepted,
    a smoothed result. Returns the dock."""
    from napari_dustrack._widgets.main import DustrackWidget

    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    annotate, model, smooth = (dock.pages[k] for k in ("Annotate", "Model", "Smooth"))
    wait_until(lambda: annotate.session is not None)
    labels, truth = cine["labels"], cine["truth"]
    for lab in labels:
        annotate.add_label(lab)
    for f in keyframes:
        for j, lab in enumerate(labels):
            annotate.session.set_point(f, lab, *truth[f, j])
    wait(300)
    rng = np.random.default_rng(1)
    pred = truth + rng.normal(0, 1.0, truth.shape)
    conf = rng.uniform(0.5, 1.0, truth.shape[:2])
    feed_predictions(model, annotate.cine_layer, labels, pred, conf, 5)
    model.output.finish()
    wait_until(lambda: not model.output.busy)
    model.min_conf.setValue(0.9)
    model.accept_confident()
    wait(100)
    wait_until(lambda: not annotate.accepting)
    feed_smoothed(
        smooth, labels, annotate.cine_layer, truth + rng.normal(0, 0.3, truth.shape), conf
    )
    wait_until(lambda: not smooth.output.busy)
    dock.show_page("Smooth")
    wait(600)
    return dock


def scrubs_only(cine: dict, dog: Watchdog) -> None:
    """The session's three scrubs without the rest of it: the image alone, then the layers the
    session leaves (:func:`scene`) with another tab shown, then with the Measure tab shown."""
    viewer = open_viewer(cine)
    wait(500)
    scrub(viewer, cine["n"], dog, "scrub (image only)")
    dock = scene(viewer, cine)
    scrub(viewer, cine["n"], dog, "scrub (Measure hidden)")
    show_measure(dock, dog)
    scrub(viewer, cine["n"], dog, "scrub")
    dock.pages["Annotate"].unbind()
    viewer.close()


def report(results: dict, load: str) -> str:
    lines = [
        f"Load average during the run: {load}; {os.cpu_count()} CPUs.",
        "",
        "| cine | action | ticks | p95 late (ms) | max late (ms) | target met |",
        "|---|---|---|---|---|---|",
    ]
    for cine, late in results.items():
        for action in ACTIONS:
            values = np.asarray(late.get(action, []))
            if not len(values):
                continue
            p95, mx = np.percentile(values, 95), values.max()
            ok = "yes" if p95 <= TARGET_P95 and mx <= TARGET_MAX else "**no**"
            lines.append(f"| {cine} | {action} | {len(values)} | {p95:.0f} | {mx:.0f} | {ok} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("short", "long"))
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument(
        "--scrub-only",
        action="store_true",
        help="only the three scrubs, on the layers the session would leave (built directly)",
    )
    args = parser.parse_args(argv)
    status = rerun_under_xvfb(__file__)
    if status is not None:
        return status
    import napari  # noqa: F401
    from napari._qt.qt_event_loop import get_qapp
    from qtpy.QtWidgets import QApplication  # noqa: F401 - napari creates the app

    get_qapp()
    results = {}
    tmp = tempfile.mkdtemp(prefix="bench_gui-")  # left for the frame cache's exit handler
    for name in ("short", "long"):
        if args.only and name != args.only:
            continue
        cine = short_cine(Path(tmp)) if name == "short" else long_cine()
        dog = Watchdog()
        t0 = time.perf_counter()
        if args.scrub_only:
            scrubs_only(cine, dog)
        else:
            session(name, cine, dog, "fusion" if name == "short" else None)
        dog.timer.stop()
        print(f"{name}: session {time.perf_counter() - t0:.0f} s", flush=True)
        results[f"{name} ({cine['n']} frames, {len(cine['labels'])} labels)"] = dog.late
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    table = report(results, load)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
