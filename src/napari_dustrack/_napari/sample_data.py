"""npe2 sample data: simulated cardiac and muscle cines with their ground truth.

The cine is simulated once, written as an MP4 to a per-user cache folder and opened from there
like any video (lazily, when the cine reader is available), so the layer has a real file path
and the autosave sidecar ``<video>.dustrack/`` works. The ground truth comes as a Points
layer at low opacity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

CACHE_ENV = "NAPARI_DUSTRACK_SAMPLE_DIR"  # overrides the cache folder (tests, shared installs)
CACHE_VERSION = "v1"  # bump when the simulator's output changes


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


def ensure_sample(scenario: str, n_frames: int | None = None) -> dict[str, Path]:
    """Simulate ``scenario`` into the cache unless it is there; return its file paths.

    The JSON description is written last, so a half-written cache is never taken as complete.
    """
    from ..io.atomic import write_text_atomic
    from ..simulate import simulate, write_simulation

    folder = cache_dir() / (scenario if n_frames is None else f"{scenario}_{int(n_frames)}")
    paths = {"video": folder / f"{scenario}.mp4", "truth": folder / f"{scenario}_truth.csv",
             "info": folder / f"{scenario}.json"}
    if all(p.is_file() for p in paths.values()):
        return paths
    sim = simulate(scenario, n_frames=n_frames)
    write_simulation(sim, folder)
    description = {"scenario": scenario, "fps": sim.fps, "pixel_spacing": list(sim.pixel_spacing),
                   "n_frames": int(len(sim.frames)), "info": sim.info}
    write_text_atomic(paths["info"], json.dumps(description, indent=1), backup=False)
    return paths


def sample_layers(scenario: str, n_frames: int | None = None) -> list[tuple]:
    """LayerData tuples ``[(image, kwargs, "image"), (points, kwargs, "points")]``."""
    from ..io.layers import table_to_points
    from ..io.table import read_points_csv

    paths = ensure_sample(scenario, n_frames)
    desc = json.loads(paths["info"].read_text(encoding="utf-8"))
    dy, dx = desc["pixel_spacing"]
    data = _open(paths["video"])
    meta = {"path": str(paths["video"]), "fps": float(desc["fps"]),
            "pixel_spacing": (float(dy), float(dx)), "n_frames": int(data.shape[0]),
            "kind": "video"}
    scale = (1.0, float(dy), float(dx))
    image = (data, {"name": f"{scenario} (simulated)", "metadata": {"dustrack": meta},
                    "scale": scale, "contrast_limits": (0, 255), "colormap": "gray"}, "image")
    points, features = table_to_points(read_points_csv(paths["truth"]))
    truth = (points, {"name": "ground truth", "features": features, "scale": scale,
                      "size": 6, "opacity": 0.5, "face_color": "label", "border_width": 0,
                      "metadata": {"ground_truth": str(paths["truth"])}}, "points")
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
