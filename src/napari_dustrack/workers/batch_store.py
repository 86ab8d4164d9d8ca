"""What a batch keeps on disk, per video: the state of its run, the finished chunks of an
interrupted run (``<out>/.parts/<name>/``), the outputs and the manifest written last, and the
summary table of all videos.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DustrackError
from ..io.atomic import write_atomic, write_text_atomic
from .batch_inputs import PARTS, BatchSettings, fingerprint_token, output_names, video_fingerprint

MANIFEST_FORMAT = "napari-dustrack-batch"
SUMMARY = "summary.csv"
SUMMARY_COLUMNS = [
    "video",
    "status",
    "frames",
    "seconds",
    "frames_per_s",
    "mean_confidence",
    "reason",
]


# ----------------------------------------------------------------------------- one video
@dataclass
class VideoRun:
    """The state of one video in a batch (caller side)."""

    path: Path
    name: str
    fingerprint: dict
    token: str
    status: str = "pending"  # pending, probing, predicting, smoothing, done, skipped, failed
    reason: str = ""
    frames: int = 0
    fps: float | None = None
    seconds: float = 0.0
    mean_confidence: float = float("nan")
    labels: list = field(default_factory=list)
    xy: np.ndarray | None = None
    conf: np.ndarray | None = None
    todo: set = field(default_factory=set)  # (kind, start, stop) still running
    plan: list = field(default_factory=list)  # smoothing chunks
    results: dict = field(default_factory=dict)  # smoothing chunk -> parts
    window: int = 0
    # work done in this run, per task kind: [share of the kind's work, worker seconds]; chunks
    # resumed from disk are in neither, so a resumed video's speed is not inflated
    work: dict = field(default_factory=dict)
    frames_per_s: float = float("nan")

    @property
    def parts(self) -> Path:
        return self.out / PARTS / self.name

    out: Path = Path(".")


def predict_ranges(n_frames: int, chunk_frames: int, batch_size: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` of the prediction tasks (multiples of ``batch_size`` long)."""
    step = max(batch_size, -(-int(chunk_frames) // batch_size) * batch_size)
    return [(a, min(a + step, n_frames)) for a in range(0, n_frames, step)]


def manifest_path(out: Path, name: str) -> Path:
    return out / f"{name}.json"


def output_paths(run: VideoRun, settings: BatchSettings) -> dict[str, Path]:
    outs = {"raw": run.out / f"{run.name}.csv"}
    if settings.smooth:
        outs["smoothed"] = run.out / f"{run.name}_smoothed.csv"
    return outs


def is_complete(out: Path, name: str, fingerprint: dict) -> dict | None:
    """The manifest of a finished video when it matches ``fingerprint`` and its outputs are
    all there with their recorded sizes; None otherwise."""
    path = manifest_path(out, name)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("fingerprint") != fingerprint:
        return None
    for entry in manifest.get("outputs", {}).values():
        f = out / entry["file"]
        if not f.is_file() or f.stat().st_size != entry["size"]:
            return None
    return manifest


# parts on disk: what finished chunks of an interrupted run left behind
def part_file(run: VideoRun, kind: str, a: int, b: int, extra: str = "") -> Path:
    return run.parts / f"{kind}{extra}-{a}-{b}.npz"


def save_part(path: Path, arrays: Sequence[np.ndarray]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, *arrays)

    write_atomic(path, write, backup=False)


def load_part(path: Path) -> list[np.ndarray] | None:
    try:
        with np.load(path) as z:
            return [z[f"arr_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError):
        return None


def prepare_parts(run: VideoRun) -> None:
    """Keep the parts folder only when it belongs to this video fingerprint."""
    stamp = run.parts / "fingerprint.json"
    try:
        same = json.loads(stamp.read_text(encoding="utf-8")) == run.fingerprint
    except (OSError, ValueError):
        same = False
    if not same:
        shutil.rmtree(run.parts, ignore_errors=True)
        run.parts.mkdir(parents=True, exist_ok=True)
        write_text_atomic(stamp, json.dumps(run.fingerprint, sort_keys=True), backup=False)


def work_rate(frames: int, work: dict) -> float:
    """Frames per worker second of a video from the work this run did: each kind's seconds
    scaled up to the whole video (NaN when everything was resumed from disk)."""
    per_frame = sum(seconds / (share * frames) for share, seconds in work.values() if share > 0)
    return 1.0 / per_frame if per_frame > 0 else float("nan")


def make_runs(paths, out: Path, model_fp: dict, settings: BatchSettings) -> list[VideoRun]:
    names = output_names(paths)
    runs = []
    for path in paths:
        try:
            vfp = video_fingerprint(path)
        except OSError:
            vfp = None
        fp = {"video": vfp, "model": model_fp, "settings": settings.result_fields()}
        run = VideoRun(
            path=path, name=names[path], fingerprint=fp, token=fingerprint_token(fp), out=out
        )
        if vfp is None:
            run.status, run.reason = "failed", str(DustrackError("file not found", path))
        elif (manifest := is_complete(out, run.name, fp)) is not None:
            run.status = "skipped"
            run.frames = int(manifest["frames"])
            run.seconds = float(manifest["seconds"])
            run.frames_per_s = float(manifest.get("frames_per_s", float("nan")))
            run.mean_confidence = float(manifest["mean_confidence"])
        runs.append(run)
    return runs


def summary_table(runs: Sequence[VideoRun]) -> pd.DataFrame:
    """One row per video: frames, worker seconds, frames/s, mean confidence, status, reason."""
    rows = []
    for r in runs:
        fps = r.frames_per_s if r.status != "failed" else float("nan")
        rows.append(
            {
                "video": str(r.path),
                "status": r.status,
                "frames": r.frames if r.status != "failed" else 0,
                "seconds": round(r.seconds, 3),
                "frames_per_s": round(fps, 2),
                "mean_confidence": round(r.mean_confidence, 4),
                "reason": r.reason,
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def format_summary(summary: pd.DataFrame) -> str:
    """The summary as an aligned text table (video names shortened to their file name)."""
    shown = summary.assign(video=[Path(v).name for v in summary["video"]]).fillna("")
    return shown.to_string(index=False)
