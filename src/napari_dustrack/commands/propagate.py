"""`napari-dustrack propagate`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'propagate' is not built yet in this version")
