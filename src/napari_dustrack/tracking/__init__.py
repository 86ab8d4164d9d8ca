"""Tracking algorithms on numpy arrays: optical flow, smoothing, heatmap model. No Qt, no napari."""
