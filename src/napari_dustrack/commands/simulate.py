"""`napari-dustrack simulate`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'simulate' is not built yet in this version")
