"""`napari-dustrack train`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'train' is not built yet in this version")
