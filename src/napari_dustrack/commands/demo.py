"""`napari-dustrack demo --out DIR`: the whole loop headless on a simulated cine."""

HELP = "run the whole loop headless on the built-in simulated cine"
DESTINATION = ("out", True)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack demo``."""
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quick", action="store_true", help="a shorter run (for tests)")


def run(args) -> None:
    from ..demo import DemoSettings, run_demo  # the whole loop's imports, on use only

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    run_demo(args.out, settings)
