"""The annotation model (no Qt): labels, points, flow results, review, undo/redo, import."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import make_table, validate
from napari_dustrack.session import AnnotationSession, Point


@pytest.fixture
def session():
    return AnnotationSession(n_frames=20, labels=["apex", "base", "septum"])


def test_one_point_per_label_per_frame(session):
    session.set_point(3, "apex", 10.0, 20.0)
    session.set_point(3, "apex", 12.5, 21.0)  # same label, same frame: moves
    session.set_point(3, "base", 30.0, 40.0)
    assert len(session) == 2
    assert session.point(3, "apex") == Point(12.5, 21.0)
    table = session.table()
    assert list(table["label"]) == ["apex", "base"]
    assert not table.duplicated(["frame", "label"]).any()


def test_missing_rows_stay_missing_never_shifted(session):
    session.set_point(0, "base", 5.0, 6.0)  # apex not labelled on frame 0
    xy = session.positions(0)
    assert np.isnan(xy[0]).all() and tuple(xy[1]) == (5.0, 6.0) and np.isnan(xy[2]).all()
    table = session.table()
    assert len(table) == 1 and table.loc[0, "label"] == "base"
    keys = session.keys_array()
    assert keys.shape == (20, 3, 2) and np.isfinite(keys).sum() == 2


def test_bad_edits_are_refused_with_one_line(session):
    with pytest.raises(DustrackError, match="outside the video"):
        session.set_point(20, "apex", 1, 1)
    with pytest.raises(DustrackError, match="unknown label 'nope'"):
        session.set_point(0, "nope", 1, 1)
    with pytest.raises(DustrackError, match="not a number"):
        session.set_point(0, "apex", float("nan"), 1)
    with pytest.raises(DustrackError, match="already a label"):
        session.add_label(" apex ")
    with pytest.raises(DustrackError, match="needs a name"):
        session.add_label("  ")
    with pytest.raises(DustrackError, match="#rrggbb"):
        session.set_colour("apex", "red")
    assert len(session) == 0 and not session.can_redo


def test_labels_add_rename_reorder_remove_with_colours(session):
    colours = [session.colour(n) for n in session.labels]
    assert len(set(colours)) == 3 and all(c.startswith("#") and len(c) == 7 for c in colours)
    session.set_point(1, "apex", 1, 2)
    session.set_point(4, "apex", 3, 4)
    session.rename_label("apex", "tip")
    assert session.labels == ["tip", "base", "septum"]
    assert session.point(1, "tip") == Point(1, 2) and session.point(1, "apex") is None
    assert session.colour("tip") == colours[0]  # the colour follows the label
    session.move_label("septum", 0)
    assert session.labels == ["septum", "tip", "base"]
    session.set_colour("base", "#123ABC")
    assert session.colour("base") == "#123abc"
    session.remove_label("tip")
    assert session.labels == ["septum", "base"] and len(session) == 0
    session.undo()  # remove
    assert session.labels == ["septum", "tip", "base"] and len(session) == 2
    session.undo()  # colour
    session.undo()  # move
    session.undo()  # rename
    assert session.labels == ["apex", "base", "septum"]
    assert session.point(4, "apex") == Point(3, 4) and session.point(4, "tip") is None
    session.redo()
    assert session.labels[0] == "tip" and session.point(4, "tip") == Point(3, 4)


def test_flow_never_overwrites_manual_or_accepted_points(session):
    session.set_point(0, "apex", 10, 10)
    session.set_point(5, "apex", 20, 20)
    xy = np.full((20, 2, 2), np.nan)
    xy[0:6, 0] = np.linspace([9, 9], [21, 21], 6)  # apex, keyframe rows differ from manual
    xy[2, 1] = (50, 60)  # base on frame 2 only
    conf = np.full((20, 2), 0.7)
    n = session.apply_flow(xy, ["apex", "base"], confidence=conf)
    assert n == 4 + 1  # frames 1-4 of apex and frame 2 of base; manual frames 0 and 5 kept
    assert session.point(0, "apex") == Point(10, 10) and session.point(5, "apex") == Point(20, 20)
    p = session.point(2, "base")
    assert (p.x, p.y, p.source, p.confidence, p.reviewed) == (50, 60, "flow", 0.7, False)
    assert session.point(2, "septum") is None  # never invents a point
    # accept frames 1-2 as reviewed: flow rows only
    assert session.accept(1, 2) == 3
    assert session.point(1, "apex").reviewed and not session.point(3, "apex").reviewed
    assert not session.point(0, "apex").reviewed  # manual rows are training data anyway
    # a second flow run leaves the accepted points alone, updates the others
    xy2 = xy + 1.0
    session.apply_flow(xy2, ["apex", "base"])
    assert (
        session.point(1, "apex").x == xy[1, 0, 0] and session.point(3, "apex").x == xy[3, 0, 0] + 1
    )
    # a flow result for a label removed meanwhile, or outside the video, is dropped
    session.remove_label("base")
    assert session.apply_flow(np.ones((1, 1, 2)), ["base"], frames=[3]) == 0
    assert session.apply_flow(np.ones((1, 1, 2)), ["apex"], frames=[25]) == 0


def test_apply_flow_checks_shape(session):
    with pytest.raises(DustrackError, match="does not match"):
        session.apply_flow(np.zeros((20, 2, 2)), ["apex"])


def test_keyframes_navigation_and_next_missing(session):
    for f in (2, 9):
        session.set_point(f, "apex", 1, 1)
    session.set_point(14, "base", 1, 1)
    session.apply_flow(np.ones((20, 1, 2)), ["septum"])  # flow rows are not keyframes
    assert session.keyframes() == [2, 9, 14]
    assert session.keyframes("apex") == [2, 9]
    assert session.previous_keyframe(9) == 2 and session.next_keyframe(9) == 14
    assert session.next_keyframe(9, "apex") is None and session.previous_keyframe(2) is None
    # every frame lacks apex or base; complete frames are skipped
    for lab in ("apex", "base"):
        for f in range(20):
            if f != 7:
                session.set_point(f, lab, 1, 1)
    assert session.next_missing(0) == 7
    assert session.next_missing(7) == 7  # wraps round to the only incomplete frame
    assert session.next_missing(8, wrap=False) is None
    session.set_point(7, "apex", 1, 1)
    session.set_point(7, "base", 1, 1)
    assert session.next_missing(0) is None


def test_copy_previous_keeps_manual_points(session):
    session.set_point(4, "apex", 1, 2)
    session.set_point(4, "base", 3, 4)
    session.set_point(5, "base", 30, 40)  # placed by hand: kept
    session.apply_flow(np.array([[[7.0, 8.0]]]), ["septum"], frames=[5])
    session.set_point(4, "septum", 5, 6)
    assert session.copy_previous(5) == 2
    assert session.point(5, "apex") == Point(1, 2)
    assert session.point(5, "base") == Point(30, 40)
    assert session.point(5, "septum") == Point(5, 6)  # the flow point was replaced, now manual
    assert session.copy_previous(0) == 0


def test_undo_redo_every_edit(session):
    states = [session.table()]

    def edit(fn, *args, **kwargs):
        fn(*args, **kwargs)
        states.append(session.table())

    edit(session.set_point, 0, "apex", 1, 1)
    edit(session.set_point, 0, "apex", 2, 2)  # move
    edit(session.set_point, 5, "apex", 3, 3)
    edit(session.apply_flow, np.full((6, 1, 2), 2.5), ["apex"])  # fill
    edit(session.accept, 0, 5)
    edit(session.delete_point, 5, "apex")
    edit(session.place_points, [(1, "apex", 9, 9), (2, "base", 8, 8)])
    edit(session.delete_points, [(1, "apex"), (2, "base")])
    assert len({len(s) for s in states}) > 1
    for expected in reversed(states[:-1]):
        assert session.undo() is not None
        assert session.table().equals(expected)
    assert session.undo() is None and not session.can_undo
    for expected in states[1:]:
        session.redo()
        assert session.table().equals(expected)
    assert not session.can_redo
    session.undo()
    session.set_point(9, "septum", 1, 1)  # a new edit drops the redo history
    assert not session.can_redo


def test_no_op_edits_are_not_recorded(session):
    session.set_point(1, "apex", 1, 1)
    seq = session.seq
    session.set_point(1, "apex", 1, 1)
    assert not session.delete_point(2, "apex")
    assert session.accept(0, 19) == 0
    assert session.seq == seq and session.undo_action == "place apex"


def test_change_events(session):
    seen = []
    session.on_change.append(seen.append)
    session.set_point(2, "apex", 1, 1)
    session.rename_label("apex", "tip")
    session.undo()
    assert [c.action for c in seen] == [
        "place apex",
        "rename apex to tip",
        "undo rename apex to tip",
    ]
    assert seen[0].frames == {2} and seen[0].labels is None
    assert seen[1].labels is not None and seen[1].labels[0].name == "tip"
    assert seen[1].points[(2, "apex")] is None and seen[1].points[(2, "tip")] == Point(1, 1)
    assert [c.seq for c in seen] == sorted(c.seq for c in seen)


def test_table_is_a_valid_point_table(session):
    session.set_point(3, "septum", 1.25, 2.5)
    session.set_point(1, "base", 3, 4)
    session.apply_flow(
        np.array([[[5.0, 6.0]]]), ["apex"], frames=[1], confidence=np.array([[0.25]])
    )
    table = session.table()
    assert table.equals(validate(table))
    assert list(zip(table["frame"], table["label"], strict=False)) == [
        (1, "apex"),
        (1, "base"),
        (3, "septum"),
    ]
    assert table.loc[0, "source"] == "flow" and table.loc[0, "confidence"] == 0.25


def test_import_table_adds_labels_and_checks_frames(session):
    table = make_table(
        [0, 0, 1],
        ["apex", "new", "new"],
        [1, 2, 3],
        [4, 5, 6],
        source="flow",
        confidence=0.5,
        reviewed=True,
    )
    assert session.import_table(table) == 3
    assert session.labels == ["apex", "base", "septum", "new"]
    assert session.point(1, "new") == Point(3, 6, "flow", 0.5, True)
    session.undo()
    assert session.labels == ["apex", "base", "septum"] and len(session) == 0
    with pytest.raises(DustrackError, match="frame 30 is outside the video"):
        session.import_table(make_table([30], ["apex"], [1], [1]), "keys.csv")


def test_import_dustrack_json_and_dlc(interop, tmp_path):
    session = AnnotationSession(n_frames=30)
    n = session.import_file(interop / "tiny_cine_annotations_manual.json")
    assert n == 8 and session.labels == ["0", "1"]
    assert session.point(10, "0") == Point(45.0, 52.0)
    assert session.keyframes() == [0, 10, 20, 29]
    dlc = AnnotationSession(n_frames=2000)
    assert dlc.import_file(interop / "dlc_CollectedData_Mackenzie.csv") > 0
    assert dlc.labels == ["hand", "Finger1", "Finger2", "Joystick"]
    assert dlc.point(0, "hand") == Point(202.0, 629.0)
    with pytest.raises(DustrackError, match="file not found"):
        dlc.import_file(tmp_path / "missing.json")


def test_docs_cheat_sheet_lists_every_key():
    from pathlib import Path

    from napari_dustrack._widgets._annotate_keys import BINDINGS, LABEL_KEYS, _pretty

    docs = (Path(__file__).resolve().parents[1] / "docs" / "annotate.md").read_text(
        encoding="utf-8"
    )
    keys = [_pretty(k) for b in BINDINGS if b not in LABEL_KEYS for k in b.keys]
    missing = [k for k in keys if f"`{k}`" not in docs]
    assert not missing, missing
    assert len({k for b in BINDINGS for k in b.keys}) == sum(
        len(b.keys) for b in BINDINGS
    )  # no clashes


def predictions(frames, labels=("apex", "base"), conf=0.9):
    frames = np.repeat(np.asarray(frames), len(labels))
    lab = np.tile(np.asarray(labels, dtype=object), len(frames) // len(labels))
    return make_table(
        frames,
        lab,
        frames + 100.0,
        frames + 200.0,
        source="model",
        confidence=np.full(len(frames), conf),
    )


def test_accept_predictions_copies_model_points_as_reviewed(session):
    session.set_point(5, "apex", 1.0, 2.0)  # manual: kept
    session.apply_flow(np.full((1, 1, 2), 7.0), ["base"], [6], action="fill")
    session.accept(6, 6)  # reviewed flow: kept
    n = session.accept_predictions(predictions(range(4, 9)), start=5, end=7)
    assert n == 4  # 5-7 x 2 labels, less the manual and the reviewed one
    assert session.point(5, "apex") == Point(1.0, 2.0)
    assert session.point(6, "base").source == "flow" and session.point(6, "base").reviewed
    p = session.point(7, "base")
    assert (p.x, p.y, p.source, p.reviewed, p.confidence) == (107.0, 207.0, "model", True, 0.9)
    assert session.point(4, "apex") is None and session.point(8, "apex") is None
    # reviewed model points are training rows
    from napari_dustrack.io.table import training_rows

    assert {(r.frame, r.label) for r in training_rows(session.table()).itertuples()} >= {
        (7, "base")
    }
    assert session.undo_action.startswith("accept predictions on frames 5-7")
    session.undo()
    assert session.point(7, "base") is None and session.point(5, "apex") == Point(1.0, 2.0)


def test_accept_predictions_by_confidence_and_bad_input(session):
    table = validate(
        __import__("pandas").concat([predictions([1], conf=0.4), predictions([2], conf=0.95)])
    )
    assert session.accept_predictions(table, min_confidence=0.9) == 2
    assert session.point(1, "apex") is None and session.point(2, "apex").reviewed
    before = session.table()
    with pytest.raises(DustrackError, match="no predicted points on frames 10-12"):
        session.accept_predictions(predictions([1, 2]), start=10, end=12)
    with pytest.raises(DustrackError, match=r"label\(s\) \['lv'\] that the annotations do not"):
        session.accept_predictions(predictions([1], labels=("apex", "lv")))
    assert session.table().equals(before)  # nothing changed by the refusals


def test_accepting_predictions_worked_out_in_another_thread(session):
    """The edit is worked out with the changes (in a worker thread in the GUI) and committed
    as it is when nothing was edited in between; an edit in between is kept."""
    import threading

    session.set_point(4, "apex", 1.0, 2.0)
    found = []
    worker = threading.Thread(
        target=lambda: found.append(session.prediction_changes(predictions(range(4, 9))))
    )
    worker.start()
    worker.join()
    changes, lo, hi = found[0]
    assert (lo, hi, len(changes)) == (4, 8, 9)  # the manual point is not a change
    assert session.commit_predictions(changes, "accept all") == 9
    assert session.point(4, "apex") == Point(1.0, 2.0) and session.point(8, "base").reviewed
    assert len(session) == 10 and session.undo_action == "accept all"
    session.undo()
    assert session.table().equals(session_with(Point(1.0, 2.0)).table())
    # worked out, then a point placed by hand before the commit: that point is kept
    changes, _, _ = session.prediction_changes(predictions(range(4, 9)))
    session.set_point(6, "base", 3.0, 4.0)
    assert session.commit_predictions(changes, "accept all") == 8
    assert session.point(6, "base") == Point(3.0, 4.0) and len(session) == 10
    session.undo()
    assert len(session) == 2 and session.point(6, "base") == Point(3.0, 4.0)


def session_with(point):
    other = AnnotationSession(n_frames=20, labels=["apex", "base", "septum"])
    other.set_point(4, "apex", point.x, point.y)
    return other


def test_lost_frames_names_labels_and_frames():
    from napari_dustrack.session import lost_frames

    xy = np.zeros((6, 2, 2))
    xy[3:, 0] = np.nan  # label a lost from frame 3
    xy[0, 1] = np.nan  # label b outside its span at frame 0
    assert lost_frames(xy, ["a", "b"]) == {"a": [3, 4, 5], "b": [0]}
    assert lost_frames(xy, ["a", "b"], spans={"a": (0, 4), "b": (1, 5)}) == {"a": [3, 4]}
    assert lost_frames(xy[1:], ["a", "b"], frames=np.arange(11, 16)) == {"a": [13, 14, 15]}
