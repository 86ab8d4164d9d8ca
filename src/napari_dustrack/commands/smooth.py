"""`napari-dustrack smooth`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'smooth' is not built yet in this version")
