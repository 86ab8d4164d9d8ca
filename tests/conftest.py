"""Shared test fixtures."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# User settings (e.g. the "Run on" scheduler) of whoever runs the tests must not leak in.
os.environ["NAPARI_DUSTRACK_CONFIG_DIR"] = tempfile.mkdtemp(prefix="dustrack-settings-")

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop"


@pytest.fixture(scope="session")
def interop() -> Path:
    """The folder of files written by DeepLabCut and DUSTrack (../shared/interop)."""
    if not INTEROP.is_dir():
        pytest.skip(f"interop files not found at {INTEROP}")
    return INTEROP
