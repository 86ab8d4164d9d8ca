"""The label palette and colour conversions: one colour per label on every layer, plot and video.

Labels take the palette's colours in order of creation (the annotation session stores each
label's colour, so a user's choice survives); readers of a table without saved colours use the
palette in label order, so the same label gets the same colour everywhere.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np

# Distinct colours for labels in order of creation (a colour-blind-safe set first).
PALETTE = (
    "#e69f00",
    "#56b4e9",
    "#009e73",
    "#f0e442",
    "#0072b2",
    "#d55e00",
    "#cc79a7",
    "#ffffff",
    "#ff4040",
    "#40ff40",
    "#8080ff",
    "#ffa0c0",
    "#a0ffe0",
    "#c0a060",
)


def next_colour(used: set[str]) -> str:
    """The first palette colour not in ``used``; past the palette, hues spread evenly."""
    for colour in PALETTE:
        if colour not in used:
            return colour
    h = (len(used) * 0.381966) % 1.0  # golden angle: neighbours still differ
    r, g, b = colorsys.hsv_to_rgb(h, 0.8, 1.0)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> ``(r, g, b)`` of 0..255."""
    colour = colour.lstrip("#")
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))


def hex_rgba(colour: str, alpha: float = 1.0) -> np.ndarray:
    """``#rrggbb`` -> RGBA floats 0..1."""
    return np.array([c / 255.0 for c in hex_to_rgb(colour)] + [float(alpha)])


def label_colour(index: int) -> tuple[int, int, int]:
    """RGB of the ``index``-th label when no colour was saved for it (the palette, in order)."""
    return hex_to_rgb(PALETTE[index % len(PALETTE)])


def label_hex(labels: Sequence[str], saved: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{label: "#rrggbb"}``: the saved colour of each label, else the palette in label order."""
    saved = saved or {}
    out = {}
    for i, label in enumerate(labels):
        out[label] = saved.get(label) or PALETTE[i % len(PALETTE)]
    return out


def rgba_rows(
    row_labels: Sequence[str], colours: Mapping[str, str], alpha: float = 1.0
) -> np.ndarray:
    """(n, 4) RGBA of each row's label (grey for a label without a colour)."""
    table = {lab: hex_rgba(c, alpha) for lab, c in colours.items()}
    grey = np.array([0.6, 0.6, 0.6, alpha])
    return np.array([table.get(lab, grey) for lab in row_labels]).reshape(-1, 4)


def track_colour_values(ids: np.ndarray, n_labels: int) -> np.ndarray:
    """The value napari's colormap looks up for each track id (1..n_labels): the middle of the
    id's band of :func:`track_colormap` (napari does not rescale values of a supplied colormap)."""
    return (np.asarray(ids, dtype=float) - 0.5) / max(int(n_labels), 1)


def track_colormap(colours: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(colors (n, 4), controls (n + 1,))`` of a stepwise colormap: band ``i`` is label ``i``'s
    colour (napari ``Colormap(..., interpolation="zero")``)."""
    colours = list(colours) or ["#ffffff"]
    rgba = np.array([hex_rgba(c) for c in colours])
    return rgba, np.linspace(0.0, 1.0, len(colours) + 1)
