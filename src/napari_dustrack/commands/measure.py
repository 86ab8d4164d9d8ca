"""`napari-dustrack measure`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'measure' is not built yet in this version")
