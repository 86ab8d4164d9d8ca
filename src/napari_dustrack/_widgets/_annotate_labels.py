"""The Annotate widget's labels: the list, add, rename, remove, reorder, colour, pick.

The session owns the labels (and their undo); these methods turn the Labels panel's signals and
the label keys into session calls, and keep the list and the current label in step.
"""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QColorDialog, QInputDialog

from ..errors import DustrackError
from .common import notify_error


class LabelActions:
    """Part of :class:`~napari_dustrack._widgets.annotate.AnnotateWidget`: the labels."""

    def _refresh_label_list(self) -> None:
        session = self.session
        names = session.labels if session is not None else []
        if self.current_label not in names:
            self.current_label = names[0] if names else None
        self.labels_panel.show_labels(
            session.label_items if session is not None else [], self.current_label
        )
        self._update_feature_defaults()

    def _on_label_row(self, row: int) -> None:
        if self.session is not None and 0 <= row < len(self.session.labels):
            self.current_label = self.session.labels[row]
            self._update_feature_defaults()
            self._update_controls()

    def _on_label_edited(self, row: int, text: str) -> None:
        if self.session is None or not 0 <= row < len(self.session.labels):
            return
        old = self.session.labels[row]
        if text.strip() != old:
            self.rename_label(old, text)

    def add_label(self, name: str, colour: str | None = None) -> str | None:
        """Add a label and make it the current one."""
        if not self._need_session():
            return None
        try:
            name = self.session.add_label(name, colour)
        except DustrackError as exc:
            notify_error(exc)
            return None
        self.pick_label(name)
        return name

    def add_label_dialog(self) -> None:
        if not self._need_session():
            return
        name, ok = QInputDialog.getText(self, "Add label", "Name of the new label:")
        if ok and name.strip():
            self.add_label(name)

    def rename_label(self, old: str, new: str) -> None:
        was_current = self.current_label == old
        try:
            new = self.session.rename_label(old, new)
        except DustrackError as exc:
            notify_error(exc)
            self._refresh_label_list()
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
        colour = QColorDialog.getColor(QColor(self.session.colour(self.current_label)), self)
        if colour.isValid():
            self.session.set_colour(self.current_label, colour.name())

    def pick_label(self, name: str) -> None:
        """Make ``name`` the current label (clicks place it)."""
        if self.session is None or name not in self.session.labels:
            return
        self.current_label = name
        self.label_list.setCurrentRow(self.session.labels.index(name))
        self._update_feature_defaults()
        self._update_controls()

    def pick_label_index(self, index: int) -> None:
        if self.session is not None and 0 <= index < len(self.session.labels):
            self.pick_label(self.session.labels[index])

    def cycle_label(self, delta: int) -> None:
        if self.session is None or not self.session.labels:
            return
        labels = self.session.labels
        i = labels.index(self.current_label) if self.current_label in labels else 0
        self.pick_label(labels[(i + int(delta)) % len(labels)])
