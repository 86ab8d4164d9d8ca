"""Readers and writers: cines (lazy, dask-backed) and point tables. No Qt, no napari."""
