"""Take the tutorial's screenshots from a real napari viewer, following the tutorial's steps.

Run under a display (or Xvfb): ``xvfb-run -a nice python docs/make_screenshots.py``. Writes
``docs/images/*.png``. The steps are the tutorial's, driven through the widgets' own methods
(the same ones their buttons and keys call), with a training run of a few minutes (a shorter
one gives a poor model and a misleading review step).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_dustrack._napari.geometry import cine_geometry
from napari_dustrack.measure import Measure
from napari_dustrack.simulate import simulate, write_simulation

HERE = Path(__file__).resolve().parent
LABELS = ["anterior_endo", "anterior_epi", "inferior_endo", "inferior_epi"]
KEYFRAMES = (0, 20, 40, 60)


def wait_until(done, timeout: float = 900.0) -> None:
    """Keep the GUI running until ``done()`` is true."""
    t0 = time.monotonic()
    while not done():
        QApplication.processEvents()
        time.sleep(0.05)
        if time.monotonic() - t0 > timeout:
            raise TimeoutError("the step did not finish in time")
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.02)


def shot(viewer, name: str, out: Path, toasts: bool = False) -> None:
    """Save the window as ``<name>.png`` (notification toasts closed unless ``toasts``)."""
    if not toasts:
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        wait_until(lambda: True)
    QApplication.processEvents()
    viewer.screenshot(str(out / f"{name}.png"), canvas_only=False, flash=False)
    print(f"wrote {out / name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(HERE / "images"))
    parser.add_argument("--minutes", type=float, default=3.0, help="training time")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="dustrack-tutorial-"))
    sim = simulate("cardiac", n_frames=100, seed=0)
    video = write_simulation(sim, work)["video"]
    truth = sim.truth

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1280, 800)  # a laptop screen: the dock fits beside the canvas
    (cine,) = viewer.open(str(video), plugin="napari-dustrack")
    # An MP4 does not say how large a pixel is: give the layer its size in mm (as a user does
    # in napari's console); the plugin's layers, the scale bar and the measures follow it.
    geometry = cine_geometry(
        {"fps": sim.fps, "pixel_spacing": sim.pixel_spacing, "n_frames": len(sim.frames)}
    )
    cine.scale, cine.units = geometry["scale"], geometry["units"]
    viewer.reset_view()
    viewer.scale_bar.visible = True  # View > Scale Bar
    _, dock = viewer.window.add_plugin_dock_widget("napari-dustrack", "DUSTrack")
    annotate = dock.pages["Annotate"]

    # 1. Name the points and click them on a few keyframes.
    for label in LABELS:
        annotate.add_label(label)
    for frame in KEYFRAMES:
        rows = truth[(truth.frame == frame) & truth.label.isin(LABELS)]
        for row in rows.itertuples():
            annotate.place(frame, row.label, row.x, row.y)
    annotate.go_to(KEYFRAMES[1])
    shot(viewer, "01-keyframes", out)

    # 2. Fill between keyframes with optical flow, scrub, accept.
    annotate.fill_between()
    wait_until(lambda: not annotate.taskbar.busy)
    annotate.go_to(30)
    shot(viewer, "02-filled", out, toasts=True)  # the notification of unreliable flow
    annotate.accept_range(KEYFRAMES[0], KEYFRAMES[-1])

    # 3. Train, predict, and list the frames to review.
    model = dock.show_page("Model")
    model.minutes.setValue(args.minutes)
    model.train()
    wait_until(lambda: model.worker is None)
    model.predict()
    wait_until(
        lambda: model.review_table is not None and model.worker is None and not model.output.busy
    )
    annotate.go_to(80)
    shot(viewer, "03-model", out)

    # 3b. Review: the worst frame (G), one prediction corrected by dragging, this frame accepted.
    frame = annotate.next_to_review()
    predicted = model.prediction_table()
    here = predicted[predicted.frame == frame].set_index("label")
    true = truth[truth.frame == frame].set_index("label").loc[here.index]
    error = ((here.x - true.x) ** 2 + (here.y - true.y) ** 2) ** 0.5
    label = error.idxmax()  # the model's worst point on this frame is dragged where it belongs
    annotate.move(frame, label, true.x[label], true.y[label], action="correct")  # what a drag calls
    annotate.accept_frame_predictions()
    print(f"review: frame {frame}, {label} moved {error[label]:.1f} px")
    shot(viewer, "03b-review", out)

    # 4. Smooth the predictions.
    smooth = dock.show_page("Smooth")
    index = smooth.source.findText("model")
    if index >= 0:
        smooth.source.setCurrentIndex(index)
    smooth.run()
    wait_until(lambda: not smooth.taskbar.busy and not smooth.output.busy)
    shot(viewer, "04-smoothed", out)

    # 5. Measure wall thickness over time.
    measure = dock.show_page("Measure")
    measure.add_measure(Measure("anterior wall thickness", "distance", LABELS[:2]))
    wait_until(lambda: measure.series and not measure.drawing)
    area = dock.tabs.currentWidget()  # the page's scroll area: show the plots, not the form
    area.verticalScrollBar().setValue(area.verticalScrollBar().maximum())
    shot(viewer, "05-measure", out)
    viewer.close()


if __name__ == "__main__":
    main()
