"""The napari process never imports torch (it segfaults beside Mesa's GL; training runs in workers)."""

import subprocess
import sys

CODE = """
import sys
import napari_dustrack._napari.reader, napari_dustrack._napari.writer, napari_dustrack._napari.sample_data
import napari_dustrack._widgets.main as main
import importlib
for _, module, _ in main.TABS:
    importlib.import_module(module)
import napari_dustrack.jobs, napari_dustrack.tracking.heatmap
print(sorted(m for m in ("torch", "torchvision", "segmentation_models_pytorch") if m in sys.modules))
"""


def test_widgets_reader_and_jobs_do_not_import_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
