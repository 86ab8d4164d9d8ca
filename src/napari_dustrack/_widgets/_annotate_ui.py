"""Controls of the Annotate widget (layout only: every button calls a method of the widget)."""

from __future__ import annotations

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
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ..tracking.flow import FILL_METHODS
from ..tracking.lk import LKParams
from . import _annotate_keys
from .common import Collapsible, TaskBar


def _button(text: str, slot, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tip)
    button.clicked.connect(slot)
    return button


def build(w) -> None:
    """Create the controls of the Annotate widget ``w`` (attributes on ``w``, slots its methods)."""
    layout = QVBoxLayout(w)
    w.video_label = QLabel("Open a cine (File > Open) to annotate it.")
    w.video_label.setWordWrap(True)
    layout.addWidget(w.video_label)

    box = QGroupBox("Labels (1-9 pick, [ ] cycle)")
    grid = QVBoxLayout(box)
    w.label_list = QListWidget()
    w.label_list.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.EditKeyPressed)
    w.label_list.currentRowChanged.connect(w._on_label_row)
    w.label_list.itemChanged.connect(w._on_label_edited)
    w.label_list.setMaximumHeight(150)
    w.label_list.setToolTip("Labels in key order (1-9); double-click to rename")
    grid.addWidget(w.label_list)
    row = QGridLayout()
    for i, (text, slot, tip) in enumerate((
        ("Add", w.add_label_dialog, "Add a label (L)"),
        ("Remove", lambda: w.remove_label(), "Remove the current label and its points"),
        ("Colour", w.colour_dialog, "Change the colour of the current label"),
        ("Up", lambda: w.move_label(-1), "Move the current label up"),
        ("Down", lambda: w.move_label(1), "Move the current label down"),
    )):
        row.addWidget(_button(text, slot, tip), i // 3, i % 3)
    grid.addLayout(row)
    layout.addWidget(box)

    box = QGroupBox("Frames")
    grid = QGridLayout(box)
    w.jump_spin = QSpinBox()
    w.jump_spin.setToolTip("Frame number (J to edit, Enter to go)")
    w.jump_spin.setKeyboardTracking(False)
    w.jump_spin.editingFinished.connect(lambda: w.go_to(w.jump_spin.value()))
    grid.addWidget(QLabel("Go to"), 0, 0)
    grid.addWidget(w.jump_spin, 0, 1)
    for i, (text, slot, tip) in enumerate((
        ("< key", w.previous_keyframe, "Previous keyframe (,)"),
        ("key >", w.next_keyframe, "Next keyframe (.)"),
        ("Next missing", w.next_missing, "Next frame lacking a label (N)"),
        ("Copy previous", w.copy_previous, "Copy the points of the previous frame (C)"),
    )):
        grid.addWidget(_button(text, slot, tip), 1 + i // 2, i % 2)
    w.step_check = QCheckBox("Step-and-adjust (M)")
    w.step_check.setToolTip("Stepping to the next frame carries the points there with LK (M)")
    w.step_check.toggled.connect(w.set_step_adjust)
    grid.addWidget(w.step_check, 3, 0, 1, 2)
    layout.addWidget(box)

    box = Collapsible("Optical flow")
    grid = QGridLayout(box.body)
    w.n_spin = QSpinBox()
    w.n_spin.setRange(1, 100000)
    w.n_spin.setValue(10)
    w.n_spin.setToolTip("Frames to track forward/backward")
    grid.addWidget(QLabel("N frames"), 0, 0)
    grid.addWidget(w.n_spin, 0, 1)
    w.scope_check = QCheckBox("current label only (O)")
    w.scope_check.setToolTip("Track, fill and accept only the current label (O)")
    grid.addWidget(w.scope_check, 0, 2)
    for col, (text, slot, tip) in enumerate((
        ("Track back", lambda: w.track(-1), "Track backward N frames (Shift+T)"),
        ("Track fwd", lambda: w.track(1), "Track forward N frames (T)"),
    )):
        grid.addWidget(_button(text, slot, tip), 1, col)
    grid.addWidget(_button("Fill between keyframes", w.fill_between,
                           "LK + RSTC between keyframes (F); unreliable frames are announced "
                           "and K walks them"), 1, 2)
    w.fill_method = QComboBox()
    w.fill_method.addItems(FILL_METHODS)
    w.fill_method.setToolTip("robust (default): LK + RSTC, then segments where the flow locked "
                             "onto the probe or drifted are tracked again following the "
                             "image-wide motion; dustrack: DUSTrack's LK-RSTC exactly (to "
                             "reproduce published results)")
    grid.addWidget(QLabel("fill method"), 3, 0)
    grid.addWidget(w.fill_method, 3, 1, 1, 2)
    w.win_spin = QSpinBox()
    w.win_spin.setRange(5, 201)
    w.win_spin.setSingleStep(2)
    w.win_spin.setValue(LKParams().win_size)
    w.level_spin = QSpinBox()
    w.level_spin.setRange(0, 6)
    w.level_spin.setValue(LKParams().max_level)
    w.iter_spin = QSpinBox()
    w.iter_spin.setRange(1, 1000)
    w.iter_spin.setValue(LKParams().max_iter)
    w.eps_spin = QDoubleSpinBox()
    w.eps_spin.setDecimals(3)
    w.eps_spin.setRange(0.001, 10)
    w.eps_spin.setSingleStep(0.01)
    w.eps_spin.setValue(LKParams().eps)
    params = QGridLayout()
    for i, (text, spin, tip) in enumerate((
        ("win", w.win_spin, "Lucas-Kanade window size (pixels, odd)"),
        ("levels", w.level_spin, "Pyramid levels (more follow faster motion)"),
        ("iter", w.iter_spin, "Most iterations per LK step"),
        ("eps", w.eps_spin, "LK stops when a step moves less than this (pixels)"),
    )):
        spin.setToolTip(tip)
        params.addWidget(QLabel(text), i // 2, 2 * (i % 2))
        params.addWidget(spin, i // 2, 2 * (i % 2) + 1)
    grid.addLayout(params, 2, 0, 1, 3)
    layout.addWidget(box)

    box = QGroupBox("Review")
    grid = QGridLayout(box)
    w.from_spin = QSpinBox()
    w.to_spin = QSpinBox()
    w.from_spin.setToolTip("First frame of the range to accept")
    w.to_spin.setToolTip("Last frame of the range to accept")
    segment = _button("Segment", w.set_range_to_segment,
                      "Set the range to the keyframes around this frame")
    accept = _button("Accept", lambda: w.accept_range(),
                     "Mark the flow points of these frames reviewed (R; Shift+R: this segment)")
    for col, item in enumerate((QLabel("frames"), w.from_spin, QLabel("to"), w.to_spin)):
        grid.addWidget(item, 0, col)
    grid.addWidget(segment, 1, 0, 1, 2)
    grid.addWidget(accept, 1, 2, 1, 2)
    layout.addWidget(box)

    row = QHBoxLayout()
    w.undo_button = _button("Undo", w.undo, "Ctrl+Z")
    w.redo_button = _button("Redo", w.redo, "Ctrl+Shift+Z")
    row.addWidget(w.undo_button)
    row.addWidget(w.redo_button)
    for text, slot, tip in (
        ("Import...", w.import_dialog, "Import DUSTrack JSON or DeepLabCut CollectedData (I)"),
        ("Keys...", w.show_keys, "Key cheat-sheet (H)"),
    ):
        row.addWidget(_button(text, slot, tip))
    layout.addLayout(row)

    w.taskbar = TaskBar(w)
    layout.addWidget(w.taskbar)
    w.status = QLabel("")
    w.status.setWordWrap(True)
    layout.addWidget(w.status)
    layout.addStretch(1)


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
