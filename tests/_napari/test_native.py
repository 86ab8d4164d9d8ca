"""napari-native behaviour in a real viewer: units, axis labels, colour, the ultrasound region."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_dustrack.io.cine import open_cine
from napari_dustrack.io.table import make_table, write_points_csv

pytestmark = pytest.mark.gui

_spec = importlib.util.spec_from_file_location(
    "dustrack_test_media", Path(__file__).resolve().parents[1] / "io" / "media.py"
)
media = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(media)

H, W = 96, 128
BOX = (16, 24, 80, 112)  # y0, x0, y1, x1 of the B-mode image inside the screen


def screen_frames(n=12, rgb=False, seed=1):
    """A scanner screen: changing speckle inside BOX, still text and a ruler around it."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, H, W), np.uint8)
    y0, x0, y1, x1 = BOX
    frames[:, y0:y1, x0:x1] = rng.integers(20, 230, (n, y1 - y0, x1 - x0))
    frames[:, 2:10, 4:60] = 200  # burned-in patient text
    frames[:, 20:90, 118:121] = 255  # depth ruler
    if not rgb:
        return frames
    colour = np.repeat(frames[..., None], 3, axis=-1)
    colour[:, 40:46, 40:60] = (255, 200, 0)  # a coloured caliper
    return colour


def region_item(box, spatial=1, data_type=1, dx_cm=0.02, dy_cm=0.03):
    y0, x0, y1, x1 = box
    item = media.us_region(dx_cm, dy_cm, W, H)
    item.RegionSpatialFormat, item.RegionDataType = spatial, data_type
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1 - 1, y1 - 1
    return item


def write_us_dicom(path, frames, regions):
    import pydicom

    media.write_dicom(path, frames, frame_time_ms=20.0, region_cm=None)
    ds = pydicom.dcmread(str(path))
    ds.SequenceOfUltrasoundRegions = regions
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def _open(viewer, path):
    return viewer.open(str(path), plugin="napari-dustrack")


def _notes(severity):
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records if n.severity == severity]


def _scale_bar_text(viewer):
    overlay = viewer.canvas.overlays.scale_bar
    canvas = viewer.window._qt_viewer.canvas
    return " ".join(visual.node.text.text for visual in canvas._viewer_overlay_to_visual[overlay])


def test_dicom_with_regions_shows_mm_seconds_and_its_region(make_napari_viewer, tmp_path, qtbot):
    from napari.layers import Image, Shapes
    from napari.utils.notifications import NotificationSeverity

    doppler = region_item((80, 0, 96, 128), spatial=3, data_type=3)  # spectral strip below
    path = write_us_dicom(tmp_path / "us.dcm", screen_frames(), [doppler, region_item(BOX)])
    viewer = make_napari_viewer()
    before = len(_notes(NotificationSeverity.WARNING))
    layers = _open(viewer, path)
    image, outline = layers
    assert isinstance(image, Image) and isinstance(outline, Shapes)
    assert np.allclose(image.scale, (0.02, 0.3, 0.2))  # 50 fps, dy 0.3 mm, dx 0.2 mm
    assert [str(u) for u in image.units] == ["second", "millimeter", "millimeter"]
    assert tuple(image.axis_labels) == ("t", "y", "x")
    assert viewer.dims.axis_labels == ("t", "y", "x")
    region = image.metadata["dustrack"]["region"]
    assert (region["y0"], region["x0"], region["y1"], region["x1"]) == BOX
    assert region["source"] == "dicom"
    np.testing.assert_allclose(
        outline.data[0], [[15.5, 23.5], [15.5, 111.5], [79.5, 111.5], [79.5, 23.5]]
    )
    assert np.allclose(outline.scale, (0.3, 0.2))
    warnings = _notes(NotificationSeverity.WARNING)[before:]
    assert len(warnings) == 1 and "spectral Doppler" in warnings[0] and str(path) in warnings[0]
    # frames are data coordinates: frame 7 is the 8th step whatever the time scale
    viewer.dims.set_current_step(0, 7)
    assert viewer.dims.point[0] == pytest.approx(0.14)
    np.testing.assert_array_equal(np.asarray(image._slice.image.view), screen_frames()[7])
    viewer.canvas.overlays.scale_bar.visible = True
    qtbot.waitUntil(lambda: "mm" in _scale_bar_text(viewer), timeout=5000)


def test_rgb_cine_shows_colour_and_algorithms_read_grey(make_napari_viewer, tmp_path):
    frames = screen_frames(rgb=True)
    path = write_us_dicom(tmp_path / "colour.dcm", frames, [region_item(BOX)])
    viewer = make_napari_viewer()
    image = _open(viewer, path)[0]
    assert image.rgb and image.data.shape == frames.shape
    np.testing.assert_array_equal(np.asarray(image.data[3]), frames[3])
    grey = open_cine(path, fill_cache=False)  # what tracking reads
    assert grey.shape == frames.shape[:3] and not grey.rgb
    from napari_dustrack._widgets.common import open_frames

    widget_frames = open_frames(image)  # what the widgets hand to the algorithms
    assert widget_frames[3].shape == frames.shape[1:3]
    np.testing.assert_array_equal(widget_frames[3], grey[3])


def test_grey_video_stays_grey_and_static_border_is_found(make_napari_viewer, tmp_path):
    from napari.layers import Shapes

    path = media.write_video(tmp_path / "screen.mp4", screen_frames(24), fps=25, gop=8)
    viewer = make_napari_viewer()
    layers = _open(viewer, path)
    image = layers[0]
    assert not image.rgb and image.data.ndim == 3
    assert np.allclose(image.scale, (0.04, 1, 1))
    assert [str(u) for u in image.units] == ["second", "pixel", "pixel"]
    region = image.metadata["dustrack"]["region"]
    assert region["source"] == "motion"
    box = (region["y0"], region["x0"], region["y1"], region["x1"])
    assert np.abs(np.subtract(box, BOX)).max() <= 2, box  # text and ruler are outside
    assert any(isinstance(layer, Shapes) for layer in layers)


@pytest.mark.parametrize("case", ["misfit", "only_doppler", "moving_border"])
def test_bad_regions_say_so_and_use_the_full_frame(make_napari_viewer, tmp_path, case):
    from napari.utils.notifications import NotificationSeverity

    if case == "misfit":
        path = write_us_dicom(
            tmp_path / "misfit.dcm", screen_frames(), [region_item((0, 0, 200, 128))]
        )
        expected = "does not fit"
    elif case == "only_doppler":
        path = write_us_dicom(
            tmp_path / "mmode.dcm", screen_frames(), [region_item(BOX, spatial=2, data_type=4)]
        )
        expected = "M-mode"
    else:  # the image fills the frame, but a label is burned in over it
        rng = np.random.default_rng(5)
        frames = rng.integers(20, 230, (24, H, W)).astype(np.uint8)
        frames[:, 2:12, 30:90] = 200
        path = media.write_video(tmp_path / "moving.mp4", frames, fps=25, gop=8)
        expected = "not still"
    viewer = make_napari_viewer()
    before = len(_notes(NotificationSeverity.WARNING))
    layers = _open(viewer, path)
    assert len(layers) == 1  # no outline: the full frame is used
    assert layers[0].metadata["dustrack"]["region"]["source"] in ("full", "dicom")
    assert (
        layers[0].metadata["dustrack"]["region"]["y1"],
        layers[0].metadata["dustrack"]["region"]["x1"],
    ) == (H, W)
    warnings = _notes(NotificationSeverity.WARNING)[before:]
    assert any(expected in w and str(path) in w for w in warnings), warnings


def test_mixed_size_folder_opens_with_a_note(make_napari_viewer, tmp_path):
    from napari.utils.notifications import NotificationSeverity

    frames = media.make_frames(5)
    folder = media.write_png_folder(tmp_path / "mixed", frames)
    media.write_png_folder(folder, np.full((1, 20, 30), 99, np.uint8), pattern="img9{}.png")
    viewer = make_napari_viewer()
    before = len(_notes(NotificationSeverity.WARNING))
    image = _open(viewer, folder)[0]
    assert image.data.shape == (6, *frames.shape[1:])
    last = np.asarray(image.data[5])
    assert (last[:20, :30] == 99).all() and not last[20:].any()
    warnings = [w for w in _notes(NotificationSeverity.WARNING)[before:] if "img90.png" in w]
    assert len(warnings) == 1 and "differs from the first frame" in warnings[0]


def test_point_table_opened_over_a_cine_takes_its_geometry(make_napari_viewer, tmp_path):
    path = write_us_dicom(tmp_path / "heart.dcm", screen_frames(), [region_item(BOX)])
    table = make_table([0, 3], ["apex", "apex"], [30.0, 31.0], [40.0, 41.0])
    write_points_csv(table, tmp_path / "heart_annotations.csv")
    viewer = make_napari_viewer()
    image = _open(viewer, path)[0]
    points = _open(viewer, tmp_path / "heart_annotations.csv")[0]
    for key in ("scale", "translate", "axis_labels"):
        assert tuple(getattr(points, key)) == tuple(getattr(image, key)), key
    assert [str(u) for u in points.units] == [str(u) for u in image.units]
    np.testing.assert_allclose(points.data, [[0, 40, 30], [3, 41, 31]])  # still frames, pixels
    # without a cine in the viewer the table finds its video by name
    from napari_dustrack._napari.reader import read_points_layer

    viewer.layers.clear()
    _, kwargs, _ = read_points_layer(str(tmp_path / "heart_annotations.csv"))[0]
    assert np.allclose(kwargs["scale"], image.scale)


def test_dark_cine_gets_contrast_from_percentiles(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(2)
    dark = rng.integers(0, 40, (8, H, W)).astype(np.uint8)
    path = write_us_dicom(tmp_path / "dark.dcm", dark, [])
    viewer = make_napari_viewer()
    image = _open(viewer, path)[0]
    lo, hi = image.contrast_limits
    assert lo < 5 and 30 < hi < 45


def test_annotation_layers_keep_seconds_and_mm_so_the_scale_bar_does(
    make_napari_viewer, tmp_path, qtbot
):
    from napari.layers import Points

    from napari_dustrack._widgets.annotate import AnnotateWidget

    path = write_us_dicom(tmp_path / "us.dcm", screen_frames(), [region_item(BOX)])
    viewer = make_napari_viewer()
    image = _open(viewer, path)[0]
    widget = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Annotate")
    qtbot.waitUntil(lambda: widget.session is not None, timeout=5000)
    layer = next(
        layer
        for layer in viewer.layers
        if isinstance(layer, Points) and layer.metadata.get("dustrack", {}).get("role")
    )
    assert [str(u) for u in layer.units] == [str(u) for u in image.units]
    assert tuple(layer.axis_labels) == ("t", "y", "x")
    assert [str(u) for u in viewer.layers.units] == ["second", "millimeter", "millimeter"]


@pytest.mark.parametrize(("fps", "n"), [(100, 30), (25, 51), (50, 65)])
def test_every_frame_stays_reachable_with_time_in_seconds(make_napari_viewer, tmp_path, fps, n):
    # napari counts int(stop / step) + 1 steps: with a plain 1 / fps these lengths lost a frame
    path = media.write_video(tmp_path / "c.mp4", media.make_frames(n, 32, 48), fps=fps, gop=10)
    viewer = make_napari_viewer()
    image = _open(viewer, path)[0]
    assert image.scale[0] == pytest.approx(1 / fps)
    assert viewer.dims.nsteps[0] == n
    viewer.dims.set_current_step(0, n - 1)
    assert viewer.dims.current_step[0] == n - 1
    assert round(image.world_to_data(viewer.dims.point)[0]) == n - 1


def test_a_broken_frame_does_not_stop_the_cine_from_opening(make_napari_viewer, tmp_path):
    from napari.utils.notifications import NotificationSeverity

    folder = media.write_png_folder(tmp_path / "broken", media.make_frames(6))
    (folder / "img5.png").write_bytes(b"\x89PNG garbage")
    viewer = make_napari_viewer()
    before = len(_notes(NotificationSeverity.WARNING))
    image = _open(viewer, folder)[0]
    assert image.data.shape[0] == 6
    assert image.metadata["dustrack"]["region"]["source"] == "full"
    warnings = _notes(NotificationSeverity.WARNING)[before:]
    assert any("img5.png" in w and "not a readable image" in w for w in warnings), warnings


def test_reopening_reads_region_and_contrast_back_until_the_video_changes(
    make_napari_viewer, tmp_path
):
    """What the first open found (region, contrast) is kept in the sidecar's view.json: the
    next open shows it without looking at frames again; a changed video is looked at afresh."""
    import json
    import os

    from napari.layers import Shapes

    from napari_dustrack.io.region import Region
    from napari_dustrack.io.sidecar import view_path

    path = media.write_video(tmp_path / "screen.mp4", screen_frames(24), fps=25, gop=8)
    viewer = make_napari_viewer()
    first = _open(viewer, path)
    saved = json.loads(view_path(path).read_text(encoding="utf-8"))
    assert saved["region"]["source"] == "motion"
    assert list(first[0].contrast_limits) == pytest.approx(saved["contrast"])

    planted = Region(8, 8, 40, 40, "motion")
    saved.update(contrast=[10.0, 20.0], region={**planted.to_dict(), "note": None})
    view_path(path).write_text(json.dumps(saved), encoding="utf-8")
    viewer.layers.clear()
    again = _open(viewer, path)
    assert list(again[0].contrast_limits) == [10.0, 20.0]
    assert Region.from_dict(again[0].metadata["dustrack"]["region"]) == planted
    outline = next(layer for layer in again if isinstance(layer, Shapes))
    np.testing.assert_allclose(outline.data[0], planted.outline())

    media.write_video(path, screen_frames(24, seed=2), fps=25, gop=8)
    os.utime(path, ns=(saved["stamp"]["mtime_ns"] + 10**9,) * 2)
    viewer.layers.clear()
    fresh = _open(viewer, path)[0]
    box = Region.from_dict(fresh.metadata["dustrack"]["region"])
    assert np.abs(np.subtract((box.y0, box.x0, box.y1, box.x1), BOX)).max() <= 2, box
    assert list(fresh.contrast_limits) != [10.0, 20.0]
