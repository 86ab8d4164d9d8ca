"""What the parts of the Annotate tab share: the viewer, the session, the cine and the label.

Each part of the tab (:mod:`._annotate_sync`, :mod:`._annotate_labels`, :mod:`._annotate_frames`,
:mod:`._annotate_flow`, :mod:`._annotate_review`) holds this one small object instead of
reaching into the widget or into each other; what one part changes that others show travels as a
signal from here.
"""

from __future__ import annotations

from napari.utils.notifications import show_info
from qtpy.QtCore import QObject, Signal

from .common import current_frame, set_frame


class AnnotateContext(QObject):
    """The viewer, the bound session and cine, and the current label of the Annotate tab.

    Parameters
    ----------
    viewer : napari.Viewer
    parent : QObject, optional

    Attributes
    ----------
    session : AnnotationSession or None
        The annotations of the bound cine (None while no cine is bound).
    cine_layer : napari.layers.Image or None
        The bound cine.
    """

    label_changed = Signal()  # the current label changed (clicks place another label)
    status_changed = Signal()  # something the status line shows changed

    def __init__(self, viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.session = None
        self.cine_layer = None
        self._label: str | None = None

    @property
    def current_label(self) -> str | None:
        """The label a click places."""
        return self._label

    @current_label.setter
    def current_label(self, name: str | None) -> None:
        if name != self._label:
            self._label = name
            self.label_changed.emit()

    @property
    def frame(self) -> int:
        return current_frame(self.viewer)

    def go_to(self, frame: int) -> None:
        set_frame(self.viewer, int(frame))

    def jump(self, frame: int | None, what: str) -> None:
        """Go to ``frame``, or say that there is no ``what`` the current frame."""
        if frame is None:
            show_info(f"No {what} frame {self.frame}.")
        else:
            self.go_to(frame)

    def need_session(self) -> bool:
        """Whether a cine is bound; tells the user to open one when not."""
        if self.session is None:
            show_info("Open a cine first.")
            return False
        return True


class Delegate:
    """A widget name that is an attribute of one of the widget's parts.

    ``fill_between = Delegate("flow")`` makes ``widget.fill_between`` be
    ``widget.flow.fill_between``: the keys, the mouse, other tabs and tests use the widget's
    names, and each name is served by the part that owns the state behind it.

    Parameters
    ----------
    part : str
        The widget attribute holding the part.
    name : str, optional
        The part's attribute, when it is named differently from the widget's.
    """

    def __init__(self, part: str, name: str | None = None):
        self.part = part
        self.name = name

    def __set_name__(self, owner, name: str) -> None:
        self.name = self.name or name

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        return getattr(getattr(obj, self.part), self.name)
