"""`napari-dustrack batch`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'batch' is not built yet in this version")
