"""Model -> napari layer arrays for the Annotate widget (numpy only, no Qt).

How points look:

- manual: solid, in the label's colour, white rim;
- optical flow (or model) awaiting review: hollow ring in the label's colour;
- reviewed: half-transparent fill, rim in the label's colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io.colours import hex_rgba, track_colour_values
from ..io.sources import PointSource

REVIEWED_ALPHA = 0.45
WHITE = np.array([1.0, 1.0, 1.0, 1.0])
CLEAR = np.zeros(4)


def point_style(rgba: np.ndarray, manual: bool, reviewed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(face, border)`` RGBA of one point."""
    if manual:
        return rgba, WHITE
    if reviewed:
        return np.r_[rgba[:3], REVIEWED_ALPHA], rgba
    return CLEAR, rgba


def points_view(points: Mapping, labels: Sequence) -> dict:
    """Everything a Points layer needs, rows sorted by frame then label order.

    Parameters
    ----------
    points : mapping
        ``{(frame, label): Point}``.
    labels : sequence of Label
        Labels (name, colour) in display order; points of other labels are left out.

    Returns
    -------
    dict
        ``keys`` (list of (frame, label)), ``data`` (n, 3) rows (frame, y, x), ``features``
        (DataFrame label/source/confidence/reviewed), ``face`` and ``border`` (n, 4) RGBA.
    """
    order = {lab.name: i for i, lab in enumerate(labels)}
    rgba = np.array([hex_rgba(lab.colour) for lab in labels]).reshape(-1, 4)
    keys = sorted((k for k in points if k[1] in order), key=lambda k: (k[0], order[k[1]]))
    n = len(keys)
    rows = [points[k] for k in keys]
    idx = np.fromiter((order[k[1]] for k in keys), dtype=np.int64, count=n)
    x = np.fromiter((p.x for p in rows), dtype=float, count=n)
    y = np.fromiter((p.y for p in rows), dtype=float, count=n)
    frame = np.fromiter((k[0] for k in keys), dtype=float, count=n)
    manual = np.fromiter((p.source == PointSource.MANUAL for p in rows), dtype=bool, count=n)
    reviewed = np.fromiter((p.reviewed for p in rows), dtype=bool, count=n)
    colour = rgba[idx] if n else np.zeros((0, 4))
    face = np.where(
        manual[:, None],
        colour,
        np.where(reviewed[:, None], np.c_[colour[:, :3], np.full(n, REVIEWED_ALPHA)], CLEAR),
    )
    border = np.where(manual[:, None], WHITE, colour)
    features = pd.DataFrame(
        {
            "label": pd.Series([k[1] for k in keys], dtype=object),
            "source": pd.Series([p.source for p in rows], dtype=object),
            "confidence": np.fromiter((p.confidence for p in rows), dtype=float, count=n),
            "reviewed": reviewed,
        }
    )
    return {
        "keys": keys,
        "data": np.c_[frame, y, x].reshape(-1, 3),
        "features": features,
        "face": face.reshape(-1, 4),
        "border": border.reshape(-1, 4),
    }


def tracks_view(points: Mapping, labels: Sequence) -> tuple[np.ndarray, dict]:
    """Tracks layer ``data`` rows (track_id, frame, y, x) and ``features``: one track per label
    (id = position in the label list + 1), sorted by id then frame; gaps are left out.

    ``features["colour"]`` is the value :func:`.common.label_colormap` maps to the label's colour.
    """
    ids = {lab.name: i + 1 for i, lab in enumerate(labels)}
    keys = sorted((ids[k[1]], k[0], k[1]) for k in points if k[1] in ids)
    data = np.array(
        [(i, f, points[(f, lab)].y, points[(f, lab)].x) for i, f, lab in keys], dtype=float
    ).reshape(-1, 4)
    return data, {
        "label": np.array([lab for _, _, lab in keys], dtype=object),
        "colour": track_colour_values(data[:, 0], len(labels)),
    }
