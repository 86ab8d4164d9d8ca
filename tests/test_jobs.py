"""Training and prediction in real dask.distributed worker processes."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from napari_dustrack import workers
from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import to_array
from napari_dustrack.simulate import simulate, write_simulation
from napari_dustrack.tracking.heatmap import HeatmapConfig
from napari_dustrack.tracking.heatmap.store import load_model, read_meta

LABELS = ["septal", "lateral"]
TINY = HeatmapConfig(scale=0.5, minutes=5.0, max_epochs=3).to_dict()
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    sim = simulate("cardiac", n_frames=24, shape=(64, 64), seed=2)
    paths = write_simulation(sim, tmp_path_factory.mktemp("video"))
    truth = sim.truth[sim.truth["label"].isin(LABELS)].reset_index(drop=True)
    return paths["video"], truth


@pytest.fixture(scope="module")
def client():
    yield workers.get_client()
    workers.close_clients()


def test_train_then_predict_in_a_worker_process(video, client, tmp_path):
    path, truth = video
    pids = client.run(os.getpid)
    assert pids and os.getpid() not in pids.values()
    msgs = []
    job = workers.submit(
        workers.train_task,
        str(path),
        truth[truth["frame"] % 4 == 0],
        str(tmp_path / "m"),
        TINY,
        client=client,
    )
    meta = job.wait(msgs.append, poll_s=0.1)
    assert meta["iteration"] == 1 and meta["labels"] == LABELS
    assert read_meta(tmp_path / "m")["sha256"] == meta["sha256"]
    kinds = {m["kind"] for m in msgs}
    assert {"progress", "log"} <= kinds
    assert any("val_error_px" in m for m in msgs)

    streamed = []
    job = workers.submit(workers.predict_task, str(path), str(tmp_path / "m"), client=client)
    table = job.wait(lambda m: streamed.append(m) if m["kind"] == "result" else None, poll_s=0.1)
    frames = np.concatenate([m["frames"] for m in streamed])
    assert sorted(frames.tolist()) == list(range(24))
    xy, _ = to_array(table, LABELS, 24)
    for m in streamed:
        np.testing.assert_allclose(xy[np.asarray(m["frames"])], np.asarray(m["xy"]))


def test_cancel_reaches_the_worker_and_keeps_the_best_checkpoint(video, client, tmp_path):
    path, truth = video
    job = workers.submit(
        workers.train_task,
        str(path),
        truth[truth["frame"] % 3 == 0],
        str(tmp_path / "m"),
        dict(TINY, max_epochs=10_000),
        client=client,
    )
    deadline = time.monotonic() + 120
    while not any(m["kind"] == "log" for m in job.messages()):
        assert time.monotonic() < deadline and not job.done()
        time.sleep(0.1)
    job.cancel()
    t0 = time.monotonic()
    meta = job.result(timeout=60)
    assert time.monotonic() - t0 < 15
    assert meta["metrics"]["cancelled"] is True
    assert load_model(tmp_path / "m").labels == LABELS


def test_errors_in_the_worker_arrive_as_one_line_messages(video, client, tmp_path):
    path, truth = video
    job = workers.submit(
        workers.train_task,
        str(path),
        truth[truth["frame"] == 0],
        str(tmp_path / "m"),
        TINY,
        client=client,
    )
    with pytest.raises(DustrackError, match="1 usable frame"):
        job.result(timeout=120)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    job = workers.submit(
        workers.predict_task, str(tmp_path / "missing.mp4"), str(tmp_path / "m"), client=client
    )
    with pytest.raises(DustrackError):
        job.result(timeout=120)


def test_existing_scheduler_by_address(video, client, tmp_path):
    # A second client that reaches the (already running) scheduler by its address only.
    path, truth = video
    address = client.scheduler.address
    job = workers.submit(
        workers.train_task,
        str(path),
        truth[truth["frame"] % 6 == 0],
        str(tmp_path / "m"),
        dict(TINY, max_epochs=1),
        address=address,
    )
    assert job.client is not client and job.client.scheduler.address == address
    assert job.wait()["iteration"] == 1
    assert set(job.client.run(os.getpid).values()) == set(client.run(os.getpid).values())
