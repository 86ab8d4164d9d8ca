"""Robust tracking (issue 12): the fill and the smoother where optical flow breaks, beside DUSTrack.

Usage::

    python benchmarks/bench_robust.py                               # fill + smoother, 4 scenarios
    python benchmarks/bench_robust.py --scenarios probe_slide --repeat 1
    python benchmarks/bench_robust.py --loop --minutes 4            # + train/predict/final tracks
    python benchmarks/bench_robust.py --flags --seeds 0 1 2 3       # flags against the truth only
    python benchmarks/bench_robust.py --final-flow --seeds 0 1 2 3  # final (no model) vs fill

Each simulator scenario (``cardiac``, ``muscle``, ``probe_slide``, ``probe_slide_decorrelated``;
default size and length) is written as H.264 MP4 and decoded once (``open_cine``); every method
gets the same decoded frames.

**Fill.** Keyframes are the ground truth every 20 frames (exact). Methods: DUSTrack 1.3.2's
``lucas_kanade_rstc`` (one call per label and keyframe segment, as its GUI does; in its own venv
through ``dustrack_rstc_driver.py``), our ``fill_between(method="dustrack")`` (the same
LK-RSTC: today's fill) and ``fill_between()`` (method ``robust``, the default). Errors:
Euclidean distance to the truth on the non-keyframe frames between the first and last keyframe:
RMSE, 95th percentile, worst. Times: best CPU time (``time.process_time``, all threads) of
``--repeat`` runs, interleaved, and the wall time of that run.

**Smoother.** Two inputs per scenario: ``noisy`` (truth + N(0, 1.2 px) + 1 % outliers of
6-10 px, the smoother benchmark's noise model) and ``fill`` (our robust fill, with its
confidence; frames of the keyframes' span). Methods: DUSTrack's ``lk_moving_average_filter``
(0.5 s window, GUI defaults, in its venv through ``dustrack_smooth_driver.py``) and our
``fusion`` (0.5 s window). The target compares RMSE and p95 of each with its input's and
DUSTrack's.

**Flags** (``--flags``, instead of the above): for each scenario and seed, both fill methods'
flags (points whose confidence is below ``FLAG_BELOW``: "likely wrong") against the truth on
the non-keyframe frames of the keyframes' span. A point is *wrong* when its error exceeds 2 px,
or (second pair of columns) 3x the fill's median error on that cine. Precision: flagged points
that are wrong; recall: wrong points that are flagged.

**Final tracks from the fill alone** (``--final-flow``, instead of the above): per scenario
and seed, RMSE of the robust fill and of ``final_tracks`` (keyframes anchored, the fill and its
confidence, no model) on the non-keyframe frames of the keyframes' span.

**Loop** (``--loop``): keyframes every 20 frames -> robust fill -> every filled point accepted
-> train the U-Net for ``--minutes`` (dask worker) -> predict -> final tracks (annotations
anchored, flow and bias-corrected model weighed); compared with the fill alone and with
DUSTrack's flow pipeline (its LK-RSTC then its filter).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from _peer import PEER, ensure_peer_env

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data" / "robust"
RSTC_DRIVER = HERE / "dustrack_rstc_driver.py"
SMOOTH_DRIVER = HERE / "dustrack_smooth_driver.py"
KEY_EVERY = 20
WINDOW_S = 0.5
SCENARIOS = ("cardiac", "muscle", "probe_slide", "probe_slide_decorrelated")


def prepare(scenario: str, seed: int):
    from napari_dustrack.io.cine import open_cine
    from napari_dustrack.io.table import to_array
    from napari_dustrack.simulate import simulate, write_simulation

    sim = simulate(scenario, seed=seed)
    paths = write_simulation(sim, DATA / scenario)
    with open_cine(paths["video"], fill_cache=False) as cine:
        frames = np.stack([cine[i] for i in range(len(cine))])
    truth, labels = to_array(sim.truth, sim.labels, len(frames))
    keys = np.full_like(truth, np.nan)
    keys[::KEY_EVERY] = truth[::KEY_EVERY]
    return sim, paths["video"], frames, truth, keys, labels


def span_mask(n: int) -> tuple[np.ndarray, int]:
    """Non-keyframe frames between the first and last keyframe; and the last keyframe."""
    last = (n - 1) // KEY_EVERY * KEY_EVERY
    mask = np.zeros(n, bool)
    mask[: last + 1] = True
    mask[::KEY_EVERY] = False
    return mask, last


def errors(xy, truth, mask=None) -> dict:
    e = np.hypot(*(xy - truth).transpose(2, 0, 1))
    e = e if mask is None else e[mask]
    e = e[np.isfinite(e)]
    return {
        "rmse": float(np.sqrt(np.mean(e**2))),
        "p95": float(np.percentile(e, 95)),
        "max": float(e.max()),
    }


def _peer_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def peer_rstc(frames, keys):
    """DUSTrack's LK-RSTC, one call per label and segment: (xy, wall s, CPU s)."""
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.npz", Path(tmp) / "out.npz"
        np.savez(job, keys=keys, mode=np.array("per_label"), repeat=np.array(1), frames=frames)
        res = subprocess.run(
            [str(PEER), str(RSTC_DRIVER), str(job), str(out)],
            capture_output=True,
            text=True,
            env=_peer_env(),
            cwd=tmp,
        )
        if res.returncode:
            raise SystemExit(f"DUSTrack RSTC driver failed:\n{res.stderr[-3000:]}")
        got = np.load(out)
        return got["xy"], float(got["seconds"]), float(got["cpu_seconds"])


def peer_filter(video, raw):
    """DUSTrack's lk_moving_average_filter on ``raw`` (N, L, 2): (xy, wall s, CPU s)."""
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "raw.npy", raw)
        cmd = [
            str(PEER),
            str(SMOOTH_DRIVER),
            str(video),
            str(Path(tmp) / "raw.npy"),
            "--window",
            str(WINDOW_S),
            "--out",
            str(Path(tmp) / "peer.npy"),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp, env=_peer_env())
        if res.returncode:
            raise SystemExit(f"DUSTrack filter driver failed:\n{res.stderr[-3000:]}")
        info = json.loads(res.stdout.strip().splitlines()[-1])
        return np.load(Path(tmp) / "peer.npy"), info["wall_s"], info["cpu_s"]


def timed(fn, repeat):
    """(result, wall s, CPU s) of the run with the least CPU time."""
    best = None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or cpu < best[2]:
            best = (out, wall, cpu)
    return best


def fill_case(frames, truth, keys, repeat):
    from napari_dustrack.tracking.flow import fill_between

    mask, _ = span_mask(len(frames))
    rows, outs = {}, {}
    peer = min((peer_rstc(frames, keys) for _ in range(repeat)), key=lambda r: r[2])
    rows["DUSTrack LK-RSTC"] = errors(peer[0], truth, mask) | {"wall": peer[1], "cpu": peer[2]}
    for name, method in (("ours dustrack (today)", "dustrack"), ("ours robust", "robust")):
        report: dict = {}
        (xy, conf), wall, cpu = timed(
            lambda method=method, report=report: fill_between(
                frames, keys, method=method, report=report
            ),
            repeat,
        )
        rows[name] = errors(xy, truth, mask) | {
            "wall": wall,
            "cpu": cpu,
            "flags": report["flags"].line(),
        }
        outs[method] = (xy, conf)
    rows["|ours dustrack - DUSTrack| max px"] = float(
        np.nanmax(np.abs(outs["dustrack"][0] - peer[0]))
    )
    outs["peer"] = peer[0]
    return rows, outs


def smooth_case(sim, video, frames, truth, fill, repeat):
    from napari_dustrack.simulate import noisy_estimates
    from napari_dustrack.tracking.smoothing import smooth

    window = int(round(WINDOW_S * sim.fps))
    _, last = span_mask(len(frames))
    inputs = {
        "noisy": (noisy_estimates(truth, 100), None, len(frames)),
        "fill": (fill[0][: last + 1], fill[1][: last + 1], last + 1),
    }
    out = {}
    for name, (raw, conf, n) in inputs.items():
        t = truth[:n]
        peer_video = video
        if n < len(frames):  # DUSTrack smooths a whole video: give it the span only
            from napari_dustrack.io.video_write import write_video

            peer_video = write_video(frames[:n], DATA / f"{sim.scenario}_span.mp4", sim.fps, crf=8)
        peer, p_wall, p_cpu = peer_filter(peer_video, raw)
        ours, wall, cpu = timed(
            lambda n=n, raw=raw, conf=conf: smooth(
                frames[:n], raw, window, "fusion", confidence=conf
            ),
            repeat,
        )
        out[name] = {
            "input": errors(raw, t),
            "DUSTrack filter": errors(peer, t) | {"wall": p_wall, "cpu": p_cpu},
            "fusion": errors(ours, t) | {"wall": wall, "cpu": cpu},
        }
    return out


def loop_case(sim, video, frames, truth, keys, labels, fill, peer_xy, minutes, seed, reuse=False):
    """Fill -> accept -> train -> predict -> final tracks; and DUSTrack's flow pipeline.
    ``reuse``: the predictions of the last run's model, when there are some (no training)."""
    import shutil

    import pandas as pd

    from napari_dustrack import workers
    from napari_dustrack.io.table import from_array, to_array, validate
    from napari_dustrack.tracking.final import final_tracks

    n = len(frames)
    mask, last = span_mask(n)
    xy, conf = fill
    key_frames = np.flatnonzero(np.isfinite(keys).all(axis=2).any(axis=1))
    flow = from_array(xy, labels, source="flow", confidence=conf, reviewed=True)  # all accepted
    curated = validate(
        pd.concat(
            [from_array(keys, labels, source="manual"), flow[~flow["frame"].isin(key_frames)]],
            ignore_index=True,
        )
    )
    model_dir, pred_csv = DATA / sim.scenario / "model", DATA / sim.scenario / "pred.csv"
    t0 = time.perf_counter()
    reused = reuse and pred_csv.exists()
    if reused:
        pred = pd.read_csv(pred_csv)
        if (model_dir / "reused.json").exists():
            minutes = json.loads((model_dir / "reused.json").read_text())["minutes"]
    else:
        shutil.rmtree(model_dir, ignore_errors=True)
        workers.submit(
            workers.train_task,
            str(video),
            curated,
            str(model_dir),
            {"minutes": minutes, "seed": seed},
        ).wait()
        pred = workers.submit(
            workers.predict_task, str(video), str(model_dir), str(pred_csv)
        ).wait()
        (model_dir / "reused.json").write_text(json.dumps({"minutes": minutes}))
    t_model = time.perf_counter() - t0
    model, _ = to_array(pred, labels, n)
    model_c, _ = to_array(pred, labels, n, column="confidence")
    window = int(round(WINDOW_S * sim.fps))
    final = final_tracks(
        frames,
        window=window,
        annotations=keys,
        flow=xy,
        flow_confidence=conf,
        model=model,
        model_confidence=model_c,
        labels=labels,
    )
    from napari_dustrack.io.video_write import write_video

    span_video = write_video(frames[: last + 1], DATA / f"{sim.scenario}_span.mp4", sim.fps, crf=8)
    peer_smooth, _, _ = peer_filter(span_video, peer_xy[: last + 1])
    m = mask[: last + 1]
    t = truth[: last + 1]
    return {
        "fill": errors(xy[: last + 1], t, m),
        "model": errors(model[: last + 1], t, m),
        "final": errors(final.xy[: last + 1], t, m),
        "DUSTrack flow pipeline": errors(peer_smooth, t, m),
        "bias": final.bias.lines(labels) if final.bias is not None else [],
        "train_predict_s": t_model,
        "minutes": minutes,
        "reused": reused,
    }


def flag_case(frames, truth, keys) -> dict:
    """Precision and recall of both fill methods' flags (see the module docstring)."""
    from napari_dustrack.tracking.flow import fill_between
    from napari_dustrack.tracking.flow_confidence import FLAG_BELOW

    mask, _ = span_mask(len(frames))
    out = {}
    for method in ("robust", "dustrack"):
        xy, conf = fill_between(frames, keys, method=method)
        e = np.hypot(*(xy - truth).transpose(2, 0, 1))[mask]
        have = np.isfinite(e)
        flag = have & (conf[mask] < FLAG_BELOW)
        row = {
            "points": int(have.sum()),
            "flagged": int(flag.sum()),
            "frames": int(flag.any(axis=1).sum()),
            "median": float(np.median(e[have])),
        }
        for name, limit in (("2px", 2.0), ("3med", 3 * row["median"])):
            wrong = have & (e > limit)
            row[name] = (int((flag & wrong).sum()), int(flag.sum()), int(wrong.sum()))
        out[method] = row
    return out


def final_flow_case(sim, frames, truth, keys) -> dict:
    """RMSE of the robust fill and of the final tracks made from it alone (no model)."""
    from napari_dustrack.tracking.final import final_tracks
    from napari_dustrack.tracking.flow import fill_between

    mask, last = span_mask(len(frames))
    xy, conf = fill_between(frames, keys)
    final = final_tracks(
        frames,
        window=int(round(WINDOW_S * sim.fps)),
        annotations=keys,
        flow=xy,
        flow_confidence=conf,
    )
    return {"fill": errors(xy, truth, mask), "final": errors(final.xy, truth, mask)}


def flag_report(rows: dict, load) -> str:
    """Markdown table of :func:`flag_case` results, ``rows[(scenario, seed)]``."""

    def pr(tp, flagged, wrong):
        p = f"{tp / flagged:.2f}" if flagged else "-"
        r = f"{tp / wrong:.2f}" if wrong else "-"
        return f"{p} ({tp}/{flagged}) | {r} ({tp}/{wrong})"

    lines = [
        f"machine: {os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} "
        f"/ {load[2]:.1f} (1/5/15 min) at the end\n",
        "| scenario | seed | method | flagged points / frames | median err | precision >2 px |"
        " recall >2 px | precision >3x median | recall >3x median |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (sc, seed), by in rows.items():
        for method, r in by.items():
            lines.append(
                f"| {sc} | {seed} | {method} | {r['flagged']} / {r['frames']} | "
                f"{r['median']:.2f} | {pr(*r['2px'])} | {pr(*r['3med'])} |"
            )
    return "\n".join(lines)


def report(results, load) -> str:
    lines = [
        f"machine: {os.cpu_count()} CPU cores, load average {load[0]:.1f} / {load[1]:.1f} "
        f"/ {load[2]:.1f} (1/5/15 min) at the end"
    ]
    ratios, speed = [], []
    for sc, r in results.items():
        lines.append(f"\n### {sc}: fill, keyframes every {KEY_EVERY} frames\n")
        lines.append("| method | RMSE | p95 | worst | CPU (s) | wall (s) |")
        lines.append("|---|---|---|---|---|---|")
        for name, m in r["fill"].items():
            if isinstance(m, dict):
                lines.append(
                    f"| {name} | {m['rmse']:.3f} | {m['p95']:.2f} | {m['max']:.2f} | "
                    f"{m['cpu']:.2f} | {m['wall']:.2f} |"
                )
        f = r["fill"]
        lines.append(
            f"\n{f['ours robust']['flags']}; max |ours dustrack - DUSTrack| = "
            f"{f['|ours dustrack - DUSTrack| max px']:.2e} px"
        )
        for inp, rows in r["smooth"].items():
            lines.append(f"\n{sc}, smoother on the {inp} input (window {WINDOW_S} s):\n")
            lines.append("| method | RMSE | p95 | worst | CPU (s) |")
            lines.append("|---|---|---|---|---|")
            for name, m in rows.items():
                cpu = f"{m['cpu']:.2f}" if "cpu" in m else "-"
                lines.append(
                    f"| {name} | {m['rmse']:.3f} | {m['p95']:.2f} | {m['max']:.2f} | {cpu} |"
                )
            if sc in ("cardiac", "muscle", "probe_slide"):
                ratios.append(rows["fusion"]["rmse"] / rows["DUSTrack filter"]["rmse"])
        speed.append((sc, f["ours robust"]["cpu"] / f["ours dustrack (today)"]["cpu"]))
    lines.append("\n### Targets\n")
    for sc, r in results.items():
        f = r["fill"]
        ratio = f["ours robust"]["rmse"] / f["DUSTrack LK-RSTC"]["rmse"]
        today = f["ours robust"]["rmse"] / f["ours dustrack (today)"]["rmse"]
        ok = [
            all(
                rows["fusion"][k] <= rows["input"][k]
                and rows["fusion"][k] <= rows["DUSTrack filter"][k]
                for k in ("rmse", "p95")
            )
            for rows in r["smooth"].values()
        ]
        lines.append(
            f"- {sc}: fill RMSE {ratio:.2f}x DUSTrack LK-RSTC ({today:.2f}x today's), "
            f"worst {f['ours robust']['max']:.2f} px; CPU {dict(speed)[sc]:.2f}x today's"
            f" fill; smoother <= input and <= DUSTrack (RMSE and p95): "
            f"{', '.join(f'{k}: {v}' for k, v in zip(r['smooth'], ok, strict=False))}"
        )
    if ratios:
        lines.append(
            f"- fusion RMSE / DUSTrack filter RMSE, geometric mean over cardiac, muscle, "
            f"probe_slide and both inputs: {float(np.exp(np.mean(np.log(ratios)))):.2f}"
        )
    for sc, r in results.items():
        if "loop" not in r:
            continue
        lp = r["loop"]
        how = (
            "the previous run's predictions"
            if lp.get("reused")
            else f"train + predict {lp['train_predict_s']:.0f} s"
        )
        lines.append(f"\n### {sc}: the loop (train {lp['minutes']:g} min, {how})\n")
        lines.append("| stage | RMSE | p95 | worst |")
        lines.append("|---|---|---|---|")
        for name in ("fill", "model", "final", "DUSTrack flow pipeline"):
            m = lp[name]
            lines.append(f"| {name} | {m['rmse']:.3f} | {m['p95']:.2f} | {m['max']:.2f} |")
        peer = lp["DUSTrack flow pipeline"]["rmse"]
        lines.append(
            f"\nfinal / fill {lp['final']['rmse'] / lp['fill']['rmse']:.2f}, final / "
            f"DUSTrack flow pipeline {lp['final']['rmse'] / peer:.2f}; model bias:"
        )
        lines += [f"- {b}" for b in lp["bias"]]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--loop", action="store_true", help="also run train/predict/final tracks")
    ap.add_argument("--minutes", type=float, default=4.0, help="training time of the loop")
    ap.add_argument(
        "--reuse-model",
        action="store_true",
        help="loop: reuse the last run's predictions (and its minutes), no training",
    )
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--flags", action="store_true", help="only the flags' precision/recall against the truth"
    )
    ap.add_argument(
        "--final-flow", action="store_true", help="only final tracks from the fill vs the fill"
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="--flags: seeds")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)
    DATA.mkdir(parents=True, exist_ok=True)
    if args.final_flow:
        print("| scenario | seed | fill RMSE | final RMSE | final / fill | worst fill / final |")
        print("|---|---|---|---|---|---|")
        for sc in args.scenarios:
            for seed in args.seeds or [args.seed]:
                sim, _, frames, truth, keys, _ = prepare(sc, seed)
                r = final_flow_case(sim, frames, truth, keys)
                a, b = r["fill"], r["final"]
                print(
                    f"| {sc} | {seed} | {a['rmse']:.3f} | {b['rmse']:.3f} | "
                    f"{b['rmse'] / a['rmse']:.3f} | {a['max']:.2f} / {b['max']:.2f} |",
                    flush=True,
                )
        load = os.getloadavg()
        print(f"\nload average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end")
        return
    if args.flags:
        rows = {}
        for sc in args.scenarios:
            for seed in args.seeds or [args.seed]:
                print(f"[{sc} seed {seed}] flags ...", file=sys.stderr)
                _, _, frames, truth, keys, _ = prepare(sc, seed)
                rows[(sc, seed)] = flag_case(frames, truth, keys)
        print(flag_report(rows, os.getloadavg()))
        return
    ensure_peer_env()
    results = {}
    for sc in args.scenarios:
        print(f"[{sc}] simulating ...", file=sys.stderr)
        sim, video, frames, truth, keys, labels = prepare(sc, args.seed)
        print(f"[{sc}] fill ...", file=sys.stderr)
        fill_rows, outs = fill_case(frames, truth, keys, args.repeat)
        print(f"[{sc}] smoother ...", file=sys.stderr)
        smooth_rows = smooth_case(sim, video, frames, truth, outs["robust"], args.repeat)
        results[sc] = {"fill": fill_rows, "smooth": smooth_rows}
        if args.loop:
            print(f"[{sc}] loop (train {args.minutes:g} min) ...", file=sys.stderr)
            results[sc]["loop"] = loop_case(
                sim,
                video,
                frames,
                truth,
                keys,
                labels,
                outs["robust"],
                outs["peer"],
                args.minutes,
                args.seed,
                args.reuse_model,
            )
    print(report(results, os.getloadavg()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
