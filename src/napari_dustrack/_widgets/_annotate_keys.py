"""Key bindings of the Annotate widget, bound on its "annotations" Points layer.

Like napari's own ``layers/points/_points_key_bindings``, this module only maps keys to actions;
the actions are methods of the widget (which calls the model). Keys work while the annotations
layer or a prediction layer (model, smoothed points) is the selected layer (the widget selects
the annotations layer whenever it adds a layer). Bindings on the layer
instance take precedence over napari's Points defaults: digits 1-9 pick labels here instead of
switching modes (napari's P / S / Z still switch to add / select / pan-zoom).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Binding:
    """One key (or several equivalent keys) and the widget method it calls.

    Attributes
    ----------
    keys : tuple of str
        napari key names (``"Control-Shift-Z"``, ``","``...).
    action : str
        Name of the widget method to call.
    args : tuple
        Positional arguments for it.
    help : str
        What the key does, for the cheat-sheet.
    """

    keys: tuple[str, ...]
    action: str
    args: tuple = ()
    help: str = ""


LABEL_KEYS = tuple(
    Binding((str(i),), "pick_label_index", (i - 1,), f"pick label {i}") for i in range(1, 10)
)

BINDINGS: tuple[Binding, ...] = LABEL_KEYS + (
    Binding(("[",), "cycle_label", (-1,), "previous label"),
    Binding(("]",), "cycle_label", (1,), "next label"),
    Binding(("Left",), "step", (-1,), "previous frame"),
    Binding(
        ("Right",), "step", (1,), "next frame (carries the points along in step-and-adjust mode)"
    ),
    Binding(("Shift-Left",), "step", (-10,), "10 frames back"),
    Binding(("Shift-Right",), "step", (10,), "10 frames forward"),
    Binding((",",), "previous_keyframe", (), "previous keyframe"),
    Binding((".",), "next_keyframe", (), "next keyframe"),
    Binding(("N",), "next_missing", (), "next frame lacking a label"),
    Binding(("J",), "focus_jump", (), "jump to a frame number (type it, Enter)"),
    Binding(("M",), "toggle_step_adjust", (), "step-and-adjust mode on/off"),
    Binding(("C",), "copy_previous", (), "copy the points of the previous frame"),
    Binding(("X",), "delete_current_point", (), "delete the current label's point on this frame"),
    Binding(("T",), "track", (1,), "track forward N frames"),
    Binding(("Shift-T",), "track", (-1,), "track backward N frames"),
    Binding(("F",), "fill_between", (), "fill between keyframes (RSTC)"),
    Binding(("O",), "toggle_scope", (), "flow for the current label only / all labels"),
    Binding(("R",), "accept_range", (), "accept the frame range as reviewed"),
    Binding(
        ("Shift-R",),
        "accept_segment",
        (),
        "accept the stretch between the keyframes around this frame",
    ),
    Binding(
        ("A",),
        "accept_frame_predictions",
        (),
        "accept the model's points of this frame as reviewed",
    ),
    Binding(("G",), "next_to_review", (), "next frame to review (the model's ranked list)"),
    Binding(
        ("K",), "next_lost", (), "next frame where optical flow lost a point or was unreliable"
    ),
    Binding(("Control-Z",), "undo", (), "undo"),
    Binding(("Control-Shift-Z", "Control-Y"), "redo", (), "redo"),
    Binding(("L",), "add_label_dialog", (), "add a label"),
    Binding(("I",), "import_dialog", (), "import DUSTrack JSON / DeepLabCut CollectedData"),
    Binding(("Escape",), "cancel_task", (), "cancel the running optical flow"),
    Binding(("H",), "show_keys", (), "show this cheat-sheet"),
)

# Not ours but part of the workflow: listed on the cheat-sheet too.
MOUSE_HELP = (
    ("click", "place the current label here (moves it if it is already on this frame)"),
    ("click a point", "make its label the current one"),
    ("drag a point", "move it (it becomes a manual point)"),
    ("drag a model / smoothed point", "correct it: a manual annotation of its label where dropped"),
    ("drag elsewhere / wheel", "pan / zoom"),
    ("Delete", "napari: delete the selected points (select mode, S)"),
)


def install(layer, widget) -> None:
    """Bind every key of :data:`BINDINGS` on ``layer`` to the matching method of ``widget``."""
    for binding in BINDINGS:
        method = getattr(widget, binding.action)  # fail early if an action is missing
        for key in binding.keys:
            layer.bind_key(key, _caller(method, binding.args), overwrite=True)


def _caller(method, args):
    def on_key(layer):
        method(*args)

    on_key.__doc__ = getattr(method, "__doc__", None)
    return on_key


def cheat_sheet() -> list[tuple[str, str]]:
    """``(keys, what they do)`` rows for the cheat-sheet (label keys as one row)."""
    rows = [("1 ... 9", "pick label 1-9")]
    rows += [
        (" / ".join(_pretty(k) for k in b.keys), b.help) for b in BINDINGS if b not in LABEL_KEYS
    ]
    rows += list(MOUSE_HELP)
    return rows


def _pretty(key: str) -> str:
    return key.replace("Control-", "Ctrl+").replace("Shift-", "Shift+")
