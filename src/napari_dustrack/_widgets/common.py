"""Helpers shared by the dock widgets: finding layers, the current frame, background tasks."""

from __future__ import annotations

import threading
from typing import Any, Callable

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from ..errors import Cancelled, user_message

META = "dustrack"


def is_cine(layer) -> bool:
    """A cine image layer (the plugin's other layers carry a ``role`` in the same metadata)."""
    info = layer.metadata.get(META) if layer._type_string == "image" else None
    return isinstance(info, dict) and "role" not in info


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
        from ..io.cine import open_cine

        return open_cine(path, frame_cache=False)  # napari's own reader fills the cache
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
