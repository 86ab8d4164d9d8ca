"""Test helpers shared by the widget tests: a simulated cine shown as the plugin's reader
shows it."""

from __future__ import annotations


def add_cine(viewer, sim, video, name: str = "cine"):
    """Add the frames of a simulation ``sim`` written to ``video`` as a cine image layer, with
    the ``dustrack`` metadata the reader gives (path, frame rate, no pixel spacing)."""
    return viewer.add_image(
        sim.frames,
        name=name,
        metadata={
            "dustrack": {
                "path": str(video),
                "fps": sim.fps,
                "pixel_spacing": None,
                "n_frames": len(sim.frames),
                "kind": "video",
            }
        },
    )
