"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# A few tests load a model in the test process itself (after napari has made its GL context in
# earlier GUI tests); with Mesa's software OpenGL, torchvision imported after that context
# segfaults the process, and imported before it does not. The plugin's own GUI process never
# imports torch (tests/test_gui_process_without_torch.py checks that in a fresh process).
try:
    import segmentation_models_pytorch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:  # the base install, without the model extra
    pass

# User settings (e.g. the "Run on" scheduler) of whoever runs the tests must not leak in.
os.environ["NAPARI_DUSTRACK_CONFIG_DIR"] = tempfile.mkdtemp(prefix="dustrack-settings-")

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop"


@pytest.fixture(scope="session")
def interop() -> Path:
    """The folder of files written by DeepLabCut and DUSTrack (../shared/interop)."""
    if not INTEROP.is_dir():
        pytest.skip(f"interop files not found at {INTEROP}")
    return INTEROP
