"""`napari-dustrack propagate` end to end: a real MP4 written with PyAV, decoded by the CLI."""

from __future__ import annotations

import re
import subprocess
import sys

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from napari_dustrack.io.table import make_table, read_points_csv, write_points_csv

N, SIZE = 30, 96


def _scene():
    """Frames of a smooth texture under known sub-pixel motion, and 3 material points."""
    rng = np.random.default_rng(5)
    tex = cv2.GaussianBlur(rng.normal(size=(2 * SIZE, 2 * SIZE)).astype(np.float32), (0, 0), 2.5)
    tex = cv2.normalize(tex, None, 10, 245, cv2.NORM_MINMAX)
    src = np.array([[80.0, 84.0], [100.0, 110.0], [112.0, 90.0], [1.0, 1.0]])
    frames, truth = [], []
    for t in range(N):
        m = cv2.getRotationMatrix2D((SIZE, SIZE), 4 * np.sin(t / 6), 1.0)
        m[:, 2] += (3 * np.sin(t / 5) - SIZE / 2, 2 * np.cos(t / 4) - SIZE / 2)
        frames.append(np.clip(cv2.warpAffine(tex, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC), 0, 255))
        truth.append(np.c_[src, np.ones(len(src))] @ m.T)
    return np.stack(frames).astype(np.uint8), np.stack(truth)[:, :3]


def _write_mp4(frames, path, fps=25):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"crf": "10", "g": "8"}  # small GOP: several keyframes to seek past
        for img in frames:
            rgb = np.repeat(img[..., None], 3, axis=2)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("propagate")
    frames, truth = _scene()
    _write_mp4(frames, folder / "cine.mp4")
    return folder / "cine.mp4", truth


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_dustrack", "propagate", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _keyframes(truth, frames, labels=("a", "b", "c")):
    rows = [(f, lab, *truth[f, i]) for f in frames for i, lab in enumerate(labels)]
    f, lab, x, y = zip(*rows, strict=False)
    return make_table(f, lab, x, y)


def test_propagate_fills_between_keyframes_from_an_mp4(movie, tmp_path):
    video, truth = movie
    keys = _keyframes(truth, [2, 12, 22])
    keys.loc[0, "reviewed"] = True  # the keyframes' own rows come back as they were
    write_points_csv(keys, tmp_path / "keys.csv", backup=False)
    res = _cli(video, "--keyframes", tmp_path / "keys.csv", "--out", tmp_path / "out.csv")
    assert res.returncode == 0, res.stderr
    assert "flow point(s) for 3 label(s)" in res.stdout
    out = read_points_csv(tmp_path / "out.csv")
    manual = out[out["source"] == "manual"].reset_index(drop=True)
    pd.testing.assert_frame_equal(manual, keys.reset_index(drop=True), check_dtype=False)
    filled = out[out["source"] == "flow"]
    assert sorted(set(filled["frame"])) == [f for f in range(3, 22) if f != 12]
    assert len(filled) == 3 * 18
    assert filled["confidence"].between(0, 1).all() and filled["confidence"].mean() > 0.7
    err = np.hypot(
        filled["x"] - truth[filled["frame"], filled["label"].map("abc".index), 0],
        filled["y"] - truth[filled["frame"], filled["label"].map("abc".index), 1],
    )
    assert np.sqrt(np.mean(err**2)) < 0.5, err.max()


def test_extend_tracks_beyond_both_ends(movie, tmp_path):
    video, truth = movie
    write_points_csv(_keyframes(truth, [10, 20]), tmp_path / "keys.csv", backup=False)
    res = _cli(
        video, "--keyframes", tmp_path / "keys.csv", "--out", tmp_path / "out.csv", "--extend", 4
    )
    assert res.returncode == 0, res.stderr
    out = read_points_csv(tmp_path / "out.csv")
    assert sorted(set(out["frame"])) == list(range(6, 25))
    ext = out[out["frame"].isin([6, 24])]
    assert (ext["source"] == "flow").all() and len(ext) == 6


@pytest.mark.parametrize(
    "rows, message",
    [
        (
            "frame,label,x,y\n3,a,10,10\n40,a,12,12\n",
            r"keys.csv: keyframe\(s\) at frame 40 outside the video \(30 frames",
        ),
        (
            "frame,label,x,y\n3,a,10,10\n8,a,500,12\n",
            r"outside the 96x96 image, first: label 'a' at frame 8",
        ),
        ("frame,label,x,y\n3,a,10,10\n9,a,20,20\n5,b,30,30\n", r"single keyframe.*'b' \(frame 5\)"),
        (
            "frame,label,x,y\n3,a,10,10\n9,a,,20\n",
            r"keys.csv: 1 row\(s\) with NaN frame or coordinates",
        ),
        ("frame,label\n", r"missing column"),
    ],
)
def test_bad_keyframes_fail_with_one_line(movie, tmp_path, rows, message):
    video, _ = movie
    (tmp_path / "keys.csv").write_text(rows)
    res = _cli(video, "--keyframes", tmp_path / "keys.csv", "--out", tmp_path / "out.csv")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out.csv").exists()


def test_undecodable_frame_writes_the_partial_table_and_says_so(tmp_path):
    frames, truth = _scene()
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f"f{i:03d}.png"), img)
    (folder / "f017.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # frame 17 is broken
    write_points_csv(_keyframes(truth, [2, 8, 14, 20, 26]), tmp_path / "keys.csv", backup=False)
    res = _cli(folder, "--keyframes", tmp_path / "keys.csv", "--out", tmp_path / "out.csv")
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]  # OpenCV's own PNG warnings may come first
    assert line.startswith("napari-dustrack propagate: error: ")
    assert "f017.png: frame 17 could not be decoded" in line
    assert "wrote the" in line and "out.csv" in line
    out = read_points_csv(tmp_path / "out.csv")
    flow_frames = set(out.loc[out["source"] == "flow", "frame"])
    assert flow_frames == set(range(3, 14)) - {8}  # the segments finished before frame 17
    assert len(out[out["source"] == "manual"]) == 15


def test_rerun_on_its_own_output_recomputes_the_flow_rows(movie, tmp_path):
    video, truth = movie
    write_points_csv(_keyframes(truth, [4, 16]), tmp_path / "keys.csv", backup=False)
    first = _cli(video, "--keyframes", tmp_path / "keys.csv", "--out", tmp_path / "a.csv")
    assert first.returncode == 0, first.stderr
    res = _cli(video, "--keyframes", tmp_path / "a.csv", "--out", tmp_path / "b.csv")
    assert res.returncode == 0, res.stderr
    assert "ignored 33 unreviewed flow/model row(s)" in res.stdout
    pd.testing.assert_frame_equal(
        read_points_csv(tmp_path / "a.csv"), read_points_csv(tmp_path / "b.csv")
    )
