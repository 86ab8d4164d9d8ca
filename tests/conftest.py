"""Shared test fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEROP = Path(__file__).resolve().parents[2] / "shared" / "interop"


@pytest.fixture(scope="session")
def interop() -> Path:
    """The folder of files written by DeepLabCut and DUSTrack (../shared/interop)."""
    if not INTEROP.is_dir():
        pytest.skip(f"interop files not found at {INTEROP}")
    return INTEROP
