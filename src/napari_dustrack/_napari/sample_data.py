"""npe2 sample data: simulated cardiac and muscle cines with their ground truth.

The cines ship with the package, simulated in advance (``samples/``, ~1.6 MB: simulating
takes ~15 s, too long for the GUI thread). On first use they are copied to a per-user cache
folder and opened from there like any video (lazily), so the layer has a real, writable file
path and the autosave sidecar ``<video>.dustrack/`` works. A scenario that is not shipped
(or another length) is simulated into the cache instead. The ground truth comes as a Points
layer at low opacity. ``python -m napari_dustrack._napari.sample_data`` remakes the shipped
files.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

CACHE_ENV = "NAPARI_DUSTRACK_SAMPLE_DIR"  # overrides the cache folder (tests, shared installs)
CACHE_VERSION = "v1"  # bump when the simulator's output changes
SHIPPED = Path(__file__).with_name("samples")
SCENARIOS = ("cardiac", "muscle")


def cardiac():
    """Simulated short-axis cardiac cine (contracting, twisting ring) with ground truth."""
    return sample_layers("cardiac")


def muscle():
    """Simulated pennate-muscle cine (slow contraction and a twitch) with ground truth."""
    return sample_layers("muscle")


def cache_dir() -> Path:
    """Folder holding the sample cines (``$NAPARI_DUSTRACK_SAMPLE_DIR`` or the user cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    try:
        from platformdirs import user_cache_dir

        base = Path(user_cache_dir("napari-dustrack"))
    except ImportError:  # platformdirs comes with napari; plain fallback otherwise
        base = Path.home() / ".cache" / "napari-dustrack"
    return base / "samples" / CACHE_VERSION


def ensure_sample(
    scenario: str, n_frames: int | None = None, *, folder: Path | None = None, crf: int = 8
) -> dict[str, Path]:
    """Copy the shipped ``scenario`` (or simulate it) into the cache unless it is there;
    return its file paths. ``folder`` and ``crf`` serve :func:`make_shipped`.

    The JSON description is written last, so a half-written cache is never taken as complete.
    """
    from ..io.atomic import write_text_atomic
    from ..simulate import simulate, write_simulation

    if folder is None:
        folder = cache_dir() / (scenario if n_frames is None else f"{scenario}_{int(n_frames)}")
    paths = {
        "video": folder / f"{scenario}.mp4",
        "truth": folder / f"{scenario}_truth.csv",
        "info": folder / f"{scenario}.json",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    shipped = {key: SHIPPED / p.name for key, p in paths.items()}
    if n_frames is None and all(p.is_file() for p in shipped.values()):
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("video", "truth", "info"):  # the description last, as below
            shutil.copyfile(shipped[key], paths[key])
        return paths
    sim = simulate(scenario, n_frames=n_frames)
    write_simulation(sim, folder, crf=crf)
    description = {
        "scenario": scenario,
        "fps": sim.fps,
        "pixel_spacing": list(sim.pixel_spacing),
        "n_frames": int(len(sim.frames)),
        "info": sim.info,
    }
    write_text_atomic(paths["info"], json.dumps(description, indent=1), backup=False)
    return paths


def sample_layers(scenario: str, n_frames: int | None = None) -> list[tuple]:
    """LayerData tuples ``[(image, kwargs, "image"), (points, kwargs, "points")]``."""
    from ..io.layers import table_to_points
    from ..io.table import read_points_csv
    from .geometry import cine_geometry

    paths = ensure_sample(scenario, n_frames)
    desc = json.loads(paths["info"].read_text(encoding="utf-8"))
    dy, dx = desc["pixel_spacing"]
    data = _open(paths["video"])
    meta = {
        "path": str(paths["video"]),
        "fps": float(desc["fps"]),
        "pixel_spacing": (float(dy), float(dx)),
        "n_frames": int(data.shape[0]),
        "kind": "video",
    }
    geometry = cine_geometry(meta)  # seconds and mm, like the reader's layers
    image = (
        data,
        {
            "name": f"{scenario} (simulated)",
            "metadata": {"dustrack": meta},
            "contrast_limits": (0, 255),
            "colormap": "gray",
            **geometry,
        },
        "image",
    )
    points, features = table_to_points(read_points_csv(paths["truth"]))
    truth = (
        points,
        {
            "name": "ground truth",
            "features": features,
            **geometry,
            "size": 6,
            "opacity": 0.5,
            "face_color": "label",
            "border_width": 0,
            "metadata": {"ground_truth": str(paths["truth"])},
        },
        "points",
    )
    return [image, truth]


def _open(video: Path):
    """The cine as a lazy array when the cine reader exists, else decoded into memory."""
    try:
        from ..io.cine import open_cine
    except ImportError:
        return _decode(video)
    return open_cine(video).data


def _decode(video: Path):
    import av
    import numpy as np

    with av.open(str(video)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def make_shipped(folder: Path = SHIPPED) -> None:
    """Simulate the sample scenarios into ``folder`` (the package's ``samples/``), at a
    compression that keeps them small."""
    for scenario in SCENARIOS:
        for old in folder.glob(f"{scenario}*"):
            old.unlink()
        ensure_sample(scenario, folder=folder, crf=23)


if __name__ == "__main__":
    make_shipped()
