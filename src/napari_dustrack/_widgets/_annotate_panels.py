"""The panels of the Annotate widget: each owns its controls and emits signals.

The widget (:mod:`.annotate`) wires the signals to the session and the layers; the panels know
nothing of either (as napari-animation composes its dock widget from panels).
"""

from __future__ import annotations

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..tracking.flow import FILL_METHODS
from ..tracking.lk import LKParams
from . import _annotate_keys
from .common import Collapsible, button


def _button(text: str, signal, tip: str) -> QPushButton:
    """A button that emits ``signal`` (no argument) when clicked."""
    return button(text, lambda *_: signal.emit(), tip)


def _swatch(hex_colour: str) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(hex_colour))
    return QIcon(pix)


class LabelsPanel(QGroupBox):
    """The label list (key order, double-click renames) and its buttons."""

    picked = Signal(int)  # the row the user selected
    edited = Signal(int, str)  # row, new name typed in the list
    add_requested = Signal()
    remove_requested = Signal()
    colour_requested = Signal()
    move_requested = Signal(int)  # -1 up, +1 down

    def __init__(self, parent=None):
        super().__init__("Labels (1-9 pick, [ ] cycle)", parent)
        self.label_list = QListWidget()
        self.label_list.setEditTriggers(
            QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed
        )
        self.label_list.currentRowChanged.connect(self.picked.emit)
        self.label_list.itemChanged.connect(
            lambda item: self.edited.emit(self.label_list.row(item), item.text())
        )
        self.label_list.setMaximumHeight(150)
        self.label_list.setToolTip("Labels in key order (1-9); double-click to rename")
        layout = QVBoxLayout(self)
        layout.addWidget(self.label_list)
        row = QGridLayout()
        for i, (text, signal, tip) in enumerate(
            (
                ("Add", self.add_requested, "Add a label (L)"),
                ("Remove", self.remove_requested, "Remove the current label and its points"),
                ("Colour", self.colour_requested, "Change the colour of the current label"),
            )
        ):
            row.addWidget(_button(text, signal, tip), 0, i)
        for i, (text, delta, tip) in enumerate(
            (
                ("Up", -1, "Move the current label up"),
                ("Down", 1, "Move the current label down"),
            )
        ):
            row.addWidget(button(text, lambda *_, d=delta: self.move_requested.emit(d), tip), 1, i)
        layout.addLayout(row)

    def show_labels(self, items, current: str | None) -> None:
        """List ``items`` (name + colour) with ``current`` selected, without emitting."""
        lst = self.label_list
        lst.blockSignals(True)
        lst.clear()
        names = []
        for i, lab in enumerate(items):
            item = QListWidgetItem(_swatch(lab.colour), lab.name)
            item.setFlags(item.flags() | Qt.ItemIsEditable)
            item.setToolTip(f"key {i + 1}" if i < 9 else "")
            lst.addItem(item)
            names.append(lab.name)
        if current in names:
            lst.setCurrentRow(names.index(current))
        lst.blockSignals(False)


class FramesPanel(QGroupBox):
    """Go to a frame, keyframe navigation, copy previous, step-and-adjust."""

    go_to = Signal(int)
    previous_keyframe = Signal()
    next_keyframe = Signal()
    next_missing = Signal()
    copy_previous = Signal()

    def __init__(self, parent=None):
        super().__init__("Frames", parent)
        grid = QGridLayout(self)
        self.jump_spin = QSpinBox()
        self.jump_spin.setToolTip("Frame number (J to edit, Enter to go)")
        self.jump_spin.setKeyboardTracking(False)
        self.jump_spin.editingFinished.connect(lambda: self.go_to.emit(self.jump_spin.value()))
        grid.addWidget(QLabel("Go to"), 0, 0)
        grid.addWidget(self.jump_spin, 0, 1)
        for i, (text, signal, tip) in enumerate(
            (
                ("< key", self.previous_keyframe, "Previous keyframe (,)"),
                ("key >", self.next_keyframe, "Next keyframe (.)"),
                ("Next missing", self.next_missing, "Next frame lacking a label (N)"),
                ("Copy previous", self.copy_previous, "Copy the points of the previous frame (C)"),
            )
        ):
            grid.addWidget(_button(text, signal, tip), 1 + i // 2, i % 2)
        self.step_check = QCheckBox("Step-and-adjust (M)")
        self.step_check.setToolTip(
            "Stepping to the next frame carries the points there with LK (M)"
        )
        grid.addWidget(self.step_check, 3, 0, 1, 2)

    def show_frame(self, frame: int) -> None:
        self.jump_spin.blockSignals(True)
        self.jump_spin.setValue(frame)
        self.jump_spin.blockSignals(False)


class FlowPanel(Collapsible):
    """Optical flow: track N frames, fill between keyframes, the method and the LK parameters."""

    track = Signal(int)  # direction: -1 backward, 1 forward
    fill = Signal()

    def __init__(self, parent=None):
        super().__init__("Optical flow", parent)
        grid = QGridLayout(self.body)
        self.n_spin = _spin(1, 100000, 10, "Frames to track forward/backward")
        grid.addWidget(QLabel("N frames"), 0, 0)
        grid.addWidget(self.n_spin, 0, 1)
        self.scope_check = QCheckBox("current label only (O)")
        self.scope_check.setToolTip("Track, fill and accept only the current label (O)")
        grid.addWidget(self.scope_check, 0, 2)
        for col, (text, direction, tip) in enumerate(
            (
                ("Track back", -1, "Track backward N frames (Shift+T)"),
                ("Track fwd", 1, "Track forward N frames (T)"),
            )
        ):
            grid.addWidget(button(text, lambda *_, d=direction: self.track.emit(d), tip), 1, col)
        grid.addWidget(
            _button(
                "Fill between keyframes",
                self.fill,
                "LK + RSTC between keyframes (F); unreliable frames are announced and K walks them",
            ),
            1,
            2,
        )
        self.fill_method = QComboBox()
        self.fill_method.addItems(FILL_METHODS)
        self.fill_method.setToolTip(
            "robust (default): LK + RSTC, then segments where the flow locked onto the probe or "
            "drifted are tracked again following the image-wide motion; dustrack: DUSTrack's "
            "LK-RSTC exactly (to reproduce published results)"
        )
        grid.addWidget(QLabel("fill method"), 3, 0)
        grid.addWidget(self.fill_method, 3, 1, 1, 2)
        grid.addLayout(self._lk_controls(), 2, 0, 1, 3)

    def _lk_controls(self) -> QGridLayout:
        defaults = LKParams()
        self.win_spin = _spin(5, 201, defaults.win_size, "Lucas-Kanade window size (pixels, odd)")
        self.win_spin.setSingleStep(2)
        self.level_spin = _spin(
            0, 6, defaults.max_level, "Pyramid levels (more follow faster motion)"
        )
        self.iter_spin = _spin(1, 1000, defaults.max_iter, "Most iterations per LK step")
        self.eps_spin = QDoubleSpinBox()
        self.eps_spin.setDecimals(3)
        self.eps_spin.setRange(0.001, 10)
        self.eps_spin.setSingleStep(0.01)
        self.eps_spin.setValue(defaults.eps)
        self.eps_spin.setToolTip("LK stops when a step moves less than this (pixels)")
        params = QGridLayout()
        for i, (text, spin) in enumerate(
            (
                ("win", self.win_spin),
                ("levels", self.level_spin),
                ("iter", self.iter_spin),
                ("eps", self.eps_spin),
            )
        ):
            params.addWidget(QLabel(text), i // 2, 2 * (i % 2))
            params.addWidget(spin, i // 2, 2 * (i % 2) + 1)
        return params

    def lk_params(self) -> LKParams:
        win = self.win_spin.value() | 1  # odd window: centred on the point
        return LKParams(
            win_size=win,
            max_level=self.level_spin.value(),
            max_iter=self.iter_spin.value(),
            eps=float(self.eps_spin.value()),
        )


class ReviewPanel(QGroupBox):
    """The range of frames whose flow points Accept marks reviewed."""

    segment_requested = Signal()
    accept_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Review", parent)
        grid = QGridLayout(self)
        self.from_spin = QSpinBox()
        self.to_spin = QSpinBox()
        self.from_spin.setToolTip("First frame of the range to accept")
        self.to_spin.setToolTip("Last frame of the range to accept")
        segment = _button(
            "Segment", self.segment_requested, "Set the range to the keyframes around this frame"
        )
        accept = _button(
            "Accept",
            self.accept_requested,
            "Mark the flow points of these frames reviewed (R; Shift+R: this segment)",
        )
        for col, item in enumerate((QLabel("frames"), self.from_spin, QLabel("to"), self.to_spin)):
            grid.addWidget(item, 0, col)
        grid.addWidget(segment, 1, 0, 1, 2)
        grid.addWidget(accept, 1, 2, 1, 2)

    def set_range(self, lo: int, hi: int) -> None:
        self.from_spin.setValue(lo)
        self.to_spin.setValue(hi)


class ActionsRow(QWidget):
    """Undo, redo, import and the key cheat-sheet."""

    undo = Signal()
    redo = Signal()
    import_requested = Signal()
    keys_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.undo_button = _button("Undo", self.undo, "Ctrl+Z")
        self.redo_button = _button("Redo", self.redo, "Ctrl+Shift+Z")
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        row.addWidget(
            _button(
                "Import...",
                self.import_requested,
                "Import DUSTrack JSON or DeepLabCut CollectedData (I)",
            )
        )
        row.addWidget(_button("Keys...", self.keys_requested, "Key cheat-sheet (H)"))

    def show_history(self, session) -> None:
        """Enable undo/redo and name what they would do."""
        s = session
        self.undo_button.setEnabled(s is not None and s.can_undo)
        self.redo_button.setEnabled(s is not None and s.can_redo)
        if s is not None:
            self.undo_button.setToolTip(
                f"Undo {s.undo_action} (Ctrl+Z)" if s.can_undo else "Ctrl+Z"
            )
            self.redo_button.setToolTip(
                f"Redo {s.redo_action} (Ctrl+Shift+Z)" if s.can_redo else "Redo (Ctrl+Shift+Z)"
            )


def _spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class KeysDialog(QDialog):
    """The cheat-sheet: every key of the Annotate tab and what it does."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("DUSTrack annotation keys")
        rows = _annotate_keys.cheat_sheet()
        table = QTableWidget(len(rows), 2, self)
        table.setHorizontalHeaderLabels(["Key", "Action"])
        table.verticalHeader().setVisible(False)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        for r, (key, text) in enumerate(rows):
            table.setItem(r, 0, QTableWidgetItem(key))
            table.setItem(r, 1, QTableWidgetItem(text))
        table.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        table.resizeColumnToContents(0)
        self.table = table
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Keys work while the 'annotations' layer is selected."))
        layout.addWidget(table)
        self.resize(560, 520)
