"""Batch prediction and smoothing on real dask.distributed worker processes.

A LocalCluster of 2 worker processes on loopback runs a batch of small simulated videos plus a
corrupt file; the outputs are compared with single-process prediction and smoothing, a rerun
skips what is complete, an interrupted run resumes from its finished chunks, and a worker
killed mid-run loses and duplicates nothing.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import numpy as np
import pandas as pd
import pytest

from napari_dustrack import cli, settings
from napari_dustrack.errors import Cancelled, DustrackError
from napari_dustrack.io.table import read_points_csv, to_array
from napari_dustrack.simulate import simulate, write_simulation
from napari_dustrack.workers import batch
from napari_dustrack.workers.batch import BatchSettings, run_batch

SMOOTH_S = 0.2  # 10 frames at the simulator's 50 fps
CHUNK = 16  # frames per task: every video is split into several chunks
VIDEOS = {"apex": (40, (64, 64), 3), "base": (48, (64, 80), 4), "long": (80, (80, 64), 5)}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A heatmap model trained for a moment on a tiny simulated video (trained once)."""
    from napari_dustrack.tracking.heatmap import HeatmapConfig
    from napari_dustrack.tracking.heatmap.train import train

    sim = simulate("cardiac", n_frames=24, shape=(64, 64), seed=1)
    labels = sim.labels[:2]
    rows = sim.truth[sim.truth["label"].isin(labels) & (sim.truth["frame"] % 4 == 0)]
    folder = tmp_path_factory.mktemp("batch_model") / "model"
    train(sim.frames, rows, folder, HeatmapConfig(scale=0.5, minutes=2.0, max_epochs=2, seed=0))
    return folder


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """A folder with three small cines and one corrupt file."""
    root = tmp_path_factory.mktemp("batch_videos")
    folder = root / "cines"
    folder.mkdir()
    for name, (n, shape, seed) in VIDEOS.items():
        paths = write_simulation(
            simulate("cardiac", n_frames=n, shape=shape, seed=seed), root / name
        )
        paths["video"].rename(folder / f"{name}.mp4")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video" * 40)
    (folder / "notes.txt").write_text("not a cine")
    return folder


@pytest.fixture(scope="module")
def reference(videos, tiny_model):
    """Single-process results per video: raw ``(xy, conf)`` and smoothed ``xy``."""
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.tracking.heatmap.predict import predict_video
    from napari_dustrack.tracking.smoothing import smooth, window_frames

    out = {}
    for name in VIDEOS:
        cine = open_cine(videos / f"{name}.mp4", fill_cache=False)
        try:
            table = predict_video(cine, tiny_model)
            labels = list(dict.fromkeys(table["label"]))
            xy, _ = to_array(table, labels, len(cine))
            conf, _ = to_array(table, labels, len(cine), column="confidence")
            window = window_frames(SMOOTH_S, cine.fps)
            smoothed = smooth(cine, xy, window, "fusion", confidence=conf)
        finally:
            cine.close()
        out[name] = {"labels": labels, "xy": xy, "conf": conf, "smoothed": smoothed}
    return out


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=0,
    ) as lc:
        with Client(lc, set_as_default=False) as client:
            yield lc, client


def _tables(out, name, labels, n):
    raw = read_points_csv(out / f"{name}.csv")
    sm = read_points_csv(out / f"{name}_smoothed.csv")
    for t in (raw, sm):  # nothing lost, nothing duplicated
        assert not t.duplicated(["frame", "label"]).any()
        assert len(t) == n * len(labels)
    xy, _ = to_array(raw, labels, n)
    conf, _ = to_array(raw, labels, n, column="confidence")
    sxy, _ = to_array(sm, labels, n)
    return xy, conf, sxy


def _check_outputs(out, reference, names=VIDEOS):
    for name in names:
        ref = reference[name]
        xy, conf, sxy = _tables(out, name, ref["labels"], VIDEOS[name][0])
        # workers run torch with 1 thread, the reference with 2: the same up to rounding
        np.testing.assert_allclose(xy, ref["xy"], rtol=0, atol=1e-3)
        np.testing.assert_allclose(conf, ref["conf"], rtol=0, atol=1e-5)
        np.testing.assert_allclose(sxy, ref["smoothed"], rtol=0, atol=2e-3)


class Events(list):
    def tasks(self, event, kind, video=None):
        return [
            e["task"]
            for e in self
            if e["event"] == event
            and e["task"][0] == kind
            and (video is None or e["video"].endswith(f"{video}.mp4"))
        ]


@pytest.fixture(scope="module")
def first_run(videos, tiny_model, cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("batch_out")
    events = Events()
    missing = videos.parent / "missing.mp4"
    result = run_batch(
        [videos, missing],
        tiny_model,
        out,
        BatchSettings(smooth=SMOOTH_S, chunk_frames=CHUNK),
        client=cluster[1],
        on_event=events.append,
    )
    return out, result, events


def test_batch_matches_single_process_and_reports_bad_files(first_run, videos, reference):
    out, result, events = first_run
    summary = result.summary.set_index("video")
    assert len(summary) == 5  # 3 cines + the corrupt one + the missing one; notes.txt is no cine
    for name, (n, _, _) in VIDEOS.items():
        row = summary.loc[str(videos / f"{name}.mp4")]
        assert row["status"] == "done" and row["frames"] == n
        assert 0 < row["mean_confidence"] <= 1 and row["frames_per_s"] > 0
        # every chunk computed exactly once
        ranges = batch.predict_ranges(n, CHUNK, 16)
        assert len(ranges) > 1
        done = events.tasks("completed", "predict", name)
        assert sorted(t[1:] for t in done) == ranges
        assert len(events.tasks("completed", "smooth", name)) > 1
    broken = summary.loc[str(videos / "broken.mp4")]
    assert broken["status"] == "failed"
    assert broken["reason"].startswith(f"{videos / 'broken.mp4'}: ")
    assert "not a readable video" in broken["reason"] and "\n" not in broken["reason"]
    missing = summary.loc[str(videos.parent / "missing.mp4")]
    assert missing["status"] == "failed" and "file not found" in missing["reason"]
    _check_outputs(out, reference)
    on_disk = pd.read_csv(out / "summary.csv")
    assert list(on_disk["status"]) == list(result.summary["status"])
    manifest = json.loads((out / "long.json").read_text())
    assert manifest["frames"] == 80 and manifest["window_frames"] == 10
    assert not (out / ".parts").exists()  # finished videos leave no parts behind


def test_rerun_skips_complete_videos_and_redoes_a_deleted_output(
    first_run, videos, tiny_model, cluster, capsys
):
    out, _, _ = first_run
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.csv") if p.name != "summary.csv"}
    args = [
        "batch",
        str(videos),
        "--model",
        str(tiny_model),
        "--out",
        str(out),
        "--smooth",
        str(SMOOTH_S),
        "--scheduler",
        cluster[0].scheduler_address,
    ]
    assert cli.main(args) == 2  # the corrupt file fails again, after the others
    captured = capsys.readouterr()
    assert "1 of 4 video(s) failed" in captured.err
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary["status"]) == ["failed", "skipped", "skipped", "skipped"]
    assert "broken.mp4" in captured.out and "skipped" in captured.out
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in stamps}

    (out / "base_smoothed.csv").unlink()
    events = Events()
    result = run_batch(
        [videos],
        tiny_model,
        out,
        BatchSettings(smooth=SMOOTH_S, chunk_frames=32),
        client=cluster[1],
        on_event=events.append,
    )
    status = dict(
        zip(
            result.summary["video"].map(lambda v: os.path.basename(v)),
            result.summary["status"],
            strict=False,
        )
    )
    assert status == {
        "apex.mp4": "skipped",
        "base.mp4": "done",
        "broken.mp4": "failed",
        "long.mp4": "skipped",
    }
    assert events.tasks("submitted", "predict") == events.tasks("submitted", "predict", "base")
    assert (out / "base_smoothed.csv").is_file()
    assert (out / "apex.csv").stat().st_mtime_ns == stamps["apex.csv"]


def test_a_changed_setting_or_model_is_not_skipped(first_run, videos, tiny_model, tmp_path):
    out, _, _ = first_run
    name = "apex"
    fp = json.loads((out / f"{name}.json").read_text())["fingerprint"]
    assert batch.is_complete(out, name, fp) is not None
    other = dict(fp, settings=dict(fp["settings"], smooth=0.5))
    assert batch.is_complete(out, name, other) is None
    other = dict(fp, model=dict(fp["model"], sha256="0" * 64))
    assert batch.is_complete(out, name, other) is None


def test_an_interrupted_run_resumes_with_only_the_missing_chunks(
    videos, tiny_model, cluster, reference, tmp_path
):
    cancel = threading.Event()
    events = Events()

    def on_event(e):
        events.append(e)
        if len(events.tasks("completed", "predict")) == 2:
            cancel.set()

    settings_ = BatchSettings(smooth=SMOOTH_S, chunk_frames=CHUNK)
    with pytest.raises(Cancelled):
        run_batch(
            [videos / "long.mp4"],
            tiny_model,
            tmp_path,
            settings_,
            client=cluster[1],
            on_event=on_event,
            cancel=cancel,
        )
    kept = sorted((tmp_path / ".parts" / "long").glob("predict-*.npz"))
    assert len(kept) == 2
    assert not (tmp_path / "long.json").exists() and not (tmp_path / "long.csv").exists()

    events2 = Events()
    run_batch(
        [videos / "long.mp4"],
        tiny_model,
        tmp_path,
        settings_,
        client=cluster[1],
        on_event=events2.append,
    )
    ranges = batch.predict_ranges(80, CHUNK, 16)
    resumed = events2.tasks("resumed", "predict")
    redone = events2.tasks("completed", "predict")
    assert len(resumed) == 2 and len(redone) == len(ranges) - 2
    assert sorted(t[1:] for t in resumed + redone) == ranges
    _check_outputs(tmp_path, reference, ["long"])


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(
    videos, tiny_model, cluster, reference, tmp_path
):
    _, client = cluster
    killed: list = []
    events = Events()

    def on_event(e):
        events.append(e)
        if killed or e["event"] != "completed" or e["task"][0] != "predict":
            return
        busy = {w: keys for w, keys in client.processing().items() if keys}
        if not busy:
            return
        worker, keys = next(iter(busy.items()))
        pid = client.run(os.getpid, workers=[worker])[worker]
        os.kill(pid, signal.SIGKILL)
        killed.append((worker, list(keys)))

    names = list(VIDEOS)
    result = run_batch(
        [videos / f"{n}.mp4" for n in names],
        tiny_model,
        tmp_path,
        BatchSettings(smooth=SMOOTH_S, chunk_frames=CHUNK),
        client=client,
        on_event=on_event,
    )
    assert killed and killed[0][1], "no worker was killed while running a task"
    assert list(result.summary["status"]) == ["done"] * len(names)
    for name in names:
        n = VIDEOS[name][0]
        done = events.tasks("completed", "predict", name)
        assert sorted(t[1:] for t in done) == batch.predict_ranges(n, CHUNK, 16)
    _check_outputs(tmp_path, reference)


# ----------------------------------------------------------------------------- no cluster
def test_expand_videos_and_output_names(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.DCM").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("x")
    (tmp_path / "a.mp4.dustrack").mkdir()
    frames = tmp_path / "frames"
    frames.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(frames / "f000.png")
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.mp4").write_bytes(b"x")
    found = batch.expand_videos([tmp_path, other / "a.mp4", tmp_path / "a.mp4"])
    assert found == [tmp_path / "a.mp4", tmp_path / "b.DCM", frames, other / "a.mp4"]
    names = batch.output_names(found)
    assert names[tmp_path / "b.DCM"] == "b" and names[frames] == "frames"
    assert names[tmp_path / "a.mp4"] != names[other / "a.mp4"]
    assert all(n.startswith("a-") for p, n in names.items() if p.name == "a.mp4")


@pytest.mark.parametrize("n, chunk, batch_size", [(80, 16, 16), (81, 20, 16), (5, 1000, 16)])
def test_predict_ranges_cover_every_frame_once_in_whole_batches(n, chunk, batch_size):
    ranges = batch.predict_ranges(n, chunk, batch_size)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(b0 == a1 for (_, b0), (a1, _) in zip(ranges, ranges[1:], strict=False))
    assert all((b - a) % batch_size == 0 for a, b in ranges[:-1])


def test_a_bad_model_folder_is_one_line(videos, tmp_path):
    with pytest.raises(DustrackError, match="model folder not found"):
        run_batch([videos], tmp_path / "nope", tmp_path / "out")
    with pytest.raises(DustrackError, match="no cines found"):
        run_batch([tmp_path], tmp_path, tmp_path / "out")


def test_run_on_setting_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.CONFIG_ENV, str(tmp_path / "cfg"))
    assert settings.scheduler_address() is None
    assert settings.set_scheduler_address("10.0.0.5:8786") == "tcp://10.0.0.5:8786"
    assert settings.scheduler_address() == "tcp://10.0.0.5:8786"
    assert json.loads((tmp_path / "cfg" / settings.FILE).read_text())["scheduler"]
    with pytest.raises(DustrackError, match="host:port"):
        settings.set_scheduler_address("nohost")
    assert settings.set_scheduler_address("") == ""
    assert settings.scheduler_address() is None
