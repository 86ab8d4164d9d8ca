"""napari-dustrack: point tracking in ultrasound cines (the DUSTrack method) for napari."""

__version__ = "0.1.0"

from .errors import DustrackError  # noqa: E402

__all__ = ["DustrackError", "__version__"]
