"""The Measure tab: define measures, plot tracks and measures over time, export.

Plots (matplotlib in Qt): x(t) and y(t) of every label and one measure column over time, for
every checked layer (any Points or Tracks layer whose features carry ``label``), one line style
per layer. A vertical line follows napari's current frame; clicking a plot moves napari to the
clicked frame; ``metadata["review_frames"]`` of a plotted layer is marked on the time axis.

A hidden tab does no work: edits and frame changes only mark the plots stale; they are redrawn
when the tab is shown, and while shown at most a few times a second. Long series are thinned to
their min/max envelope for drawing; the figure takes napari's theme colours.
The computation is :func:`napari_dustrack.measure.compute`; exports are
:mod:`napari_dustrack.io.export`. File dialogs only pick a path for the ``*_to(path)`` methods.
"""

from __future__ import annotations

import weakref
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_qtagg import NavigationToolbar2QT
from matplotlib.figure import Figure
from napari.layers import Points
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import DustrackError
from ..io import sidecar
from ..io.colours import hex_to_rgb
from ..io.table import labels_of
from ..measure import (
    CHANGES,
    KINDS,
    STRAINS,
    Calibration,
    Measure,
    load_measures,
    save_measures,
)
from ._measure_data import compute_all, copy_of, is_track_layer, layer_units
from ._measure_export import MeasureExports
from ._measure_plot import MeasurePlot, PlotCanvas
from .common import (
    TaskBar,
    cine_info,
    find_cine_layer,
    label_colours,
    notify_error,
    register_page,
    set_choices,
)

INLINE_ROWS = 20_000  # layers with more points are tabulated in a worker thread
REPLOT_MS = 300  # at most ~3 recomputations a second while edits go on
FRAME_LINE_MS = 200  # the current-frame line follows at most 5 times a second


class MeasureWidget(MeasurePlot, MeasureExports, QWidget):
    """Measures over time for the layers of a napari viewer.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.measures: list[Measure] = []
        self.results: dict[str, pd.DataFrame] = {}  # layer name -> compute() result
        self.series: dict[str, dict] = {}  # checked layer name -> its lines, ready to plot
        self.tables: dict[str, pd.DataFrame] = {}  # layer name -> point table
        self.lines: dict[tuple[str, str, str], object] = {}  # (axis, layer, key) -> Line2D
        self._label_order: list[str] = []
        self._measures_loaded_for: str | None = None
        self._connected: set[int] = set()
        self._stale = True  # the plots lag the layers (the tab is hidden or a replot is due)
        self._closed = False  # closed or deleted: no more work, no draws
        self._replot_timer = QTimer(self)
        self._replot_timer.setSingleShot(True)
        self._replot_timer.setInterval(REPLOT_MS)
        self._replot_timer.timeout.connect(self.refresh)
        self._frame_timer = QTimer(self)
        self._frame_timer.setSingleShot(True)
        self._frame_timer.setInterval(FRAME_LINE_MS)
        self._frame_timer.timeout.connect(self._move_frame_line)
        self.redraws = 0  # full redraws (for tests and benchmarks)
        self._generation = 0
        self._build()
        register_page(napari_viewer, "measure", self)
        self._links: list[tuple] = []  # (napari emitter, WeakMethod): left on close or deletion
        viewer_layers = self.viewer.layers.events
        self._link(viewer_layers.inserted, self._on_layers_changed)
        self._link(viewer_layers.removed, self._on_layers_changed)
        self._link(viewer_layers.reordered, self._on_layers_changed)
        self._link(self.viewer.dims.events.current_step, self._on_frame)
        self._link(self.viewer.events.theme, self._on_layer_edited)  # dark/light: its colours
        # On deletion the C++ widget is gone: only plain Python may run (no self.<Qt method>),
        # and the closure must not hold the widget (its __dict__ and links only).
        state, links, canvas = self.__dict__, self._links, self.canvas
        self.destroyed.connect(lambda *_: _leave(state, links, canvas))
        self._on_layers_changed()

    def _link(self, emitter, callback) -> None:
        # A bound method: napari holds it weakly, and so do we, so a closed widget is freed.
        emitter.connect(callback)
        self._links.append((emitter, weakref.WeakMethod(callback)))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Closed: stop the timers, drop pending results and queued draws, leave napari."""
        self._replot_timer.stop()
        self._frame_timer.stop()
        _leave(self.__dict__, self._links, self.canvas)
        super().closeEvent(event)

    # --- construction ------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_layers())
        layout.addWidget(self._build_definitions())
        # fixed margins: a layout engine re-measures every label on each draw (~0.2 s)
        self.figure = Figure(figsize=(3.8, 6))
        self.figure.subplots_adjust(left=0.2, right=0.97, top=0.98, bottom=0.08, hspace=0.15)
        self.canvas = PlotCanvas(self.figure)
        self.canvas.setMinimumHeight(360)
        self.toolbar = NavigationToolbar2QT(self.canvas, self)
        self._build_axes()
        layout.addWidget(self.toolbar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self._build_exports())
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    def _build_layers(self) -> QWidget:
        box = QGroupBox("Layers to plot", self)
        self.layer_list = QListWidget(box)
        self.layer_list.setToolTip("Tick the layers whose points are plotted and measured")
        self.layer_list.setMaximumHeight(80)
        self.layer_list.itemChanged.connect(lambda _item: self.schedule_refresh())
        v = QVBoxLayout(box)
        v.addWidget(self.layer_list)
        return box

    def _build_definitions(self) -> QWidget:
        box = QGroupBox("Measures", self)
        form = QFormLayout()
        self.kind_combo = QComboBox(box)
        self.kind_combo.setToolTip("Kind of measure (distance, angle, deformation...)")
        self.kind_combo.addItems(list(KINDS))
        self.kind_combo.currentTextChanged.connect(self._on_kind)
        self.kind_hint = QLabel("", box)
        self.kind_hint.setWordWrap(True)
        self.name_edit = QLineEdit(box)
        self.name_edit.setToolTip("Name of the measure (its column in the CSV)")
        self.label_list = QListWidget(box)
        self.label_list.setToolTip("Tick the labels the measure uses, in order")
        self.label_list.setMaximumHeight(90)
        self.label_list.itemChanged.connect(self._on_label_checked)
        self._checked: list[str] = []  # checked labels in the order they were checked
        self.change_combo = QComboBox(box)
        self.change_combo.setToolTip("Report the value, or its change from the reference frame")
        self.change_combo.addItems(list(CHANGES))
        self.ref_spin = QSpinBox(box)
        self.ref_spin.setToolTip("Reference frame of changes and strain")
        self.ref_spin.setRange(-1, 1_000_000)
        self.ref_spin.setValue(-1)
        self.ref_spin.setSpecialValueText("first complete frame")
        self.strain_combo = QComboBox(box)
        self.strain_combo.setToolTip("Strain definition of a deformation measure")
        self.strain_combo.addItems(list(STRAINS))
        form.addRow("Type", self.kind_combo)
        form.addRow("", self.kind_hint)
        form.addRow("Name", self.name_edit)
        form.addRow("Labels (in order)", self.label_list)
        form.addRow("Change", self.change_combo)
        form.addRow("Reference frame", self.ref_spin)
        form.addRow("Strain", self.strain_combo)
        add = QPushButton("Add measure", box)
        add.setToolTip("Add the measure described above (saved next to the video)")
        add.clicked.connect(self._add_from_form)
        self.measure_list = QListWidget(box)
        self.measure_list.setToolTip("Defined measures; select one to remove it")
        self.measure_list.setMaximumHeight(70)
        remove = QPushButton("Remove", box)
        remove.setToolTip("Remove the selected measure")
        remove.clicked.connect(self._remove_selected)
        self.plot_combo = QComboBox(box)
        self.plot_combo.setToolTip("Measure shown in the bottom plot")
        self.plot_combo.currentTextChanged.connect(lambda _t: self._draw())
        v = QVBoxLayout(box)
        v.addLayout(form)
        v.addWidget(add)
        v.addWidget(self.measure_list)
        v.addWidget(remove)
        row = QHBoxLayout()
        row.addWidget(QLabel("Plot", box))
        row.addWidget(self.plot_combo, 1)
        v.addLayout(row)
        self._on_kind(self.kind_combo.currentText())
        return box

    def _build_exports(self) -> QWidget:
        box = QGroupBox("Export", self)
        grid = QGridLayout(box)
        self.export_combo = QComboBox(box)
        self.export_combo.setToolTip("Layer to export")
        grid.addWidget(QLabel("Layer", box), 0, 0)
        grid.addWidget(self.export_combo, 0, 1)
        buttons = [
            ("Point table CSV", "Point table (*.csv)", self.export_points_csv_to),
            ("DeepLabCut h5/csv", "DeepLabCut (*.h5 *.csv)", self.export_dlc_to),
            ("DUSTrack JSON", "DUSTrack JSON (*.json)", self.export_dustrack_to),
            ("Measurements CSV", "Measurements (*.csv)", self.export_measurements_to),
            ("MP4 with tracks", "MP4 video (*.mp4)", self.export_mp4_to),
        ]
        self.export_buttons = {}
        for i, (title, filt, method) in enumerate(buttons):
            button = QPushButton(title, box)
            button.setToolTip(f"Export the chosen layer as {title}")
            button.clicked.connect(
                lambda _=False, t=title, f=filt, m=method: self._ask_and_export(t, f, m)
            )
            grid.addWidget(button, 1 + i // 2, i % 2)
            self.export_buttons[title] = button
        self.task = TaskBar(box)
        grid.addWidget(self.task, 4, 0, 1, 2)
        return box

    # --- layers ------------------------------------------------------------------------------

    def track_layers(self) -> list:
        return [layer for layer in self.viewer.layers if is_track_layer(layer)]

    def checked_layers(self) -> list:
        names = {
            self.layer_list.item(i).text()
            for i in range(self.layer_list.count())
            if self.layer_list.item(i).checkState() == Qt.Checked
        }
        return [layer for layer in self.track_layers() if layer.name in names]

    def _on_layers_changed(self, event=None) -> None:
        if self._closed:
            return
        previous = {
            self.layer_list.item(i).text(): self.layer_list.item(i).checkState()
            for i in range(self.layer_list.count())
        }
        self.layer_list.blockSignals(True)
        self.layer_list.clear()
        for layer in self.track_layers():
            item = QListWidgetItem(layer.name, self.layer_list)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            # Tracks usually repeat a Points layer's positions (the plugin makes both), so
            # only Points layers start ticked.
            default = Qt.Checked if isinstance(layer, Points) else Qt.Unchecked
            item.setCheckState(previous.get(layer.name, default))
            if id(layer) not in self._connected:
                self._connected.add(id(layer))
                for name in ("data", "features", "metadata"):  # not every layer type has all
                    if hasattr(layer.events, name):
                        self._link(getattr(layer.events, name), self._on_layer_edited)
                self._link(layer.events.name, self._on_layers_changed)
        self.layer_list.blockSignals(False)
        current = self.export_combo.currentText()
        self.export_combo.clear()
        self.export_combo.addItems([layer.name for layer in self.track_layers()])
        if current:
            self.export_combo.setCurrentText(current)
        self._maybe_load_measures()
        self.refresh()

    def _maybe_load_measures(self) -> None:
        """Load a cine's saved measures when its layer appears.

        A cine without saved measures keeps the current ones (the same protocol is usually
        measured on the next video); they are saved with it at the next change.
        """
        path = self.measures_file()
        if path is None or str(path) == self._measures_loaded_for:
            return
        self._measures_loaded_for = str(path)
        if path.is_file():
            try:
                self.measures = load_measures(path)
            except DustrackError as exc:
                notify_error(exc)
            self._update_measure_list()

    def measures_file(self) -> Path | None:
        """``<video>.dustrack/measures.json`` of the cine layer, or None without a file."""
        path = cine_info(find_cine_layer(self.viewer)).get("path")
        return sidecar.measures_path(path) if path else None

    def label_colours(self) -> dict[str, tuple[int, int, int]]:
        """RGB of each label: the annotation's colours, else the palette in label order."""
        colours = label_colours(self.viewer, self._label_order)
        return {lab: hex_to_rgb(c) for lab, c in colours.items()}

    def calibration(self) -> Calibration:
        """mm and seconds from the cine layer's napari scale and units (what the scale bar and
        the time slider show, also after the user changed them), else from the plugin's
        metadata."""
        cine = find_cine_layer(self.viewer)
        info = cine_info(cine)
        spacing, fps = layer_units(cine)
        return Calibration.of(
            spacing if spacing is not None else info.get("pixel_spacing"),
            fps if fps is not None else info.get("fps"),
        )

    def n_frames(self) -> int:
        info = cine_info(find_cine_layer(self.viewer))
        if info.get("n_frames"):
            return int(info["n_frames"])
        ends = [int(t["frame"].max()) + 1 for t in self.tables.values() if len(t)]
        if self.viewer.dims.ndim >= 3:  # the first axis is time only in a (frame, y, x) viewer
            ends.append(int(self.viewer.dims.nsteps[0]))
        return max(ends, default=0)

    # --- measures ----------------------------------------------------------------------------

    def add_measure(self, measure: Measure) -> None:
        """Add (or replace, by name) a measure, save the definitions and replot."""
        measure.check()
        self.measures = [m for m in self.measures if m.name != measure.name] + [measure]
        self._measures_changed()

    def remove_measure(self, name: str) -> None:
        self.measures = [m for m in self.measures if m.name != name]
        self._measures_changed()

    def _measures_changed(self) -> None:
        path = self.measures_file()
        if path is not None:
            try:
                save_measures(self.measures, path)
            except OSError as exc:  # e.g. a read-only disc: keep working, say so
                notify_error(DustrackError(f"measures not saved ({exc.strerror or exc})", path))
        self._update_measure_list()
        self.refresh()

    def _update_measure_list(self) -> None:
        self.measure_list.clear()
        for m in self.measures:
            self.measure_list.addItem(f"{m.name}: {m.kind} of {', '.join(m.labels)}")

    def _on_kind(self, kind: str) -> None:
        self.kind_hint.setText(KINDS[kind][2])
        self.strain_combo.setEnabled(kind == "deformation")
        self.change_combo.setEnabled(kind not in ("deformation", "velocity"))
        taken = {m.name for m in self.measures}
        n = 1
        while f"{kind} {n}" in taken:
            n += 1
        self.name_edit.setText(f"{kind} {n}")

    def _on_label_checked(self, item: QListWidgetItem) -> None:
        label = item.text()
        if item.checkState() == Qt.Checked and label not in self._checked:
            self._checked.append(label)
        elif item.checkState() != Qt.Checked and label in self._checked:
            self._checked.remove(label)

    def form_measure(self) -> Measure:
        """The measure described by the form (raises DustrackError if inconsistent)."""
        ref = self.ref_spin.value()
        return Measure(
            name=self.name_edit.text().strip(),
            kind=self.kind_combo.currentText(),
            labels=list(self._checked),
            change=self.change_combo.currentText(),
            reference_frame=None if ref < 0 else ref,
            strain=self.strain_combo.currentText(),
        )

    def _add_from_form(self) -> None:
        try:
            self.add_measure(self.form_measure())
        except DustrackError as exc:
            notify_error(exc)
            return
        for i in range(self.label_list.count()):  # a fresh form for the next measure
            self.label_list.item(i).setCheckState(Qt.Unchecked)
        self._on_kind(self.kind_combo.currentText())

    def _remove_selected(self) -> None:
        row = self.measure_list.currentRow()
        if 0 <= row < len(self.measures):
            self.remove_measure(self.measures[row].name)

    def _update_label_list(self) -> None:
        labels = list(dict.fromkeys(lab for t in self.tables.values() for lab in labels_of(t)))
        if labels == self._label_order:
            return
        self._label_order = labels
        self.label_list.blockSignals(True)
        self.label_list.clear()
        for label in labels:
            item = QListWidgetItem(label, self.label_list)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if label in self._checked else Qt.Unchecked)
        self._checked = [lab for lab in self._checked if lab in labels]
        self.label_list.blockSignals(False)

    # --- computing and plotting --------------------------------------------------------------

    def schedule_refresh(self) -> None:
        """Refresh soon: a burst of edits costs one recomputation every ``REPLOT_MS`` at most;
        a hidden tab only notes that it is stale."""
        self._stale = True
        if not self._closed and self.isVisible() and not self._replot_timer.isActive():
            self._replot_timer.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if self._stale:
            self.refresh()
        else:  # the frame changed while hidden: only the frame line moves
            self._move_frame_line()

    def _on_layer_edited(self, event=None) -> None:
        self.schedule_refresh()

    def refresh(self) -> None:
        """Recompute every layer's table and the checked layers' measures, then redraw.

        Hidden: later (when shown); while the user scrubs: once the frame settles. Long tables
        (a long cine's 80,000 points) are computed in a worker thread from copies of the
        layers, and drawn when ready."""
        if self._closed or not self.isVisible():
            self._stale = True
            return
        if self.scrubbing():  # the tables are copied and computed once the frame settles
            self._stale = True
            self._replot_timer.start()
            return
        self._stale = False
        copies = {layer.name: copy_of(layer) for layer in self.track_layers()}
        checked = [layer.name for layer in self.checked_layers()]
        info = cine_info(find_cine_layer(self.viewer))
        n = int(info.get("n_frames") or 0) or (
            int(self.viewer.dims.nsteps[0]) if self.viewer.dims.ndim >= 3 else 0
        )
        args = (copies, checked, list(self.measures), self.calibration(), n)
        self._generation += 1
        rows = sum(len(c[1]) for c in copies.values() if c is not None)
        if rows <= INLINE_ROWS:
            self._computed(compute_all(*args), self._generation)
            return
        from napari.qt.threading import create_worker

        worker = create_worker(compute_all, *args)
        worker.returned.connect(lambda out, g=self._generation: self._computed(out, g))
        worker.start()

    def _computed(self, out: dict, generation: int) -> None:
        if self._closed or generation != self._generation:
            return  # closed, or a newer refresh is on its way
        self.tables, self.results, self.series = out["tables"], out["results"], out["series"]
        self._update_label_list()
        self._update_plot_choices()
        self.status.setText("\n".join(out["problems"]))
        self._draw()

    def _update_plot_choices(self) -> None:
        columns = list(
            dict.fromkeys(
                c
                for r in self.results.values()
                for c in r.columns
                if c != "frame" and not c.startswith("time")
            )
        )
        set_choices(self.plot_combo, columns)


def _leave(state: dict, links: list, canvas: PlotCanvas) -> None:
    """Mark a Measure widget and its canvas closed and disconnect it from napari's events
    (also after its C++ object is deleted: plain Python only)."""
    state["_closed"] = canvas.closed = True
    state["_generation"] = state.get("_generation", 0) + 1  # results still on their way: dropped
    for emitter, method in links:
        callback = method()
        if callback is None:  # the widget is gone, and napari's weak link with it
            continue
        try:
            emitter.disconnect(callback)
        except (RuntimeError, TypeError, ValueError):  # already gone with its layer
            pass
    links.clear()
