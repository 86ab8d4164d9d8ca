"""`napari-dustrack simulate`: write a synthetic cine and its ground truth."""

from __future__ import annotations

from ._args import COUNT, POSITIVE_INT

HELP = "write a synthetic ultrasound cine with ground truth"
DESTINATION = ("out", True)


def add_arguments(p) -> None:
    """The options of ``napari-dustrack simulate``."""
    p.add_argument(
        "--scenario",
        default="cardiac",
        help="cardiac, muscle, probe_slide or probe_slide_decorrelated",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=POSITIVE_INT, default=None, help="number of frames")
    p.add_argument("--seed", type=COUNT, default=0, help="random seed (>= 0)")


def run(args) -> None:
    """Simulate ``args.scenario`` and write ``<scenario>.mp4`` + ``<scenario>_truth.csv``."""
    from ..simulate import simulate, write_simulation

    sim = simulate(args.scenario, n_frames=args.frames, seed=args.seed)
    paths = write_simulation(sim, args.out)
    print(paths["video"])
    print(paths["truth"])
