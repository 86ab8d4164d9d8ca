"""`napari-dustrack demo`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'demo' is not built yet in this version")
