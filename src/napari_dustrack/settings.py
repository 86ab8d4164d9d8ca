"""User settings that outlive a session (a small JSON in the user's config folder).

For now one setting: where heavy work runs ("Run on"). An empty scheduler address means a
local cluster of worker processes started on demand; otherwise it is the address of an
existing dask scheduler (``tcp://host:8786``), as for ``--scheduler``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import DustrackError
from .io.atomic import write_text_atomic

APP = "napari-dustrack"
FILE = "settings.json"
CONFIG_ENV = "NAPARI_DUSTRACK_CONFIG_DIR"  # overrides the folder (tests, shared installs)


def config_dir() -> Path:
    """The folder of the settings file (platformdirs' user config dir unless overridden)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP, appauthor=False))


def load_settings() -> dict:
    """All settings; ``{}`` when there is no (readable) settings file yet."""
    try:
        data = json.loads((config_dir() / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(**changes) -> dict:
    """Update some settings and write the file atomically; returns all settings."""
    data = load_settings()
    data.update(changes)
    write_text_atomic(config_dir() / FILE, json.dumps(data, indent=1), backup=False)
    return data


def check_address(address: str) -> str:
    """A scheduler address as dask takes it (``host:port`` gets ``tcp://``); ``""`` = local.

    Raises
    ------
    DustrackError
        Not of the form ``[protocol://]host:port``.
    """
    address = (address or "").strip()
    if not address:
        return ""
    if "://" not in address:
        address = "tcp://" + address
    rest = address.split("://", 1)[1]
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise DustrackError(
            f"scheduler address {address!r} is not protocol://host:port "
            "(e.g. tcp://192.168.1.10:8786)"
        )
    return address


def scheduler_address() -> str | None:
    """The "Run on" scheduler address, or None for a local cluster."""
    value = load_settings().get("scheduler", "")
    try:
        return check_address(value) or None
    except DustrackError:
        return None  # a hand-edited bad value: run locally rather than fail


def set_scheduler_address(address: str | None) -> str:
    """Store the "Run on" address (None/empty: local cluster); returns it as stored."""
    address = check_address(address or "")
    save_settings(scheduler=address)
    return address
