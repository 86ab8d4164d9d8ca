"""The peer, DUSTrack 1.3.2, in its own virtual environment (it pins numpy<2 and OpenCV 4.11)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ENV = Path(__file__).resolve().parent / "_envs" / "dustrack"
PEER = ENV / "bin" / "python"


def ensure_peer_env() -> Path:
    """The peer's interpreter, creating its venv (``pip install dustrack==1.3.2``) when missing."""
    if PEER.exists():
        return PEER
    print(f"creating {ENV} (pip install dustrack==1.3.2) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
    subprocess.run([str(PEER), "-m", "pip", "install", "-q", "dustrack==1.3.2"], check=True)
    return PEER
