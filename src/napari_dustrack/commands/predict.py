"""`napari-dustrack predict`."""

from ..errors import DustrackError


def run(args) -> None:
    raise DustrackError("'predict' is not built yet in this version")
