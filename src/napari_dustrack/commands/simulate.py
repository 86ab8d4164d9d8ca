"""`napari-dustrack simulate`: write a synthetic cine and its ground truth."""

from __future__ import annotations


def run(args) -> None:
    """Simulate ``args.scenario`` and write ``<scenario>.mp4`` + ``<scenario>_truth.csv``."""
    from ..simulate import simulate, write_simulation

    sim = simulate(args.scenario, n_frames=args.frames, seed=args.seed)
    paths = write_simulation(sim, args.out)
    print(paths["video"])
    print(paths["truth"])
