"""The Measure tab's exports: points (CSV, DeepLabCut, DUSTrack JSON), measurements, MP4.

The ``*_to(path)`` methods write a file (tests and scripts call them); file dialogs only pick
the path. The formats are :mod:`napari_dustrack.io.export`'s.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from qtpy.QtWidgets import QFileDialog

from ..errors import DustrackError
from ..io.export import export_mp4, export_points, write_measurements_csv
from ..measure import compute
from .common import cine_info, find_cine_layer, notify_error, open_frames


class MeasureExports:
    """Part of :class:`~napari_dustrack._widgets.measure.MeasureWidget`: the exports."""

    def export_table(self) -> pd.DataFrame:
        name = self.export_combo.currentText()
        if name not in self.tables:
            raise DustrackError("choose a layer with labelled points to export")
        return self.tables[name]

    def _video_path(self) -> str | None:
        return cine_info(find_cine_layer(self.viewer)).get("path")

    def export_points_csv_to(self, path) -> Path:
        return export_points(self.export_table(), path, fmt="csv")

    def export_dlc_to(self, path) -> Path:
        return export_points(
            self.export_table(), path, fmt="dlc", video=self._video_path(), n_frames=self.n_frames()
        )

    def export_dustrack_to(self, path) -> Path:
        return export_points(self.export_table(), path, fmt="dustrack")

    def export_measurements_to(self, path) -> Path:
        name = self.export_combo.currentText()
        table = self.export_table()
        if not self.measures:
            raise DustrackError("define a measure first")
        usable = [m for m in self.measures if set(m.labels) <= set(table["label"].unique())]
        if not usable:
            raise DustrackError(f"layer {name!r} has none of the measured labels")
        result = compute(table, usable, self.calibration(), n_frames=self.n_frames())
        return write_measurements_csv(result, path)

    def export_mp4_to(self, path):
        """Start writing the overlay video in the background; returns the worker."""
        cine = find_cine_layer(self.viewer)
        if cine is None:
            raise DustrackError("open a cine first: the video is drawn on its frames")
        table = self.export_table()
        frames = open_frames(cine)
        fps = cine_info(cine).get("fps")
        colours = self.label_colours()

        def job(progress=None, cancel=None):
            try:
                return export_mp4(
                    frames, table, path, fps=fps, colours=colours, progress=progress, cancel=cancel
                )
            finally:
                if hasattr(frames, "close"):
                    frames.close()

        return self.task.run(
            job, label="writing MP4", on_done=lambda p: self.status.setText(f"wrote {p}")
        )

    def _ask_and_export(self, title: str, file_filter: str, method) -> None:
        path, _ = QFileDialog.getSaveFileName(self, f"Export {title}", "", file_filter)
        if not path:
            return
        try:
            result = method(path)
        except DustrackError as exc:
            notify_error(exc)
            return
        if isinstance(result, Path):
            self.status.setText(f"wrote {result}")
