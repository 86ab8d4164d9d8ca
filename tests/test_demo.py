"""The README's main job, shortened: the whole loop runs and reports every stage."""

import json

import pytest

from napari_dustrack import workers
from napari_dustrack.cli import main

pytestmark = pytest.mark.slow


def test_quick_demo_runs_the_whole_loop(tmp_path):
    try:
        assert main(["demo", "--out", str(tmp_path), "--quick"]) == 0
    finally:
        workers.close_clients()
    report = json.loads((tmp_path / "report.json").read_text())
    for name in (
        "keyframes.csv",
        "flow.csv",
        "model_iter1.csv",
        "model_iter2.csv",
        "review_frames.csv",
        "smoothed.csv",
        "measures.json",
        "measures_smoothed.csv",
        "figure.png",
        "report.md",
        "model/model.json",
    ):
        assert (tmp_path / name).exists(), name
    assert report["model_iteration"] == 2 and report["review_frames"]
    flow = report["errors_px"]["flow (frames between keyframes)"]
    assert flow["n"] > 0 and flow["median"] < 1.5  # LK + RSTC from noisy keyframes on a tiny cine
    assert all(e["n"] > 0 for e in report["errors_px"].values())
