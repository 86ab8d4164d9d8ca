"""`napari-dustrack export`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'export' is not built yet in this version")
