"""The napari process and the submitting side never import torch: it segfaults beside Mesa's
GL, and training/prediction run in dask worker processes."""

import subprocess
import sys

CODE = """
import sys
import napari_dustrack._napari.reader, napari_dustrack._napari.writer
import napari_dustrack._napari.sample_data
import importlib
import napari_dustrack._widgets.main
import napari_dustrack.workers, napari_dustrack.workers.batch, napari_dustrack.settings
import napari_dustrack.tracking.heatmap.store, napari_dustrack.tracking.heatmap.dataset
import napari_dustrack.tracking.review
for command in ("train", "predict", "batch", "smooth", "propagate", "measure", "export"):
    importlib.import_module("napari_dustrack.commands." + command)
heavy = ("torch", "torchvision", "segmentation_models_pytorch")
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_widgets_reader_and_jobs_do_not_import_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
