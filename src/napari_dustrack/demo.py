"""The whole DUSTrack loop, headless, on a simulated cine: the README's main job.

A simulated annotator (ground truth plus annotator noise) stands in for the user: keyframes ->
optical-flow fill -> accept -> train -> predict -> review the suggested frames and correct them
-> retrain -> predict -> final tracks (annotations kept, flow and model weighed, the model's
bias removed, fusion smoother) -> measure. Every table, a figure and ``report.md`` with the
error of each stage against the ground truth are written to the output folder.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import workers
from .io.cine import open_frames
from .io.export import write_measurements_csv
from .io.sources import PointSource
from .io.table import from_array, labels_of, to_array, validate, write_points_csv
from .measure import Calibration, Measure, compute, save_measures
from .simulate import simulate, write_simulation
from .tracking.final import final_tracks
from .tracking.flow import fill_between
from .tracking.review import frames_to_review
from .tracking.smoothing import window_frames


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budgets of one demo run (``quick`` is for tests)."""

    scenario: str = "cardiac"
    n_frames: int = 250
    shape: tuple[int, int] | None = None
    key_every_s: float = 0.4
    annotator_noise_px: float = 0.5
    accept_every: int = 4  # of the flow-filled frames, every k-th is accepted as reviewed
    train_minutes: float = 3.0
    retrain_minutes: float = 1.5
    n_review: int = 5
    smooth_window_s: float = 0.5
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoSettings:
        return cls(
            n_frames=48,
            shape=(96, 96),
            train_minutes=0.25,
            retrain_minutes=0.15,
            n_review=3,
            key_every_s=0.2,
            accept_every=2,
        )


def errors(table: pd.DataFrame, truth: pd.DataFrame, frames=None) -> dict[str, float]:
    """Euclidean error (px) of ``table`` against ``truth`` on shared (frame, label) rows."""
    merged = table.merge(truth, on=["frame", "label"], suffixes=("", "_true"))
    if frames is not None:
        merged = merged[merged["frame"].isin(list(frames))]
    err = np.hypot(merged["x"] - merged["x_true"], merged["y"] - merged["y_true"]).to_numpy()
    if not len(err):
        return {"n": 0, "median": np.nan, "p95": np.nan, "rmse": np.nan}
    return {
        "n": int(len(err)),
        "median": float(np.median(err)),
        "p95": float(np.percentile(err, 95)),
        "rmse": float(np.sqrt(np.mean(err**2))),
    }


def annotate_keyframes(truth: pd.DataFrame, fps: float, s: DemoSettings) -> pd.DataFrame:
    """Keyframes every ``key_every_s`` seconds, clicked with annotator noise."""
    rng = np.random.default_rng(s.seed + 1)
    step = max(2, int(round(s.key_every_s * fps)))
    last = int(truth["frame"].max())
    keys = sorted(set(range(0, last + 1, step)) | {last})
    rows = truth[truth["frame"].isin(keys)].copy()
    rows[["x", "y"]] += rng.normal(0, s.annotator_noise_px, size=(len(rows), 2))
    rows["source"] = PointSource.MANUAL
    return validate(rows)


def correct_frames(
    table: pd.DataFrame, truth: pd.DataFrame, frames, s: DemoSettings
) -> pd.DataFrame:
    """The user drags every point of ``frames`` to where it is (truth + annotator noise)."""
    rng = np.random.default_rng(s.seed + 2)
    fixed = truth[truth["frame"].isin(list(frames))].copy()
    fixed[["x", "y"]] += rng.normal(0, s.annotator_noise_px, size=(len(fixed), 2))
    fixed["source"] = PointSource.MANUAL
    keep = table.set_index(["frame", "label"]).index.difference(
        fixed.set_index(["frame", "label"]).index
    )
    kept = table.set_index(["frame", "label"]).loc[keep].reset_index()
    return validate(pd.concat([kept, fixed], ignore_index=True))


@dataclass
class _Run:
    """One demo run: its folder, settings and worker address, and what it records (the time of
    each stage, the error of each stage against the ground truth)."""

    out: Path
    s: DemoSettings
    log: Callable[[str], None]
    address: str | None
    times: dict[str, float] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)

    @contextlib.contextmanager
    def timed(self, name):
        self.log(f"[demo] {name}...")
        t0 = time.perf_counter()
        yield
        self.times[name] = time.perf_counter() - t0


def run_demo(
    out: str | Path,
    settings: DemoSettings = DemoSettings(),
    log: Callable[[str], None] = print,
    address: str | None = None,
) -> dict:
    """Run the loop; returns the report (also written as report.json and report.md)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run = _Run(out, settings, log, address)
    s = settings
    with run.timed("simulate"):
        sim = simulate(s.scenario, n_frames=s.n_frames, seed=s.seed, shape=s.shape)
        paths = write_simulation(sim, out)
    video = str(paths["video"])
    truth = sim.truth
    labels = labels_of(truth)
    cine = open_frames(video)  # read in order by every stage: no display cache
    n = len(cine)
    keys_table, flow, xy, conf = _flow_stage(run, cine, truth, labels, sim.fps)

    # The user scrubs the filled frames and accepts some as reviewed: they become training data.
    accepted = flow.copy()
    accepted["reviewed"] = accepted["frame"] % s.accept_every == 0
    curated = accepted[(accepted["source"] == PointSource.MANUAL) | accepted["reviewed"]]
    config = {"minutes": s.train_minutes, "seed": s.seed}
    unlabelled = [f for f in range(n) if f not in set(curated["frame"])]
    meta, raw1 = _iteration(run, video, curated, config, 1, truth, unlabelled)

    review, corrected = _review_stage(run, cine, raw1, curated, flow, truth)
    config = dict(config, minutes=s.retrain_minutes)
    meta, raw2 = _iteration(run, video, corrected, config, 2, truth, unlabelled)

    final, smoothed = _final_stage(run, cine, labels, sim.fps, corrected, (xy, conf), raw2)
    run.stages["final tracks (unlabelled frames)"] = errors(smoothed, truth, unlabelled)
    run.stages["flow (unlabelled frames)"] = errors(flow, truth, unlabelled)
    cine.close()

    cal = Calibration.of(spacing=sim.pixel_spacing, fps=sim.fps)
    m_truth, m_smooth, measure_err = _measure_stage(run, truth, smoothed, labels, cal, n)
    figure = plot_figure(out / "figure.png", truth, raw2, smoothed, m_truth, m_smooth, labels)
    report = {
        "video": video,
        "frames": n,
        "labels": labels,
        "fps": sim.fps,
        "keyframes": int(keys_table["frame"].nunique()),
        "curated_frames": int(curated["frame"].nunique()),
        "review_frames": review["frame"].tolist(),
        "model_iteration": meta.get("iteration"),
        "errors_px": run.stages,
        "measure_median_abs_error": measure_err,
        "seconds": run.times,
        "figure": str(figure),
        "model_bias": final.bias.lines(labels) if final.bias is not None else [],
        "flags": final.flags.line("final tracks"),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(report_markdown(report))
    log(report_markdown(report))
    return report


def _review_stage(run: _Run, cine, raw, curated, flow, truth):
    """The frames the model suggests to review, corrected by the simulated annotator; writes
    review_frames.csv and labels_iter2.csv. Returns the review list and the corrected rows."""
    with run.timed("frames to review"):
        review = frames_to_review(
            cine, raw, top=run.s.n_review, exclude=curated["frame"].unique(), flow=flow
        )
        review.to_csv(run.out / "review_frames.csv", index=False)
    corrected = correct_frames(curated, truth, review["frame"].tolist(), run.s)
    write_points_csv(corrected, run.out / "labels_iter2.csv", backup=False)
    return review, corrected


def _flow_stage(run: _Run, cine, truth: pd.DataFrame, labels: list[str], fps: float):
    """Keyframes from the simulated annotator, filled by optical flow; writes keyframes.csv and
    flow.csv. Returns the keyframe table, the flow table and the flow's arrays."""
    n = len(cine)
    with run.timed("keyframes + optical flow (LK + RSTC)"):
        keys_table = annotate_keyframes(truth, fps, run.s)
        keys, _ = to_array(keys_table, labels, n)
        xy, conf = fill_between(cine, keys, labels=labels)
        key_frames = sorted(keys_table["frame"].unique())
        flow = from_array(xy, labels, source=PointSource.FLOW, confidence=conf)
        flow = validate(pd.concat([keys_table, flow[~flow["frame"].isin(key_frames)]]))
        write_points_csv(keys_table, run.out / "keyframes.csv", backup=False)
        write_points_csv(flow, run.out / "flow.csv", backup=False)
    run.stages["flow (frames between keyframes)"] = errors(
        flow, truth, [f for f in range(n) if f not in set(key_frames)]
    )
    return keys_table, flow, xy, conf


def _iteration(
    run: _Run,
    video: str,
    rows: pd.DataFrame,
    config: dict,
    i: int,
    truth: pd.DataFrame,
    unlabelled: list[int],
) -> tuple[dict, pd.DataFrame]:
    """One model iteration in the workers: (re)train on ``rows``, predict every frame into
    ``model_iter<i>.csv``. Returns the training's metadata and the predictions."""
    model_dir = str(run.out / "model")
    with run.timed(f"{'train' if i == 1 else 'retrain'} (iteration {i})"):
        meta = workers.submit(
            workers.train_task, video, rows, model_dir, config, address=run.address
        ).wait()
    with run.timed(f"predict (iteration {i})"):
        raw = workers.submit(
            workers.predict_task,
            video,
            model_dir,
            str(run.out / f"model_iter{i}.csv"),
            address=run.address,
        ).wait()
    run.stages[f"model, iteration {i} (unlabelled frames)"] = errors(raw, truth, unlabelled)
    return meta, raw


def _final_stage(run: _Run, cine, labels, fps, corrected, flow_arrays, raw: pd.DataFrame):
    """Final tracks from the annotations, the flow arrays ``(xy, confidence)`` and the model's
    predictions; writes smoothed.csv. Returns the result and its table."""
    n = len(cine)
    with run.timed("final tracks (annotations, flow, model; fusion)"):
        raw_xy, _ = to_array(raw, labels, n)
        raw_conf, _ = to_array(raw, labels, n, column="confidence")
        # what a person placed is kept; the accepted flow and the model are weighed
        manual = corrected[corrected["source"] == PointSource.MANUAL]
        anchors, _ = to_array(manual, labels, n)
        final = final_tracks(
            cine,
            window=window_frames(run.s.smooth_window_s, fps),
            annotations=anchors,
            flow=flow_arrays[0],
            flow_confidence=flow_arrays[1],
            model=raw_xy,
            model_confidence=raw_conf,
            labels=labels,
        )
        smoothed = from_array(
            final.xy, labels, source=PointSource.SMOOTHED, confidence=final.confidence
        )
        write_points_csv(smoothed, run.out / "smoothed.csv", backup=False)
    return final, smoothed


def _measure_stage(run: _Run, truth, smoothed, labels, cal, n: int):
    """The scenario's measures over the ground truth and the final tracks, written as CSV.
    Returns both measurement tables and the median absolute error of each measure."""
    with run.timed("measure"):
        measures = demo_measures(run.s.scenario, labels)
        save_measures(measures, run.out / "measures.json")
        m_truth = compute(truth, measures, cal, n)
        m_smooth = compute(smoothed, measures, cal, n)
        write_measurements_csv(m_truth, run.out / "measures_truth.csv")
        write_measurements_csv(m_smooth, run.out / "measures_smoothed.csv")
    measure_err = {
        col: float(np.nanmedian(np.abs(m_smooth[col] - m_truth[col])))
        for col in m_truth.columns
        if col not in ("frame", "time [s]")
    }
    return m_truth, m_smooth, measure_err


def demo_measures(scenario: str, labels: list[str]) -> list[Measure]:
    """A measure per application: wall thickness (cardiac) or fascicle architecture (muscle)."""
    if scenario == "muscle":
        return [
            Measure(
                "fascicle",
                "architecture",
                [
                    "fascicle_proximal",
                    "fascicle_distal",
                    "sup_apo_1",
                    "sup_apo_2",
                    "deep_apo_1",
                    "deep_apo_2",
                ],
            )
        ]
    return [
        Measure("anterior wall thickness", "distance", ["anterior_endo", "anterior_epi"]),
        Measure("inferior wall thickness", "distance", ["inferior_endo", "inferior_epi"]),
    ]


def plot_figure(path: Path, truth, raw, smoothed, m_truth, m_smooth, labels) -> Path:
    """Tracks of one label and the first measure against the ground truth, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = labels[0]
    fig, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for table, name, style in (
        (truth, "ground truth", "k-"),
        (raw, "model", "C1."),
        (smoothed, "smoothed", "C0-"),
    ):
        rows = table[table["label"] == label].sort_values("frame")
        axes[0].plot(rows["frame"], rows["y"], style, label=name, ms=3, lw=1.2)
    axes[0].set_ylabel(f"{label}: y [px]")
    axes[0].legend(loc="best", fontsize=8)
    col = [c for c in m_truth.columns if c not in ("frame", "time [s]")][0]
    axes[1].plot(m_truth["frame"], m_truth[col], "k-", label="ground truth")
    axes[1].plot(m_smooth["frame"], m_smooth[col], "C0-", label="smoothed")
    axes[1].set_ylabel(col)
    axes[1].set_xlabel("frame")
    axes[1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_markdown(report: dict) -> str:
    lines = [
        "# napari-dustrack demo report",
        "",
        f"Video: `{report['video']}` ({report['frames']} frames at {report['fps']:g} fps), "
        f"labels: {', '.join(report['labels'])}.",
        f"Keyframes: {report['keyframes']}; curated training frames: {report['curated_frames']}; "
        f"frames reviewed and corrected: {report['review_frames']}.",
        "",
        "## Error against the ground truth (px)",
        "",
        "| stage | n | median | p95 | RMSE |",
        "|---|---|---|---|---|",
    ]
    for stage, e in report["errors_px"].items():
        lines.append(
            f"| {stage} | {e['n']} | {e['median']:.3f} | {e['p95']:.3f} | {e['rmse']:.3f} |"
        )
    lines += ["", "## Model bias (measured on the annotations, removed in the final tracks)", ""]
    lines += [f"- {b}" for b in report.get("model_bias", [])] + ["", report.get("flags", "")]
    lines += ["", "## Measurements (median absolute error, final tracks vs ground truth)", ""]
    lines += [f"- {k}: {v:.4f}" for k, v in report["measure_median_abs_error"].items()]
    lines += ["", "## Time (s)", ""]
    lines += [f"- {k}: {v:.1f}" for k, v in report["seconds"].items()]
    lines += ["", f"Figure: `{Path(report['figure']).name}`", ""]
    return "\n".join(lines)
