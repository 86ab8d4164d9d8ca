"""Mouse bindings of the Annotate widget on its "annotations" Points layer.

One drag callback (napari's generator protocol: press, moves, release):

- a click on the image places the current label at the current frame, or moves it there if
  that label is already on this frame (never a second point of the same label);
- a click on a point makes its label the current one;
- dragging a point moves it; the result is a manual point (a dragged flow point becomes manual);
- dragging a point of a prediction layer (``model``, ``smoothed points``) makes a manual
  annotation of its label where it is dropped (the prediction itself stays as predicted), whether
  the annotations layer or the prediction layer is the active one;
- dragging anywhere else pans the camera as usual.

It acts while the layer is in napari's pan/zoom mode (the widget's default) and, for dragging
points, in add mode. Select and transform modes are left to napari; the widget syncs their edits.
"""

from __future__ import annotations

import numpy as np

DRAG_THRESHOLD_PX = 5  # below this many screen pixels a press-release is a click


def install(layer, widget, prediction: bool = False) -> None:
    """Add the annotate callback to ``layer``; ``widget`` provides the actions.

    ``prediction``: ``layer`` holds predictions; a drag leaves its point where it was.
    """
    callback = annotate_callback(widget, prediction)
    callback.__dustrack__ = True
    layer.mouse_drag_callbacks.append(callback)
    layer.cursor = "crosshair"


def annotate_callback(widget, prediction: bool = False):
    """The drag callback; ``widget`` has ``current_label``, ``place``, ``move``, ``pick_label``
    and ``prediction_layers``."""

    def on_press(layer, event):
        if getattr(event, "button", 1) != 1 or set(event.modifiers or ()):
            return
        if layer.mode not in ("pan_zoom", "add") or list(event.dims_displayed)[-2:] != [1, 2]:
            return
        start = np.asarray(event.pos, dtype=float)
        hit = _hit(layer, event)
        if hit is not None:
            yield from _drag_point(layer, event, widget, hit, start, prediction)
            return
        for other in () if prediction else widget.prediction_layers():
            hit = _hit(other, event)
            if hit is not None:
                yield from _drag_point(other, event, widget, hit, start, True)
                return
        if layer.mode == "pan_zoom":
            yield from _click_to_place(layer, event, widget, start)

    return on_press


def _hit(layer, event) -> int | None:
    hit = layer.get_value(
        event.position,
        view_direction=event.view_direction,
        dims_displayed=event.dims_displayed,
        world=True,
    )
    return None if hit is None else int(hit)


def _moved(event, start) -> bool:
    return bool(np.hypot(*(np.asarray(event.pos, dtype=float) - start)) >= DRAG_THRESHOLD_PX)


def _row_key(layer, index: int) -> tuple[int, str]:
    frame = round(float(layer.data[index, 0]))
    return frame, str(layer.features["label"].iloc[index])


def _drag_point(layer, event, widget, index: int, start, prediction: bool = False):
    frame, label = _row_key(layer, index)
    origin = layer.data[index].copy()
    grab = layer.world_to_data(event.position)[-2:] - layer.data[index, -2:]
    yield
    dragging = False
    while event.type == "mouse_move":
        event.handled = True  # the camera stays put while a point is being dragged
        if dragging or _moved(event, start):
            dragging = True
            # preview only: the model is updated once, on release
            layer.data[index, -2:] = layer.world_to_data(event.position)[-2:] - grab
            layer.refresh()
        yield
    if prediction and dragging:
        layer.data[index] = origin  # the prediction stays; the correction is an annotation
        layer.refresh()
    if dragging or _moved(event, start):
        y, x = layer.world_to_data(event.position)[-2:] - grab
        widget.move(frame, label, float(x), float(y), action="correct" if prediction else "move")
    elif label == widget.current_label:
        y, x = layer.world_to_data(event.position)[-2:]
        widget.place(frame, label, float(x), float(y))
    else:
        widget.pick_label(label)


def _click_to_place(layer, event, widget, start):
    yield
    while event.type == "mouse_move":
        if not _moved(event, start):
            event.handled = True  # hand jitter during a click does not pan the camera
        yield
    if _moved(event, start) or widget.current_label is None:
        return
    frame, y, x = layer.world_to_data(event.position)[-3:]
    widget.place(round(float(frame)), widget.current_label, float(x), float(y))
