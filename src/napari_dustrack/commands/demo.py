"""`napari-dustrack demo --out DIR`: the whole loop headless on a simulated cine."""

from ..demo import DemoSettings, run_demo


def run(args) -> None:
    settings = DemoSettings.quick() if args.quick else DemoSettings()
    run_demo(args.out, settings)
