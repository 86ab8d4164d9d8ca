"""The Annotate widget's labels: the list, add, rename, remove, reorder, colour, pick.

The session owns the labels (and their undo); :class:`LabelsController` turns the Labels panel's
signals and the label keys into session calls, and keeps the list and the current label (on the
shared :class:`~._annotate_context.AnnotateContext`) in step.
"""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QInputDialog

from ..errors import DustrackError
from .common import notify_error


class LabelsController:
    """The labels of the Annotate tab, driven by ``panel`` and the label keys.

    Parameters
    ----------
    context : AnnotateContext
        The session and the current label.
    panel : LabelsPanel
        The list and its buttons (its signals are connected here; it is also the dialogs'
        parent).
    """

    def __init__(self, context, panel):
        self.context = context
        self.panel = panel
        panel.picked.connect(self._on_label_row)
        panel.edited.connect(self._on_label_edited)
        panel.add_requested.connect(self.add_label_dialog)
        panel.remove_requested.connect(lambda: self.remove_label())
        panel.colour_requested.connect(self.colour_dialog)
        panel.move_requested.connect(self.move_label)

    @property
    def session(self):
        return self.context.session

    @property
    def current_label(self) -> str | None:
        return self.context.current_label

    def refresh_list(self) -> None:
        """Show the session's labels; the current label stays if it still exists."""
        session = self.session
        names = session.labels if session is not None else []
        if self.current_label not in names:
            self.context.current_label = names[0] if names else None
        self.panel.show_labels(
            session.label_items if session is not None else [], self.current_label
        )

    def _on_label_row(self, row: int) -> None:
        if self.session is not None and 0 <= row < len(self.session.labels):
            self.context.current_label = self.session.labels[row]

    def _on_label_edited(self, row: int, text: str) -> None:
        if self.session is None or not 0 <= row < len(self.session.labels):
            return
        old = self.session.labels[row]
        if text.strip() != old:
            self.rename_label(old, text)

    def add_label(self, name: str, colour: str | None = None) -> str | None:
        """Add a label and make it the current one."""
        if not self.context.need_session():
            return None
        try:
            name = self.session.add_label(name, colour)
        except DustrackError as exc:
            notify_error(exc)
            return None
        self.pick_label(name)
        return name

    def add_label_dialog(self) -> None:
        if not self.context.need_session():
            return
        name, ok = QInputDialog.getText(self.panel, "Add label", "Name of the new label:")
        if ok and name.strip():
            self.add_label(name)

    def rename_label(self, old: str, new: str) -> None:
        was_current = self.current_label == old
        try:
            new = self.session.rename_label(old, new)
        except DustrackError as exc:
            notify_error(exc)
            self.refresh_list()
            return
        if was_current:
            self.pick_label(new)

    def remove_label(self, name: str | None = None) -> None:
        name = name or self.current_label
        if self.session is None or name is None:
            return
        self.session.remove_label(name)
        show_info(f"Removed label {name!r} and its points (Ctrl+Z to undo).")

    def move_label(self, delta: int) -> None:
        if self.session is None or self.current_label is None:
            return
        index = self.session.labels.index(self.current_label)
        self.session.move_label(self.current_label, max(0, index + int(delta)))

    def colour_dialog(self) -> None:
        if self.session is None or self.current_label is None:
            return
        colour = QColorDialog.getColor(QColor(self.session.colour(self.current_label)), self.panel)
        if colour.isValid():
            self.session.set_colour(self.current_label, colour.name())

    def pick_label(self, name: str) -> None:
        """Make ``name`` the current label (clicks place it)."""
        if self.session is None or name not in self.session.labels:
            return
        self.context.current_label = name
        self.panel.label_list.setCurrentRow(self.session.labels.index(name))

    def pick_label_index(self, index: int) -> None:
        if self.session is not None and 0 <= index < len(self.session.labels):
            self.pick_label(self.session.labels[index])

    def cycle_label(self, delta: int) -> None:
        if self.session is None or not self.session.labels:
            return
        labels = self.session.labels
        i = labels.index(self.current_label) if self.current_label in labels else 0
        self.pick_label(labels[(i + int(delta)) % len(labels)])
