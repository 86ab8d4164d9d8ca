import subprocess
import sys

import npe2


def test_manifest_validates():
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-dustrack"],
        capture_output=True,
        text=True,
    )
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


def test_reader_patterns_cover_every_suffix_the_reader_takes():
    from napari_dustrack._napari.reader import POINT_SUFFIXES
    from napari_dustrack.io.cine import (
        DICOM_SUFFIXES,
        IMAGE_SUFFIXES,
        TIFF_SUFFIXES,
        VIDEO_SUFFIXES,
    )

    manifest = npe2.PluginManifest.from_distribution("napari-dustrack")
    (reader,) = manifest.contributions.readers
    patterns = set(reader.filename_patterns)
    taken = VIDEO_SUFFIXES + DICOM_SUFFIXES + TIFF_SUFFIXES + IMAGE_SUFFIXES + POINT_SUFFIXES
    assert {f"*{suffix}" for suffix in taken} == patterns
    assert reader.accepts_directories


def test_writers_offer_csv_h5_and_json_and_menus_are_contributed():
    manifest = npe2.PluginManifest.from_distribution("napari-dustrack")
    for layer_type in ("points", "tracks"):
        extensions = {
            ext
            for w in manifest.contributions.writers
            if w.layer_types == [layer_type]
            for ext in w.filename_extensions
        }
        assert extensions == {".csv", ".h5", ".json"}, layer_type
    menus = manifest.contributions.menus
    assert [item.command for item in menus["napari/layers/track"]] == ["napari-dustrack.open_dock"]
    assert [item.command for item in menus["napari/layers/visualize"]] == [
        "napari-dustrack.enhance_contrast"
    ]
