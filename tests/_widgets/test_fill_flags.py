"""The robust fill as a user meets it in the Annotate tab: a method choice, the unreliable
frames announced (status line, one notification, K walks them), and accepted unreliable points
keeping their confidence. Real viewer, real decoding, real Qt events on the canvas."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_dustrack.io.table import to_array

from .test_annotate import (
    N_FRAMES,
    cine,  # noqa: F401 - a fixture (pytest finds it by name)
    click,
    key,
    make_widget,
    open_cine_in,
)
from .test_final_review import settle

pytestmark = pytest.mark.gui
MISCLICK = 9.0  # px: the last keyframe of the first label is clicked this far off


def _fill(viewer, qtbot, widget):
    key(viewer, qtbot, Qt.Key_F)
    qtbot.waitUntil(lambda: not widget.taskbar.busy, timeout=60_000)


def test_fill_flags_unreliable_frames_and_k_walks_them(
    make_napari_viewer,
    qtbot,
    cine,  # noqa: F811 - the fixture imported above
    monkeypatch,
):
    from napari_dustrack._widgets import _annotate_flow as annotate_module
    from napari_dustrack._widgets.common import open_frames
    from napari_dustrack.tracking.flow import FILL_METHODS, fill_between

    video, labels, truth = cine
    labels = labels[:3]
    viewer = make_napari_viewer()
    open_cine_in(viewer, video)
    widget = make_widget(viewer, qtbot)
    sent = []
    monkeypatch.setattr(
        annotate_module, "notify", lambda message, actions=(): sent.append((message, actions))
    )
    for name in labels:
        widget.add_label(name)
    assert [widget.fill_method.itemText(i) for i in range(widget.fill_method.count())] == list(
        FILL_METHODS
    ) and widget.fill_method.currentText() == "robust"
    # keyframes 0 and 29 clicked on the canvas; the first label's last one is mis-clicked
    for frame in (0, N_FRAMES - 1):
        widget.go_to(frame)
        for j in range(len(labels)):
            key(viewer, qtbot, getattr(Qt, f"Key_{j + 1}"))
            x, y = truth[frame, j]
            click(
                viewer,
                qtbot,
                widget.points_layer,
                x + (MISCLICK if (frame, j) == (N_FRAMES - 1, 0) else 0.0),
                y,
            )
    assert widget.session.keyframes() == [0, N_FRAMES - 1]

    _fill(viewer, qtbot, widget)
    # forward and backward paths of the first label part mid-way: those frames are flagged
    points = widget.session.snapshot()[0]
    conf = {f: p.confidence for (f, lab), p in points.items() if lab == labels[0]}
    unsure = sorted(f for f, c in conf.items() if c < 0.5)
    assert len(unsure) >= 5 and 0 < unsure[0] and unsure[-1] < N_FRAMES - 1
    message, actions = sent[-1]
    assert f"unreliable for {len(unsure)} point(s) on {len(unsure)} frame(s)" in message, message
    assert f"optical flow: {len(unsure)} unreliable point(s)" in widget.status.text()
    widget.go_to(0)
    actions[0][1]()  # the notification's button: the first unreliable frame
    assert widget.frame == unsure[0]
    for expected in unsure[1:3]:
        key(viewer, qtbot, Qt.Key_K)
        assert widget.frame == expected

    # Accept (R): unreliable points stay flow, with their confidence, now reviewed
    widget.from_spin.setValue(0)
    widget.to_spin.setValue(N_FRAMES - 1)
    key(viewer, qtbot, Qt.Key_R)
    p = widget.session.point(unsure[2], labels[0])
    assert p.source == "flow" and p.reviewed and p.confidence == pytest.approx(conf[unsure[2]])
    feats = widget.points_layer.features
    row = np.flatnonzero(
        (widget.points_layer.data[:, 0] == unsure[2]) & (feats["label"] == labels[0]).to_numpy()
    )[0]
    assert feats["confidence"].iloc[row] == pytest.approx(conf[unsure[2]])

    # "dustrack" reproduces DUSTrack's LK-RSTC: the same numbers as the API
    key(viewer, qtbot, Qt.Key_Z, Qt.ControlModifier)  # undo the accept: the fill may rewrite
    widget.fill_method.setCurrentText("dustrack")
    _fill(viewer, qtbot, widget)
    got, _ = to_array(widget.session.table(), labels, N_FRAMES)
    keys = widget.session.keys_array(labels)
    frames = open_frames(widget.cine_layer)
    want, _ = fill_between(
        frames, keys, params=widget.lk_params(), labels=labels, method="dustrack"
    )
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert "Optical flow" in sent[-1][0] and "unreliable" in sent[-1][0]
    settle(qtbot, widget)
