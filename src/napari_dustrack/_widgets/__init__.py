"""napari dock widgets: translate between layers and tracking/, io/ and jobs; no algorithms here."""
