"""Speed of measurements and exports, and measurement accuracy on the simulator's geometry.

Usage::

    python benchmarks/bench_measure_export.py                 # defaults below
    python benchmarks/bench_measure_export.py --long 100000   # frames in the long table

1. ``compute`` on the simulated cardiac and muscle ground truth (default size and length):
   wall-clock time for the measure set of each scenario (cardiac: wall distance + strain,
   cavity area, 4-point deformation; muscle: architecture, fascicle strain, velocity).
2. The same measure set on a long random-walk table (``--long`` frames, 6 labels), the size
   of a 30-minute recording at 50 fps.
3. Point exports of that long table (native CSV, DeepLabCut H5 and CSV, DUSTrack JSON) and
   reading them back: seconds each.
4. MP4 with the tracks drawn: frames per second for the simulated cardiac cine (256 px,
   upscaled 2x so labels are readable), drawing and H.264 encoding included.
5. Accuracy check: the muscle simulator (``simulate/scenes.py``, ``Muscle``) builds its fascicles at
   22 deg to the image x axis, the superficial aponeurosis level and the deep one tilted by
   4 deg, so ``architecture`` on the ground truth must give 18 deg pennation (to the deep
   aponeurosis) and 22 deg to the superficial one at frame 0, before the contraction starts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_dustrack.io.export import export_mp4, export_points
from napari_dustrack.io.points_io import read_points
from napari_dustrack.io.table import from_array
from napari_dustrack.measure import Calibration, Measure, compute
from napari_dustrack.simulate import simulate

CARDIAC = [
    Measure("wall", "distance", ["anterior_endo", "anterior_epi"]),
    Measure("wall thickening", "distance", ["anterior_endo", "anterior_epi"], change="relative"),
    Measure("cavity", "area", ["anterior_endo", "septal", "inferior_endo", "lateral"]),
    Measure("myocardium", "deformation", ["anterior_endo", "septal", "inferior_endo", "lateral"]),
]
MUSCLE = [
    Measure(
        "gm",
        "architecture",
        [
            "fascicle_proximal",
            "fascicle_distal",
            "sup_apo_1",
            "sup_apo_2",
            "deep_apo_1",
            "deep_apo_2",
        ],
    ),
    Measure("fascicle", "distance", ["fascicle_proximal", "fascicle_distal"], change="relative"),
    Measure("tip", "velocity", ["fascicle_distal"]),
]


def timed(func, *args, repeat=3, **kwargs):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", type=int, default=90_000, help="frames in the long table")
    args = parser.parse_args()

    sims = {name: simulate(name) for name in ("cardiac", "muscle")}
    print("## compute on the simulator's ground truth (best of 3)")
    for name, measures in (("cardiac", CARDIAC), ("muscle", MUSCLE)):
        sim = sims[name]
        cal = Calibration(sim.pixel_spacing, sim.fps)
        t, result = timed(compute, sim.truth, measures, cal, n_frames=len(sim.frames))
        print(
            f"{name}: {len(sim.frames)} frames, {len(result.columns) - 2} columns: {t * 1e3:.1f} ms"
        )

    sim = sims["muscle"]
    res = compute(
        sim.truth, MUSCLE[:1], Calibration(sim.pixel_spacing, sim.fps), n_frames=len(sim.frames)
    )
    print("\n## accuracy: muscle architecture on the ground truth, frame 0")
    print(
        f"pennation {res['gm pennation angle [deg]'][0]:.4f} deg (built: 18), "
        f"superficial {res['gm superficial angle [deg]'][0]:.4f} deg (built: 22)"
    )

    rng = np.random.default_rng(0)
    n = args.long
    start = rng.uniform(50, 200, (1, 6, 2))
    xy = start + np.cumsum(rng.normal(0, 0.3, (n, 6, 2)), axis=0)
    labels = ["anterior_endo", "anterior_epi", "septal", "inferior_endo", "lateral", "x"]
    table = from_array(xy, labels, source="smoothed")
    t, result = timed(compute, table, CARDIAC, Calibration((0.2, 0.15), 50.0), repeat=1)
    print(f"\n## long table: {n} frames x 6 labels ({len(table)} rows)")
    print(f"compute (cardiac set, {len(result.columns) - 2} columns): {t:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        for name in (
            "points.csv",
            "CollectedData_bench.h5",
            "CollectedData_bench.csv",
            "bench_annotations_smoothed.json",
        ):
            path = Path(tmp) / name
            tw, _ = timed(export_points, table, path, repeat=1)
            tr, back = timed(read_points, path, repeat=1)
            assert len(back) == len(table)
            print(f"{name}: write {tw:.2f} s, read {tr:.2f} s, {path.stat().st_size / 1e6:.1f} MB")

        sim = sims["cardiac"]
        path = Path(tmp) / "overlay.mp4"
        t, _ = timed(export_mp4, sim.frames, sim.truth, path, sim.fps, repeat=1)
        print(
            f"\n## MP4 with tracks: {len(sim.frames)} frames {sim.frames.shape[1:]} -> 2x upscaled"
        )
        print(f"{t:.2f} s = {len(sim.frames) / t:.0f} frames/s")


if __name__ == "__main__":
    main()
