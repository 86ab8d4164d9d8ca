"""Helpers shared by the dock widgets: finding layers, the current frame, background tasks."""

from __future__ import annotations

import atexit
import threading
import weakref
from collections.abc import Callable
from typing import Any

from napari.layers import Image, Points, Tracks
from napari.qt.threading import create_worker
from napari.utils.colormaps import Colormap
from napari.utils.notifications import Notification, notification_manager, show_error, show_info
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from ..errors import Cancelled, DustrackError, user_message
from ..io.colours import label_hex, track_colormap
from ._track_window import seed_rows, show_rows

META = "dustrack"
ANNOTATIONS = "annotations"
REVIEW_KEY = "review_frames"  # metadata of a prediction layer: its frames to review, ranked
PAGE_WIDTH = 420  # a dock page fits beside the canvas on a 1280-px screen
REVEAL_MS = 40  # a layer added hidden is shown this much later (see add_under_annotations)
_pages: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_cancellers: weakref.WeakSet = weakref.WeakSet()  # objects whose cancel() stops running work


def is_cine(layer) -> bool:
    """A cine image layer (the plugin's other layers carry a ``role`` in the same metadata)."""
    info = layer.metadata.get(META) if isinstance(layer, Image) else None
    return isinstance(info, dict) and "role" not in info


PRELOAD = (
    "napari_dustrack.tracking.flow",
    "napari_dustrack.tracking.smoothing",
    "napari_dustrack.tracking.review",
    "napari_dustrack.measure",
)


def preload_modules() -> threading.Thread:
    """Import the algorithm modules in a background thread, so that the first Fill or Smooth
    does not spend seconds importing on the GUI thread."""
    import importlib

    def load():
        for name in PRELOAD:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the action that needs it will report it
                pass

    thread = threading.Thread(target=load, name="dustrack-preload", daemon=True)
    thread.start()
    return thread


def cancel_on_exit(obj) -> None:
    """Call ``obj.cancel()`` when Python exits, before waiting for the worker threads."""
    _cancellers.add(obj)


def finish_workers(timeout_ms: int = 20_000) -> bool:
    """Cancel the running tasks, ask napari's workers to quit and wait (up to ``timeout_ms``)
    for every worker thread to end; True when they all did.

    Runs when Python exits: PyQt then deletes the Qt objects through which a worker signals,
    and a worker thread still running at that moment aborts the process."""
    for obj in list(_cancellers):
        try:
            obj.cancel()
        except RuntimeError:  # its Qt side is already deleted: nothing of it runs
            pass
    from napari.qt.threading import WorkerBase

    try:
        WorkerBase.await_workers(msecs=timeout_ms)
    except RuntimeError:
        return False
    return True


atexit.register(finish_workers)


def register_page(viewer, role: str, widget) -> None:
    """Let the other tabs of ``viewer`` find ``widget`` (held weakly) under ``role``."""
    _pages[(id(viewer), role)] = widget


def page(viewer, role: str):
    """The widget registered under ``role`` for ``viewer``, or None."""
    return _pages.get((id(viewer), role))


def role_of(layer) -> str | None:
    """The plugin role of a layer (``annotate``, ``prediction``...), None for others."""
    info = layer.metadata.get(META) if hasattr(layer, "metadata") else None
    return info.get("role") if isinstance(info, dict) else None


def keep_annotating(viewer) -> None:
    """Put the ``annotations`` layer on top and make it the active one (keys and clicks act on
    it), e.g. after Predict or Smooth added layers."""
    if ANNOTATIONS not in viewer.layers:
        return
    layer = viewer.layers[ANNOTATIONS]
    index = viewer.layers.index(layer)
    if index != len(viewer.layers) - 1:
        viewer.layers.move(index, len(viewer.layers))
    viewer.layers.selection.active = layer


def add_under_annotations(viewer, layer, *, staged: bool = False) -> None:
    """Add ``layer`` just under the ``annotations`` layer, which stays the active one.

    One insert, where napari's ``add_layer`` then :func:`keep_annotating` make three layer-list
    changes (add and select the new layer, move the annotations back on top, select them
    again), each redoing the layer list's widgets and styles: tens of ms beside long layers.

    ``staged``: the layer is inserted hidden and shown :data:`REVEAL_MS` later. napari builds a
    new layer's visual, controls and list row when it is inserted, and vispy compiles its
    shaders when it is first drawn; on software OpenGL each costs 0.1-0.2 s, and in the same
    event-loop turn they stalled the viewer 0.3-0.4 s (``benchmarks/profile_apply.py
    --first-layer``). Hidden, it is not drawn until the later turn.
    """
    layers = viewer.layers
    index = layers.index(layers[ANNOTATIONS]) if ANNOTATIONS in layers else len(layers)
    if staged:
        layer.visible = False
    activate = getattr(layers, "_activate_on_insert", None)  # napari selects what is inserted
    if activate is not None:
        layers._activate_on_insert = False
    try:
        layers.insert(index, layer)
    finally:
        if activate is not None:
            layers._activate_on_insert = activate
    keep_annotating(viewer)
    if staged:
        reveal_later(viewer, layer)


def reveal_later(viewer, layer, ms: int = REVEAL_MS) -> None:
    """Show ``layer`` in ``ms`` (a later event-loop turn), if it is still in ``viewer``."""
    ref = weakref.ref(layer)

    def reveal():
        shown = ref()
        if shown is not None and shown in viewer.layers:
            shown.visible = True

    QTimer.singleShot(ms, reveal)


def label_colours(viewer, labels) -> dict[str, str]:
    """``{label: "#rrggbb"}``: the annotation session's colours, else the palette in order."""
    annotate = page(viewer, "annotate")
    session = getattr(annotate, "session", None)
    saved = {lab.name: lab.colour for lab in session.label_items} if session is not None else {}
    if not saved:
        path = cine_info(find_cine_layer(viewer)).get("path")
        if path:
            from ..io import sidecar

            try:
                items = sidecar.read_labels(sidecar.sidecar_dir(path))
            except DustrackError:
                items = None  # a damaged label file is the Annotate tab's to report
            saved = {
                i["name"]: i["colour"]
                for i in (items[0] if items else [])
                if str(i.get("colour", "")).startswith("#")
            }
    labels = list(labels)
    return label_hex(labels + [lab for lab in saved if lab not in labels], saved)


def notify(message: str, actions=(), severity: str = "warning") -> None:
    """A napari notification with buttons: ``actions`` are ``(text, callable)`` pairs."""
    notification_manager.dispatch(Notification(message, severity=severity, actions=tuple(actions)))


def label_colormap(hex_colours, name: str) -> Colormap:
    """A stepwise colormap giving track ``i + 1`` the colour ``hex_colours[i]`` (colour a Tracks
    layer by the ``colour`` feature of :func:`napari_dustrack.io.colours.track_colour_values`)."""
    rgba, controls = track_colormap(list(hex_colours))
    return Colormap(rgba, controls=controls, interpolation="zero", name=name)


def show_tracks(
    viewer, layer, data, features, colormap, new, *, staged: bool = False
) -> Tracks | None:
    """Show the rows ``data`` (track, frame, y, x) of a point table as a Tracks layer.

    ``layer`` (the Tracks layer shown now, or None) is updated in place; otherwise ``new`` (a
    Tracks layer, or a callable making one from ``(data, features)``) is added, under the
    annotations. A long table is shown through a window of frames around the current frame
    (:mod:`._track_window`). No rows: the layer is removed. Returns the layer shown, or None.
    ``staged``: a new layer appears over two event-loop turns (:func:`add_under_annotations`).
    """
    if layer is not None and layer not in viewer.layers:
        layer = None
    if len(data) == 0:
        if layer is not None:
            viewer.layers.remove(layer)
        return None
    if isinstance(layer, Tracks):
        show_rows(viewer, layer, data, features, colormap)
        return layer
    made = new(*seed_rows(data, features)) if callable(new) else new
    if made is None:
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    add_under_annotations(viewer, made, staged=staged)
    if len(made.data) != len(data):  # a long table: built with a few rows, now its window
        show_rows(viewer, made, data, features, colormap)
    return made


def button(text: str, slot, tip: str) -> QPushButton:
    """A push button connected to ``slot``, with a tool tip."""
    b = QPushButton(text)
    b.setToolTip(tip)
    b.clicked.connect(slot)
    return b


def points_layers(viewer) -> list:
    return [layer for layer in viewer.layers if isinstance(layer, Points)]


def scroll_page(page_widget: QWidget) -> QScrollArea:
    """``page_widget`` in a vertical scroll area no wider than :data:`PAGE_WIDTH`."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.NoFrame)
    area.setWidget(page_widget)
    area.setMaximumWidth(PAGE_WIDTH + 24)
    page_widget.setMaximumWidth(PAGE_WIDTH)
    return area


class Collapsible(QGroupBox):
    """A group box whose title checkbox shows or hides its content."""

    def __init__(self, title: str, parent=None, collapsed: bool = False):
        super().__init__(title, parent)
        self.setCheckable(True)
        self.body = QWidget(self)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.body)
        self.toggled.connect(self.body.setVisible)
        self.setChecked(not collapsed)
        self.body.setVisible(not collapsed)


def find_cine_layer(viewer):
    """The cine image layer (the selected one if several), or None."""
    active = viewer.layers.selection.active
    if active is not None and is_cine(active):
        return active
    for layer in reversed(viewer.layers):
        if is_cine(layer):
            return layer
    return None


def cine_info(layer) -> dict:
    """``metadata["dustrack"]`` of a cine layer (path, fps, pixel_spacing, n_frames, kind)."""
    return dict(layer.metadata.get(META, {})) if layer is not None else {}


def open_frames(layer):
    """Random-access frames for an algorithm: a fresh reader on the file, else the layer data.

    A separate reader keeps the algorithm's sequential decoding from fighting napari's
    own reads of the displayed frame.
    """
    path = cine_info(layer).get("path")
    if path:
        from ..io.cine import open_frames as open_video_frames

        return open_video_frames(path)  # napari's own reader fills the cache
    return layer.data


def current_frame(viewer) -> int:
    return int(viewer.dims.current_step[0])


def set_frame(viewer, frame: int) -> None:
    n = int(viewer.dims.nsteps[0])
    viewer.dims.set_current_step(0, max(0, min(int(frame), n - 1)))


def notify_error(exc: BaseException) -> None:
    """Show an error as one line in napari (the full traceback only for unexpected errors)."""
    message = user_message(exc)  # the CLI's rule: DustrackError or OSError as <file>: <problem>
    show_error(message if message is not None else f"{type(exc).__name__}: {exc}")


def set_choices(combo, items) -> None:
    """Refill a combo box, keeping its current choice when it is still offered; no signals."""
    items, current = list(items), combo.currentText()
    combo.blockSignals(True)
    combo.clear()
    combo.addItems(items)
    if current in items:
        combo.setCurrentText(current)
    combo.blockSignals(False)


class _Relay(QObject):
    progressed = Signal(int, int)


class TaskBar(QWidget):
    """A progress bar with a Cancel button that runs one function at a time in a thread.

    The function is called as ``func(*args, progress=..., cancel=..., **kwargs)``: ``progress(done,
    total)`` may be called from the worker thread; ``cancel`` is a ``threading.Event``.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.bar = QProgressBar(self)
        self.bar.setVisible(False)
        self.status = QLabel("", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the running task (work done so far is kept)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar, 1)
        layout.addWidget(self.status)
        layout.addWidget(self.cancel_button)
        self._event: threading.Event | None = None
        self.worker = None
        self._relay = _Relay()
        self._relay.progressed.connect(self._on_progress)
        cancel_on_exit(self)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def run(
        self,
        func: Callable[..., Any],
        *args,
        on_done: Callable[[Any], None] | None = None,
        on_cancel: Callable[[Any], None] | None = None,
        label: str = "",
        **kwargs,
    ):
        """Start ``func`` in a worker thread; returns the worker (None if one is running)."""
        if self.busy:
            show_info("Another task is still running; cancel it first.")
            return None
        self._event = threading.Event()
        self.bar.setRange(0, 0)
        self.bar.setVisible(True)
        self.status.setText(label)
        self.cancel_button.setEnabled(True)

        def job():
            return func(*args, progress=self._relay.progressed.emit, cancel=self._event, **kwargs)

        worker = create_worker(job, _ignore_errors=True)  # errors go to _on_error, not to Qt
        worker.returned.connect(lambda result: on_done(result) if on_done else None)
        worker.errored.connect(lambda exc: self._on_error(exc, on_cancel))
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def cancel(self) -> None:
        if self._event is not None:
            self._event.set()
            self.status.setText("cancelling...")

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(int(total), 1))
        self.bar.setValue(int(done))

    def _on_error(self, exc: BaseException, on_cancel) -> None:
        if isinstance(exc, Cancelled):
            show_info("Cancelled; work done so far is kept.")
            if on_cancel:
                on_cancel(exc.partial)
        else:
            notify_error(exc)

    def _on_finished(self) -> None:
        self.worker = None
        self.bar.setVisible(False)
        self.status.setText("")
        self.cancel_button.setEnabled(False)
