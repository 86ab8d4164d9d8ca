"""Commands of napari's menus: the DUSTrack dock (Layers > Track) and a display-only contrast
enhancement for dark cines (Layers > Visualize)."""

from __future__ import annotations

from napari.viewer import Viewer  # the type napari injects

from ..io.pixels import clahe

DOCK = ("napari-dustrack", "DUSTrack")


def open_dock(viewer: Viewer) -> None:
    """Show the DUSTrack dock widget (its tabs: Annotate, Model, Smooth, Measure)."""
    viewer.window.add_plugin_dock_widget(*DOCK)


def enhance_contrast(viewer: Viewer) -> None:
    """Add a CLAHE-enhanced view of the selected (or only) cine, for display only.

    The view is lazy (each frame enhanced when shown) and carries ``role: display``, so the
    widgets never track on it: tracking reads the cine's own grey frames.
    """
    from napari.layers import Image
    from napari.utils.notifications import show_info

    from .geometry import like

    active = viewer.layers.selection.active
    cines = [
        layer
        for layer in viewer.layers
        if isinstance(layer, Image) and "role" not in layer.metadata.get("dustrack", {"role": None})
    ]
    layer = active if active in cines else (cines[0] if len(cines) == 1 else None)
    if layer is None:
        show_info("Select the cine to enhance")
        return
    import dask.array as da

    source = (
        layer.data
        if isinstance(layer.data, da.Array)
        else da.from_array(layer.data, chunks=(1, *layer.data.shape[1:]))
    )
    data = source.map_blocks(_clahe_block, dtype=source.dtype)
    info = {"role": "display", "of": layer.metadata["dustrack"].get("path")}
    viewer.add_image(
        data,
        name=f"{layer.name} (CLAHE, display)",
        rgb=bool(layer.rgb),
        contrast_limits=(0, 255),
        metadata={"dustrack": info},
        blending="translucent",
        **like(layer),
    )


def _clahe_block(block):
    """One dask chunk (a frame, or a few) through :func:`clahe`."""
    import numpy as np

    return np.stack([clahe(frame) for frame in block]) if len(block) else block
