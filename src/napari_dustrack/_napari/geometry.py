"""Where a cine's layers sit in napari's world: scale, translate, units and axis labels.

Layer data stay in frames and pixels (``(frame, y, x)``, the project's convention); the world
axes are seconds and millimetres when the file says how long a frame is and how large a pixel
is, else frames and pixels. napari's scale bar, sliders and status bar follow the layer's
``units`` and ``axis_labels``; layers derived from a cine copy all four (:func:`like`).
"""

from __future__ import annotations

import math

AXIS_LABELS = ("t", "y", "x")
_KEYS = ("scale", "translate", "units", "axis_labels")


def cine_geometry(info: dict) -> dict:
    """Layer keyword arguments for a cine whose metadata is ``info`` (fps, pixel_spacing).

    Time is in seconds when ``fps`` is known (one frame = ``1 / fps`` s), else in frames
    (napari's plain ``pixel`` unit, scale 1); space in mm when ``pixel_spacing`` is known.
    """
    fps = info.get("fps")
    spacing = info.get("pixel_spacing")
    dt, t_unit = (frame_seconds(fps, info.get("n_frames")), "s") if fps else (1.0, "pixel")
    (dy, dx), space = (spacing, "mm") if spacing else ((1.0, 1.0), "pixel")
    return {
        "scale": (dt, float(dy), float(dx)),
        "translate": (0.0, 0.0, 0.0),
        "units": (t_unit, space, space),
        "axis_labels": AXIS_LABELS,
    }


def frame_seconds(fps: float, n_frames: int | None) -> float:
    """``1 / fps``, nudged up by a few ulps where napari would otherwise lose the last frame.

    napari counts slider steps as ``int(stop / step) + 1`` with ``stop = (n - 1) * step``;
    for a few lengths the division falls just short of ``n - 1`` (e.g. 30 frames at 100 fps
    gave 29 steps). The nudge is ~1e-16 s.
    """
    dt = 1.0 / float(fps)
    n = int(n_frames or 0)
    for _ in range(64):
        if n < 2 or int(((n - 1) * dt) / dt) + 1 == n:
            break
        dt = math.nextafter(dt, math.inf)
    return dt


def like(layer) -> dict:
    """The four geometry keywords of ``layer`` (its last three axes), for a derived layer."""
    out = {}
    for key in _KEYS:
        value = getattr(layer, key, None)
        if value is not None:
            out[key] = tuple(str(v) if key == "units" else v for v in tuple(value)[-3:])
    return out
