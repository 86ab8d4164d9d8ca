"""Physical units of a cine: pixel spacing and frame rate, and the labels columns carry.

Geometry is done in physical coordinates (``X = x * dx``, ``Y = y * dy``) so that anisotropic
pixels give correct distances, areas and angles; with no spacing the unit is the pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    """Pixel spacing ``(dy, dx)`` in mm and frame rate in frames/s; either may be unknown.

    Parameters
    ----------
    spacing : tuple of float, optional
        Row and column spacing ``(dy, dx)`` in millimetres.
    fps : float, optional
        Frames per second.
    """

    spacing: tuple[float, float] | None = None
    fps: float | None = None

    def __post_init__(self):
        if self.spacing is not None:
            dy, dx = (float(v) for v in self.spacing)
            if not (np.isfinite(dy) and np.isfinite(dx) and dy > 0 and dx > 0):
                raise ValueError(
                    f"pixel spacing must be two positive numbers, got {self.spacing!r}"
                )
            object.__setattr__(self, "spacing", (dy, dx))
        if self.fps is not None:
            fps = float(self.fps)
            if not (np.isfinite(fps) and fps > 0):
                raise ValueError(f"frame rate must be positive, got {self.fps!r}")
            object.__setattr__(self, "fps", fps)

    @classmethod
    def of(cls, spacing=None, fps=None) -> Calibration:
        """Like the constructor but treats invalid values (0, NaN) as unknown."""
        try:
            spacing = None if spacing is None else cls(spacing=tuple(spacing)).spacing
        except (ValueError, TypeError):
            spacing = None
        try:
            fps = None if fps is None else cls(fps=fps).fps
        except (ValueError, TypeError):
            fps = None
        return cls(spacing, fps)

    @property
    def length_unit(self) -> str:
        return "mm" if self.spacing is not None else "px"

    @property
    def time_unit(self) -> str:
        return "s" if self.fps is not None else "frame"

    @property
    def area_unit(self) -> str:
        return f"{self.length_unit}^2"

    @property
    def velocity_unit(self) -> str:
        return f"{self.length_unit}/{self.time_unit}"

    @property
    def frame_interval(self) -> float:
        """Time between frames in :attr:`time_unit`."""
        return 1.0 / self.fps if self.fps is not None else 1.0

    def to_physical(self, xy: np.ndarray) -> np.ndarray:
        """Pixel ``(..., 2)`` (x, y) to physical (X, Y) in :attr:`length_unit`."""
        xy = np.asarray(xy, dtype=float)
        if self.spacing is None:
            return xy.copy()
        dy, dx = self.spacing
        return xy * np.array([dx, dy])

    def time_column(self) -> str | None:
        """Name of the time column, or None when there is no frame rate (``frame`` is the time)."""
        return "time [s]" if self.fps is not None else None
