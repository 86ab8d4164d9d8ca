import subprocess
import sys

import npe2


def test_manifest_validates():
    out = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-dustrack"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_manifest_contributions_resolve():
    manifest = npe2.PluginManifest.from_distribution("napari-dustrack")
    contrib = manifest.contributions
    assert contrib.readers and contrib.writers and contrib.sample_data
    assert [w.display_name for w in contrib.widgets] == ["DUSTrack"]
    for command in contrib.commands:
        module, _, attr = command.python_name.partition(":")
        mod = __import__(module, fromlist=[attr])
        assert callable(getattr(mod, attr)), command.python_name
