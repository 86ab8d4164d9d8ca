"""Moved to :mod:`napari_dustrack.io.sidecar`; this re-export goes once every import uses that."""
from .io.sidecar import *  # noqa: F401,F403
from .io.sidecar import __all__  # noqa: F401
