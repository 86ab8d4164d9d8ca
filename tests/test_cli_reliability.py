"""Bad input of every kind ends in one line naming the file (or option), exit status 2.

Options out of range, destinations that cannot be written (checked before the work), tables with
infinite coordinates, damaged or edited model folders, and worker failures without dask's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from napari_dustrack.cli import main
from napari_dustrack.errors import DustrackError
from napari_dustrack.io.atomic import STALE_S, write_atomic
from napari_dustrack.workers.batch import work_rate


def cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "napari_dustrack", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(done: subprocess.CompletedProcess, *needles) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def video(interop):
    return interop / "tiny_cine.mp4"


@pytest.fixture
def keys(interop):
    return interop / "tiny_cine_annotations_manual.json"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["smooth", "{v}", "--tracks", "{k}", "--out", "o.csv", "--window", "nan"], "--window"),
        (["smooth", "{v}", "--tracks", "{k}", "--out", "o.csv", "--window", "inf"], "--window"),
        (
            ["smooth", "{v}", "--tracks", "{k}", "--out", "o.csv", "--window-frames", "0"],
            "--window-frames",
        ),
        (["simulate", "--out", "sim", "--seed", "-1"], "--seed"),
        (["simulate", "--out", "sim", "--frames", "0"], "--frames"),
        (
            [
                "measure",
                "{v}",
                "--tracks",
                "{k}",
                "--measures",
                "m.json",
                "--out",
                "o.csv",
                "--spacing",
                "0",
                "0",
            ],
            "--spacing",
        ),
        (
            [
                "measure",
                "{v}",
                "--tracks",
                "{k}",
                "--measures",
                "m.json",
                "--out",
                "o.csv",
                "--fps",
                "-5",
            ],
            "--fps",
        ),
        (
            [
                "measure",
                "{v}",
                "--tracks",
                "{k}",
                "--measures",
                "m.json",
                "--out",
                "o.csv",
                "--fps",
                "nan",
            ],
            "--fps",
        ),
        (["batch", "{v}", "--model", "m", "--out", "b", "--chunk-frames", "0"], "--chunk-frames"),
        (["batch", "{v}", "--model", "m", "--out", "b", "--smooth", "0"], "--smooth"),
        (
            ["propagate", "{v}", "--keyframes", "{k}", "--out", "o.csv", "--extend", "-2"],
            "--extend",
        ),
        (["train", "{v}", "--labels", "{k}", "--model", "m", "--minutes", "0"], "--minutes"),
    ],
)
def test_invalid_options_are_refused_on_one_line(tmp_path, video, keys, args, needle, monkeypatch):
    args = [a.format(v=video, k=keys) for a in args]
    monkeypatch.chdir(tmp_path)
    line = one_line_error(cli(*args), needle)
    assert line.startswith(f"napari-dustrack {args[0]}: error:")
    assert not any(tmp_path.iterdir())  # nothing written


def test_destinations_are_checked_before_the_work(tmp_path, video, keys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["propagate", video, "--keyframes", keys, "--out", tmp_path], "is a folder"),
        (["export", video, "--tracks", keys, "--out", a_file / "x.csv"], "is a file, not a folder"),
        (["simulate", "--out", a_file, "--frames", "3"], "exists and is not a folder"),
        (
            ["batch", video, "--model", tmp_path / "m", "--out", a_file],
            "exists and is not a folder",
        ),
        (["predict", video, "--model", tmp_path / "m", "--out", tmp_path], "is a folder"),
        (["train", video, "--labels", keys, "--model", a_file], "exists and is not a folder"),
    ]
    for args, needle in cases:
        t0 = time.monotonic()
        one_line_error(cli(*args), needle)
        assert time.monotonic() - t0 < 30  # refused at once, not after the work
    assert a_file.read_text() == "x"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    one_line_error(
        cli("train", video, "--labels", keys, "--model", tmp_path / "m"), "holds no model"
    )


def test_unwritable_destination_is_one_line(tmp_path, video, keys, capsys):
    assert main(["export", str(video), "--tracks", str(keys), "--out", "/proc/dustrack/x.csv"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/proc/dustrack" in err[0]


@pytest.mark.parametrize(
    "name, content, needle",
    [
        ("t.csv", "frame,label,x,y\n0,a,1,2\n1,a,inf,2\n", "row 2"),
        ("t.csv", "frame,label,x,y\n0,a,1,2\n1,a,3,-inf\n", "row 2"),
        ("t_annotations_manual.json", '{"a": {"0": [1, 2], "3": [Infinity, 2]}}', "infinite"),
        ("t.csv", "frame,label,x,y\n0,,1,2\n", "empty label in row 1"),
    ],
)
def test_non_finite_coordinates_are_refused_naming_file_and_row(
    tmp_path, video, name, content, needle
):
    path = tmp_path / name
    path.write_text(content)
    one_line_error(
        cli("export", video, "--tracks", path, "--out", tmp_path / "o.csv"), path, needle
    )


def test_export_h5_refuses_frames_beyond_the_video_and_empty_tables(tmp_path, video):
    far = tmp_path / "far.csv"
    far.write_text("frame,label,x,y\n0,a,1,2\n30,a,1,2\n")  # the cine has frames 0..29
    one_line_error(
        cli("export", video, "--tracks", far, "--out", tmp_path / "o.h5"),
        far,
        "frame 30",
        "30 frames",
    )
    empty = tmp_path / "empty.csv"
    empty.write_text("frame,label,x,y\n")
    one_line_error(
        cli("export", video, "--tracks", empty, "--out", tmp_path / "o.h5"), empty, "no points"
    )
    assert not (tmp_path / "o.h5").exists()


# ----------------------------------------------------------------------------- model folders
@pytest.fixture
def model(tmp_path):
    from napari_dustrack.tracking.heatmap import HeatmapConfig
    from napari_dustrack.tracking.heatmap.model import architecture, build_model
    from napari_dustrack.tracking.heatmap.store import save_model

    arch = architecture(HeatmapConfig(), 2)
    folder = tmp_path / "model"
    meta = {
        "labels": ["0", "1"],
        "working_size": [64, 64],
        "source_size": [128, 128],
        "normalisation": {"mean": 0.3, "std": 0.2},
        "architecture": arch,
        "training_frames": [0],
        "iteration": 1,
        "metrics": {},
    }
    save_model(folder, build_model(arch, pretrained=False).state_dict(), meta)
    return folder


def edit_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "model.json").read_text())
    meta.update(changes)
    (folder / "model.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, needle",
    [
        ({"working_size": "64x64"}, "working_size"),
        ({"working_size": [64]}, "working_size"),
        ({"normalisation": {"mean": 0.3, "std": 0}}, "std > 0"),
        ({"normalisation": {"mean": "a", "std": 0.2}}, "normalisation"),
        ({"labels": "01"}, "labels"),
        ({"labels": ["0", "0"]}, "labels"),
        ({"iteration": "one"}, "iteration"),
        ({"weights": "../elsewhere.safetensors"}, "inside the model folder"),
        ({"weights": "/etc/passwd"}, "inside the model folder"),
        ({"sha256": 5}, "sha256"),
        ({"version": "1"}, "version"),
    ],
)
def test_model_description_is_checked_field_by_field(model, changes, needle):
    from napari_dustrack.tracking.heatmap.store import read_meta

    edit_meta(model, **changes)
    with pytest.raises(DustrackError, match=needle) as info:
        read_meta(model)
    assert str(info.value).startswith(str(model / "model.json"))


def test_edited_working_size_is_refused_when_loading(model):
    from napari_dustrack.tracking.heatmap.store import load_model

    load_model(model)  # as saved: fine
    edit_meta(model, working_size=[96, 64])
    with pytest.raises(DustrackError, match="changed after training"):
        load_model(model)


def test_weights_linked_from_outside_the_folder_are_refused(model, tmp_path):
    from napari_dustrack.tracking.heatmap.store import load_model, read_meta

    weights = model / read_meta(model)["weights"]
    outside = tmp_path / "outside.safetensors"
    weights.rename(outside)
    weights.symlink_to(outside)
    with pytest.raises(DustrackError, match="outside the model folder"):
        load_model(model)


def test_worker_failure_is_one_line_without_dask_log(model, video, tmp_path):
    """The weights are checked in the worker: its error comes back without a log block."""
    from napari_dustrack.tracking.heatmap.store import read_meta

    (model / read_meta(model)["weights"]).write_bytes(b"damaged")
    done = cli("predict", video, "--model", model, "--out", tmp_path / "raw.csv")
    one_line_error(done, "corrupt")
    assert "Compute Failed" not in done.stderr and not (tmp_path / "raw.csv").exists()


# ----------------------------------------------------------------------------- small pieces
def test_failed_write_leaves_no_temporary_file_and_stale_ones_go(tmp_path):
    dest = tmp_path / "t.csv"

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise DustrackError("stopped")

    with pytest.raises(DustrackError):
        write_atomic(dest, fail)
    assert list(tmp_path.iterdir()) == []
    stale = tmp_path / ".t.csv.killed.tmp.csv"  # what a write killed long ago leaves
    stale.write_text("half")
    os.utime(stale, (time.time() - STALE_S - 60,) * 2)
    fresh = tmp_path / ".t.csv.running.tmp.csv"  # another writer's, still running
    fresh.write_text("half")
    write_atomic(dest, lambda p: p.write_text("ok"))
    assert dest.read_text() == "ok" and not stale.exists() and fresh.exists()


def test_batch_speed_counts_only_the_work_done_in_this_run():
    assert work_rate(100, {"predict": [1.0, 10.0]}) == pytest.approx(10.0)
    # resumed: half the prediction chunks came from disk, the other half took 5 s
    assert work_rate(100, {"predict": [0.5, 5.0]}) == pytest.approx(10.0)
    # prediction and smoothing both: 100 frames in 10 s + 100 frames in 10 s
    assert work_rate(100, {"predict": [1.0, 10.0], "smooth": [1.0, 10.0]}) == pytest.approx(5.0)
    assert work_rate(100, {}) != work_rate(100, {})  # NaN: everything resumed
