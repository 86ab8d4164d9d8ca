"""Probe every subcommand with bad input through the real CLI and tally how each one ends.

    python benchmarks/probe_reliability.py [--workdir DIR] [--jobs 3] [--verbose]

Kinds of probes (issue 15): bad point files, bad tables, bad videos, bad model folders, bad
options and bad destinations, for all nine subcommands, plus crafted files that would run code
and a few valid controls. Each probe runs ``python -m napari_dustrack ...`` in a subprocess and
is classified:

- ``clean``: exit status 2 and one stderr line ``napari-dustrack <cmd>: error: ...`` that names
  the bad file (or option);
- ``unnamed``: a clean one-line error that does not name the file or option;
- ``noisy``: exit 2 but more than one stderr line (log blocks, warnings);
- ``traceback``: a Python traceback, or any other exit status;
- ``silently wrong``: exit 0 for input that must be refused;
- ``ignored option``: exit 0 with an invalid option value;
- ``ran code``: a crafted file's payload ran (a marker file appeared).

Controls (valid input) must exit 0. Tiny inputs keep it to a few minutes: a 12-frame simulated
cine, and a model folder with untrained weights (no training runs).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
COMMANDS = (
    "propagate",
    "train",
    "predict",
    "smooth",
    "batch",
    "simulate",
    "measure",
    "export",
    "demo",
)


@dataclass
class Probe:
    # bad file, bad table, bad video, bad model, bad option, bad destination, crafted, control
    kind: str
    command: str
    args: list
    needle: str | None = None  # what the error line must name (file or option)
    marker: Path | None = None  # for crafted files: must never appear
    outcome: str = ""
    line: str = ""
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs
class Inputs:
    """The files probes use, made once in ``work``."""

    def __init__(self, work: Path):
        from napari_dustrack.io.points_io import write_points
        from napari_dustrack.io.table import read_points_csv

        self.work = work
        run_cli(
            ["simulate", "--scenario", "cardiac", "--out", work / "sim", "--frames", "12"],
            check=True,
        )
        self.video = work / "sim" / "cardiac.mp4"
        truth = read_points_csv(work / "sim" / "cardiac_truth.csv")
        self.labels = list(dict.fromkeys(truth["label"]))[:2]
        keys = truth[truth["label"].isin(self.labels) & truth["frame"].isin([0, 11])]
        self.keys = write_points(keys, work / "keys.csv")
        self.tracks = write_points(truth[truth["label"].isin(self.labels)], work / "tracks.csv")
        self.tracks_h5 = write_points(
            truth[truth["label"].isin(self.labels)], work / "CollectedData_probe.h5", n_frames=12
        )
        self.measures = work / "measures.json"
        self.measures.write_text(
            json.dumps(
                {
                    "version": 1,
                    "measures": [{"name": "d", "kind": "distance", "labels": self.labels}],
                }
            )
        )
        self.model = self._model(work / "model")
        self.file = work / "a_file.txt"
        self.file.write_text("not a folder")
        self.folder = work / "a_folder"
        self.folder.mkdir()
        self.unwritable = "/proc/dustrack-probe/out"  # a place nobody can create files in

    def _model(self, folder: Path) -> Path:
        from napari_dustrack.tracking.heatmap import HeatmapConfig
        from napari_dustrack.tracking.heatmap.model import architecture, build_model
        from napari_dustrack.tracking.heatmap.store import save_model

        arch = architecture(HeatmapConfig(), len(self.labels))
        meta = {
            "labels": self.labels,
            "working_size": [64, 64],
            "source_size": [256, 256],
            "normalisation": {"mean": 0.3, "std": 0.2},
            "architecture": arch,
            "training_frames": [0, 11],
            "iteration": 1,
            "metrics": {},
        }
        save_model(folder, build_model(arch, pretrained=False).state_dict(), meta)
        return folder

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.work / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def model_copy(self, name: str, edit=None, meta_changes: dict | None = None) -> Path:
        import shutil

        folder = self.work / "models" / name
        shutil.copytree(self.model, folder)
        if meta_changes:
            meta = json.loads((folder / "model.json").read_text())
            meta.update(meta_changes)
            (folder / "model.json").write_text(json.dumps(meta))
        if edit:
            edit(folder)
        return folder


# ----------------------------------------------------------------------------- the probes
def bad_tables(inp: Inputs) -> dict[str, Path]:
    """Point files that must be refused, by what is wrong with them."""
    w = inp.write
    good_header = "frame,label,x,y\n"
    files = {
        "missing file": inp.work / "in" / "nope.csv",
        "a folder": inp.folder,
        "empty file": w("empty.csv", ""),
        "binary garbage": w("garbage.csv", bytes(range(256)) * 4),
        "missing column": w("nocol.csv", "frame,label,x\n0,a,1\n"),
        "non-numeric x": w("text.csv", good_header + "0,a,abc,2\n"),
        "NaN x": w("nan.csv", good_header + "0,a,nan,2\n"),
        "inf x": w("inf.csv", good_header + "0,a,inf,2\n"),
        "-inf y": w("minf.csv", good_header + "0,a,1,-inf\n"),
        "negative frame": w("negframe.csv", good_header + "-1,a,1,2\n"),
        "fractional frame": w("fracframe.csv", good_header + "0.5,a,1,2\n"),
        "duplicate rows": w("dup.csv", good_header + "0,a,1,2\n0,a,3,4\n"),
        "unknown source": w("src.csv", "frame,label,x,y,source\n0,a,1,2,guess\n"),
        "confidence 2": w("conf.csv", "frame,label,x,y,confidence\n0,a,1,2,2\n"),
        "empty label": w("nolabel.csv", good_header + "0,,1,2\n"),
        "unsupported suffix": w("points.txt", good_header + "0,a,1,2\n"),
        "malformed JSON": w("bad_annotations_manual.json", '{"a": {"0": [1, 2]'),
        "JSON wrong shape": w("shape_annotations_manual.json", '{"a": [1, 2]}'),
        "JSON Infinity": w("infj_annotations_manual.json", '{"a": {"0": [Infinity, 2]}}'),
        "DLC header only": w("CollectedData_cut.csv", "scorer,me,me\nbodyparts,a,a\n"),
        "damaged H5": w("CollectedData_bad.h5", b"\x89HDF\r\n\x1a\n" + bytes(300)),
    }
    return files


def crafted_h5(inp: Inputs) -> tuple[Path, Path]:
    """A DeepLabCut-shaped H5 whose pickled attribute would create ``marker`` when unpickled."""
    import tables

    from napari_dustrack.io.points_io import write_points
    from napari_dustrack.io.table import make_table

    marker = inp.work / "PAYLOAD_RAN"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = inp.work / "in" / "CollectedData_crafted.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_points(make_table([0], ["a"], [1], [2]), path, backup=False)
    with tables.open_file(str(path), mode="a") as h5:
        h5.get_node("/df_with_missing")._v_attrs.comment = Payload()
    return path, marker


def probes(inp: Inputs) -> list[Probe]:
    v, k, t, m, ms = inp.video, inp.keys, inp.tracks, inp.model, inp.measures
    out = inp.work / "out"
    P: list[Probe] = []
    # point-file inputs of every command that reads one
    readers = {
        "propagate": lambda f: ["propagate", v, "--keyframes", f, "--out", out / "p.csv"],
        "train": lambda f: ["train", v, "--labels", f, "--model", inp.work / "newmodel"],
        "smooth": lambda f: [
            "smooth",
            v,
            "--tracks",
            f,
            "--out",
            out / "s.csv",
            "--window-frames",
            "3",
        ],
        "measure": lambda f: [
            "measure",
            v,
            "--tracks",
            f,
            "--measures",
            ms,
            "--out",
            out / "m.csv",
        ],
        "export": lambda f: ["export", v, "--tracks", f, "--out", out / "e.csv"],
    }
    for what, path in bad_tables(inp).items():
        for cmd, make in readers.items():
            P.append(
                Probe(
                    "bad table" if path.exists() and path.is_file() else "bad file",
                    cmd,
                    make(path),
                    needle=str(path),
                    extra={"what": what},
                )
            )
    crafted, marker = crafted_h5(inp)
    for cmd, make in readers.items():
        P.append(
            Probe(
                "crafted",
                cmd,
                make(crafted),
                needle=str(crafted),
                marker=marker,
                extra={"what": "pickled payload in an H5 attribute"},
            )
        )
    far = inp.write("far.csv", "frame,label,x,y\n0,a,1,2\n12,a,1,2\n")  # the cine has 0..11
    for cmd, args in {
        "smooth": ["smooth", v, "--tracks", far, "--out", out / "s.csv", "--window-frames", "3"],
        "measure": ["measure", v, "--tracks", far, "--measures", ms, "--out", out / "m.csv"],
        "export.h5": ["export", v, "--tracks", far, "--out", out / "far.h5"],
        "export.mp4": ["export", v, "--tracks", far, "--out", out / "far.mp4"],
    }.items():
        P.append(
            Probe(
                "bad table",
                cmd.split(".")[0],
                args,
                needle=str(far),
                extra={"what": "frames beyond the video"},
            )
        )
    empty = inp.write("header_only.csv", "frame,label,x,y\n")
    P.append(
        Probe(
            "bad table",
            "export",
            ["export", v, "--tracks", empty, "--out", out / "x.h5"],
            needle=str(empty),
            extra={"what": "empty table to .h5"},
        )
    )
    # videos
    videos = {
        "missing video": inp.work / "in" / "nope.mp4",
        "garbage video": inp.write("garbage.mp4", bytes(range(256)) * 16),
        "empty video": inp.write("empty.mp4", b""),
        "truncated video": inp.write("cut.mp4", v.read_bytes()[: v.stat().st_size // 3]),
        "folder without frames": inp.folder,
    }
    for what, path in videos.items():
        for cmd, args in {
            "propagate": ["propagate", path, "--keyframes", k, "--out", out / "p.csv"],
            "smooth": [
                "smooth",
                path,
                "--tracks",
                t,
                "--out",
                out / "s.csv",
                "--window-frames",
                "3",
            ],
            "measure": ["measure", path, "--tracks", t, "--measures", ms, "--out", out / "m.csv"],
            "export": ["export", path, "--tracks", t, "--out", out / "e.mp4"],
        }.items():
            P.append(Probe("bad video", cmd, args, needle=str(path), extra={"what": what}))
    P.append(
        Probe(
            "bad video",
            "predict",
            ["predict", videos["missing video"], "--model", m, "--out", out / "r.csv"],
            needle=str(videos["missing video"]),
            extra={"what": "missing video"},
        )
    )
    P.append(
        Probe(
            "bad video",
            "train",
            ["train", videos["missing video"], "--labels", k, "--model", inp.work / "newmodel"],
            needle=str(videos["missing video"]),
            extra={"what": "missing video"},
        )
    )
    P.append(
        Probe(
            "bad video",
            "batch",
            ["batch", videos["garbage video"], "--model", m, "--out", out / "batch1"],
            needle=videos["garbage video"].name,
            extra={"what": "garbage video"},
        )
    )
    # measures file
    for what, content in {
        "measures not JSON": "{",
        "measures wrong shape": '{"measures": 3}',
    }.items():
        path = inp.write(what.replace(" ", "_") + ".json", content)
        P.append(
            Probe(
                "bad file",
                "measure",
                ["measure", v, "--tracks", t, "--measures", path, "--out", out / "m.csv"],
                needle=str(path),
                extra={"what": what},
            )
        )
    # model folders
    models = {
        "missing model folder": (inp.work / "models" / "nope", None),
        "folder without model.json": (inp.folder, None),
        "model.json not JSON": (
            inp.model_copy("notjson", lambda f: (f / "model.json").write_text("{")),
            "model.json",
        ),
        "another format": (
            inp.model_copy("format", meta_changes={"format": "other"}),
            "model.json",
        ),
        "missing fields": (
            inp.model_copy(
                "fields",
                lambda f: (f / "model.json").write_text('{"format": "napari-dustrack-heatmap"}'),
            ),
            "model.json",
        ),
        "working_size a string": (
            inp.model_copy("wstr", meta_changes={"working_size": "64x64"}),
            "model.json",
        ),
        "labels a string": (inp.model_copy("lstr", meta_changes={"labels": "ab"}), "model.json"),
        "std 0": (
            inp.model_copy("std0", meta_changes={"normalisation": {"mean": 0.3, "std": 0}}),
            "model.json",
        ),
        "weights outside the folder": (
            inp.model_copy("outside", meta_changes={"weights": "../../keys.csv"}),
            "model.json",
        ),
        "weights missing": (
            inp.model_copy("noweights", lambda f: [p.unlink() for p in f.glob("*.safetensors")]),
            ".safetensors",
        ),
        "weights corrupt": (
            inp.model_copy(
                "corrupt", lambda f: [p.write_bytes(b"x") for p in f.glob("*.safetensors")]
            ),
            ".safetensors",
        ),
        "tampered working_size": (
            inp.model_copy("tampered", meta_changes={"working_size": [96, 64]}),
            "model.json",
        ),
    }
    for what, (folder, leaf) in models.items():
        needle = str(folder / leaf) if leaf == "model.json" else str(folder)
        P.append(
            Probe(
                "bad model",
                "predict",
                ["predict", v, "--model", folder, "--out", out / f"r_{folder.name}.csv"],
                needle=needle,
                extra={"what": what},
            )
        )
    for what in ("missing model folder", "working_size a string", "std 0"):
        folder, leaf = models[what]
        needle = str(folder / leaf) if leaf == "model.json" else str(folder)
        P.append(
            Probe(
                "bad model",
                "batch",
                ["batch", v, "--model", folder, "--out", out / f"b_{folder.name}"],
                needle=needle,
                extra={"what": what},
            )
        )
    wrong_labels = inp.write("other_labels.csv", "frame,label,x,y\n0,zz,1,2\n11,zz,3,4\n")
    P.append(
        Probe(
            "bad model",
            "train",
            ["train", v, "--labels", wrong_labels, "--model", m],
            needle=str(m),
            extra={"what": "continue a model with other labels"},
        )
    )
    # options
    options = [
        ("smooth", ["--window", "nan"]),
        ("smooth", ["--window", "inf"]),
        ("smooth", ["--window", "0"]),
        ("smooth", ["--window", "-1"]),
        ("smooth", ["--window-frames", "0"]),
        ("simulate", ["--seed", "-1"]),
        ("simulate", ["--frames", "0"]),
        ("simulate", ["--frames", "-3"]),
        ("simulate", ["--scenario", "bogus"]),
        ("measure", ["--spacing", "0", "0"]),
        ("measure", ["--spacing", "-1", "1"]),
        ("measure", ["--spacing", "nan", "1"]),
        ("measure", ["--fps", "0"]),
        ("measure", ["--fps", "-5"]),
        ("measure", ["--fps", "nan"]),
        ("measure", ["--fps", "inf"]),
        ("batch", ["--chunk-frames", "0"]),
        ("batch", ["--chunk-frames", "-1"]),
        ("batch", ["--smooth", "0"]),
        ("batch", ["--smooth", "nan"]),
        ("propagate", ["--extend", "-1"]),
        ("train", ["--minutes", "0"]),
        ("train", ["--minutes", "nan"]),
    ]
    base = {
        "smooth": ["smooth", v, "--tracks", t, "--out", out / "opt_s.csv"],
        "simulate": ["simulate", "--out", out / "opt_sim", "--frames", "3"],
        "measure": ["measure", v, "--tracks", t, "--measures", ms, "--out", out / "opt_m.csv"],
        "batch": ["batch", v, "--model", m, "--out", out / "opt_b"],
        "propagate": ["propagate", v, "--keyframes", k, "--out", out / "opt_p.csv"],
        "train": ["train", v, "--labels", k, "--model", inp.work / "opt_model"],
    }
    for cmd, extra in options:
        needle = "bogus" if "bogus" in extra else extra[0]
        P.append(
            Probe(
                "bad option", cmd, base[cmd] + extra, needle=needle, extra={"what": " ".join(extra)}
            )
        )
    # destinations
    dests = {
        "propagate": lambda o: ["propagate", v, "--keyframes", k, "--out", o],
        "train": lambda o: ["train", v, "--labels", k, "--model", o],
        "predict": lambda o: ["predict", v, "--model", m, "--out", o],
        "smooth": lambda o: ["smooth", v, "--tracks", t, "--out", o, "--window-frames", "3"],
        "batch": lambda o: ["batch", v, "--model", m, "--out", o],
        "simulate": lambda o: ["simulate", "--out", o, "--frames", "3"],
        "measure": lambda o: ["measure", v, "--tracks", t, "--measures", ms, "--out", o],
        "export": lambda o: ["export", v, "--tracks", t, "--out", o],
        "export.h5": lambda o: ["export", v, "--tracks", t, "--out", o],
        "demo": lambda o: ["demo", "--out", o, "--quick"],
    }
    folders = {"train", "batch", "simulate", "demo"}
    for cmd, make in dests.items():
        name = cmd.split(".")[0]
        suffix = ".h5" if cmd.endswith(".h5") else ".csv"
        cases = {
            "inside a file": (inp.file / f"x{suffix}", str(inp.file / f"x{suffix}")),
            "unwritable place": (Path(inp.unwritable) / f"x{suffix}", "/proc/dustrack-probe"),
        }
        if name in folders:
            cases["an existing file"] = (inp.file, str(inp.file))
        else:
            cases["a folder"] = (inp.folder, str(inp.folder))
        for what, (dest, needle) in cases.items():
            P.append(
                Probe(
                    "bad destination",
                    name,
                    make(dest),
                    needle=needle,
                    extra={"what": f"output {what}"},
                )
            )
    notes = inp.work / "not_a_model"
    notes.mkdir(exist_ok=True)
    (notes / "notes.txt").write_text("mine")
    P.append(
        Probe(
            "bad destination",
            "train",
            dests["train"](notes),
            needle=str(notes),
            extra={"what": "model folder holding other files"},
        )
    )
    # controls: valid input must work
    P.append(Probe("control", "export", ["export", v, "--tracks", t, "--out", out / "ok.h5"]))
    P.append(
        Probe(
            "control", "export", ["export", v, "--tracks", inp.tracks_h5, "--out", out / "ok.json"]
        )
    )
    P.append(
        Probe(
            "control",
            "measure",
            [
                "measure",
                v,
                "--tracks",
                t,
                "--measures",
                ms,
                "--out",
                out / "ok_m.csv",
                "--fps",
                "25",
            ],
        )
    )
    P.append(
        Probe(
            "control",
            "simulate",
            ["simulate", "--out", out / "ok_sim", "--frames", "3", "--seed", "5"],
        )
    )
    P.append(
        Probe("control", "propagate", ["propagate", v, "--keyframes", k, "--out", out / "ok_p.csv"])
    )
    P.append(
        Probe(
            "control",
            "smooth",
            [
                "smooth",
                v,
                "--tracks",
                t,
                "--out",
                out / "ok_s.csv",
                "--window-frames",
                "3",
                "--mode",
                "fast",
            ],
        )
    )
    return P


# ----------------------------------------------------------------------------- running
def run_cli(args, check=False, timeout=600) -> subprocess.CompletedProcess:
    """``python -m napari_dustrack ARGS``; on timeout its whole process group (dask workers
    included) is killed and ``TimeoutExpired`` raised."""
    import signal

    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p
        ),
    )
    cmd = [sys.executable, "-m", "napari_dustrack", *map(str, args)]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if check and done.returncode != 0:
        raise SystemExit(f"setup failed: {' '.join(map(str, args))}\n{done.stderr}")
    return done


# Lines a command prints on stderr while working: progress, not part of an error report.
PROGRESS = re.compile(
    r"^(\[[#-]+\] tasks|\s*\d+/\d+ frames|training on |continuing from |"
    r"(propagating|smoothing) +\d+%)"
)


def classify(p: Probe, done: subprocess.CompletedProcess) -> str:
    err = done.stderr.strip()
    lines = [
        ln for ln in err.replace("\r", "\n").splitlines() if ln.strip() and not PROGRESS.match(ln)
    ]
    p.line = lines[-1] if lines else ""
    if p.marker is not None and p.marker.exists():
        return "ran code"
    if p.kind == "control":
        return "control ok" if done.returncode == 0 else "control failed"
    if "Traceback" in err:
        return "traceback"
    if done.returncode == 0:
        return "ignored option" if p.kind == "bad option" else "silently wrong"
    if done.returncode != 2:
        return "traceback"
    if len(lines) != 1 or not lines[0].startswith(f"napari-dustrack {p.command}: error:"):
        return "noisy"
    if p.needle and p.needle not in lines[0]:
        return "unnamed"
    return "clean"


def run_probe(p: Probe, timeout: float = 600) -> Probe:
    t0 = time.perf_counter()
    try:
        done = run_cli(p.args, timeout=timeout)
        p.outcome = classify(p, done)
    except subprocess.TimeoutExpired:
        p.outcome = "timeout"
    p.seconds = time.perf_counter() - t0
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None, help="keep the inputs here")
    ap.add_argument("--jobs", type=int, default=3, help="probes run at once")
    ap.add_argument("--verbose", action="store_true", help="print every probe's last line")
    ap.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds per probe; longer counts as 'timeout' (work not refused up front)",
    )
    opts = ap.parse_args()
    work = opts.workdir or Path(tempfile.mkdtemp(prefix="dustrack-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    inp = Inputs(work)
    todo = probes(inp)
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        results = list(pool.map(lambda p: run_probe(p, opts.timeout), todo))
    wall = time.perf_counter() - t0
    bad = [p for p in results if p.outcome not in ("clean", "control ok")]
    for p in results if opts.verbose else bad:
        print(f"[{p.outcome}] {p.kind} / {p.command} / {p.extra.get('what', '')}: {p.line}")
    tally = Counter(p.outcome for p in results)
    per_kind = Counter((p.kind, p.outcome) for p in results)
    print(
        f"\n{len(results)} probes over {len({p.command for p in results})} subcommands "
        f"({', '.join(c for c in COMMANDS if any(p.command == c for p in results))}) "
        f"in {wall:.0f} s wall, load average {os.getloadavg()[0]:.1f}"
    )
    print("| outcome | probes |\n|---|---|")
    for outcome in (
        "clean",
        "unnamed",
        "noisy",
        "traceback",
        "silently wrong",
        "ignored option",
        "ran code",
        "timeout",
        "control ok",
        "control failed",
    ):
        print(f"| {outcome} | {tally.get(outcome, 0)} |")
    print("\n| kind | probes | clean | other |\n|---|---|---|---|")
    for kind in sorted({p.kind for p in results}):
        n = sum(v for (k, _), v in per_kind.items() if k == kind)
        ok = per_kind.get((kind, "clean"), 0) + per_kind.get((kind, "control ok"), 0)
        print(f"| {kind} | {n} | {ok} | {n - ok} |")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
