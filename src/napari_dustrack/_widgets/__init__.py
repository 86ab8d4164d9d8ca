"""napari dock widgets: translate between layers and tracking/, io/ and workers; no algorithms."""
