"""Where the GUI thread spends its time while predictions, smoothed points and accepted points
are applied: the *predict apply*, *accept* and *smooth apply* actions of ``bench_gui.py``.

Usage (re-runs itself under ``xvfb-run`` when there is no display)::

    python benchmarks/profile_apply.py --cine long            # 10,000 frames x 8 labels
    python benchmarks/profile_apply.py --cine short --top 25  # and a cProfile of each action
    python benchmarks/profile_apply.py --cine short --first-layer  # a new result layer's turns
    python benchmarks/profile_apply.py --cine long --session  # bench_gui's session, split

For each action: the event loop's lateness (a 20 ms ``QTimer`` watchdog, as in bench_gui.py);
the GUI thread's CPU time in each slice between two ticks (``time.thread_time``: what the event
loop waited for, without the time the thread sat ready while other processes had the cores, so
it is comparable between runs on a loaded machine); the slices with the most CPU and what the
GUI thread was doing in them (a sampling thread reads its stack every 2 ms); optionally a
cProfile of the GUI thread. The load average is printed with the figures. The GL drawing of
Mesa's llvmpipe runs in its own threads: the time the GUI thread waits for it is lateness, not
CPU of the GUI thread.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_gui  # noqa: E402 - the benchmark's cines, watchdog and event-loop helpers

SLICE_MS = 50.0  # slices longer than this are listed


class Sampler:
    """Samples the GUI thread's stack every ``interval`` seconds (from a daemon thread)."""

    def __init__(self, interval=0.002):
        self.ident = threading.main_thread().ident
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.interval = interval
        self.collections: list[tuple[int, float, float]] = []  # (generation, start, end)
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            frame = sys._current_frames().get(self.ident)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{Path(code.co_filename).name}:{code.co_name}")
                frame = frame.f_back
            self.samples.append((time.perf_counter(), tuple(stack)))
            time.sleep(self.interval)

    def _on_gc(self, phase, info):
        # Python's cyclic garbage collector runs inside whatever allocates: a full collection
        # of this process's heap (generation 2) takes 0.1-0.5 s and shows in no stack
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.collections.append((info["generation"], self._gc_start, time.perf_counter()))

    def stop(self):
        self._stop.set()
        self._thread.join()
        gc.callbacks.remove(self._on_gc)

    def during(self, t0, t1):
        return [s for t, s in self.samples if t0 <= t <= t1]


class SliceDog(bench_gui.Watchdog):
    """The benchmark's watchdog, also keeping each tick's time (to find the long slices)."""

    def __init__(self):
        self.ticks: list[tuple[str, float, float, float]] = []
        self._cpu = time.thread_time()
        super().__init__()

    def _tick(self):
        before, cpu = self._last, time.thread_time()
        super()._tick()
        # the GUI thread's CPU time in the slice: what the event loop waited for, without the
        # time the thread sat ready but without a core (other processes' load)
        self.ticks.append((self.action, before, self._last, (cpu - self._cpu) * 1000))
        self._cpu = cpu


def where(stack) -> str:
    """``outer > ... > inner``: the three frames under the event loop's entry (who was called)
    and the three innermost (what it was doing)."""
    outer = len(stack)
    for i, entry in enumerate(stack):
        if entry.startswith(("bench_gui.py:", "profile_apply.py:")):
            outer = i
            break
    inside = list(reversed(stack[:outer]))  # outermost first
    if len(inside) <= 6:
        return " > ".join(inside) or "(idle in the event loop)"
    return " > ".join(inside[:3]) + " > ... > " + " > ".join(inside[-3:])


def describe_slices(dog, sampler, action, n=6):
    mine = [t for t in dog.ticks if t[0] == action]
    slices = [(t1 - t0) * 1000 for _, t0, t1, _ in mine if (t1 - t0) * 1000 > SLICE_MS]
    cpu = np.asarray([c for *_, c in mine] or [0.0])
    late = np.asarray(dog.late.get(action, [0.0]))
    print(
        f"\n=== {action}: {len(late)} ticks, p95 late {np.percentile(late, 95):.0f} ms, "
        f"max {late.max():.0f} ms, slices > {SLICE_MS:.0f} ms: {len(slices)}; GUI-thread CPU "
        f"per slice: p95 {np.percentile(cpu, 95):.0f} ms, max {cpu.max():.0f} ms, "
        f"slices over {SLICE_MS:.0f} ms of CPU: {int((cpu > SLICE_MS).sum())}"
    )
    for _, t0, t1, c in sorted(mine, key=lambda t: t[3], reverse=True)[:n]:
        if c <= SLICE_MS:
            break
        samples = sampler.during(t0, t1)
        print(f"  slice {(t1 - t0) * 1000:.0f} ms, CPU {c:.0f} ms ({len(samples)} samples):")
        leaves = Counter()
        for stack in samples:
            leaves[where(stack)] += 1
        for text, count in leaves.most_common(5):
            print(f"    {count:4d}  {text}")


def cine_named(name: str) -> dict:
    """bench_gui's ``short`` or ``long`` cine."""
    if name == "short":
        return bench_gui.short_cine(Path(os.environ["PROFILE_TMP"]))
    return bench_gui.long_cine()


def setup(cine):
    from napari_dustrack._widgets.main import DustrackWidget

    viewer = bench_gui.open_viewer(cine)
    dock = DustrackWidget(viewer)
    viewer.window.add_dock_widget(dock, name="DUSTrack")
    pages = {k: dock.pages[k] for k in ("Annotate", "Model", "Smooth")}
    bench_gui.wait_until(lambda: pages["Annotate"].session is not None)
    for lab in cine["labels"]:
        pages["Annotate"].add_label(lab)
    session = pages["Annotate"].session
    for f in (0, 40, 80):  # keyframes, as the benchmark's clicks leave them
        for j, lab in enumerate(cine["labels"]):
            session.set_point(f, lab, *cine["truth"][f, j])
    bench_gui.wait(500)
    return viewer, dock, pages


class TurnProfiler(SliceDog):
    """The watchdog with a fresh cProfile for each slice between two ticks: what the GUI thread
    did in each event-loop turn (or run of turns) that made a tick late."""

    def __init__(self):
        self.profiles: list[tuple[str, float, float, float, cProfile.Profile]] = []
        self._prof = None
        super().__init__()

    def _tick(self):
        prof = self._prof
        if prof is not None:
            prof.disable()
        super()._tick()
        if prof is not None:
            self.profiles.append((*self.ticks[-1], prof))
        self._prof = cProfile.Profile()
        self._prof.enable()

    def stop(self):
        self.timer.stop()
        if self._prof is not None:
            self._prof.disable()
            self._prof = None


PARTS = (  # what a sample of the GUI thread was doing, first match of its stack (innermost first)
    ("old layer removed", "_evented_list.py:__delitem__"),
    ("shader build (first draw)", "program.py:build_if_needed"),
    ("paint (GL draw)", "_qt.py:paintGL"),
    ("vispy layer + visual", "visual.py:create_vispy_layer"),
    ("vispy scene mapping", "canvas.py:add_layer_visual_mapping"),
    ("layer controls widget", "qt_layer_controls_container.py:_add"),
    ("other napari insert", "layerlist.py:insert"),
    ("layer list move", "layerlist.py:move"),
    ("install review", "_predictions.py:_install_review"),
    ("thumbnail", "_update_thumbnail"),
    ("layer-list rows (Qt)", "_layer_delegate.py:paint"),
    ("our tick", "_predictions.py:_tick"),
)


OWNERS = (  # which of the plugin's calls the sample is under
    ("points layer added", "_predictions.py:_add"),
    ("tracks layer added", "_predictions.py:_show_tracks"),
    ("layer revealed", "common.py:reveal"),
)


def part_of(stack) -> str:
    owner = next((o for o, m in OWNERS if any(e.endswith(m) for e in stack)), None)
    prefix = f"{owner}: " if owner else ""
    for part, marker in PARTS:
        if any(entry.endswith(marker) for entry in stack):
            return prefix + part
    inside = where(stack)
    if inside == "(idle in the event loop)":
        return prefix + "idle / Qt"
    return prefix + "other: " + inside[-60:]


def split_slices(dog, sampler, action, n=5):
    """The longest slices of ``action``, their time split by :data:`PARTS` (sampled)."""
    mine = [t for t in dog.ticks if t[0] == action]
    late = np.asarray(dog.late.get(action, [0.0]))
    print(
        f"\n=== {action}: {len(late)} ticks, p95 late {np.percentile(late, 95):.0f} ms, "
        f"max {late.max():.0f} ms"
    )
    for _, t0, t1, cpu in sorted(mine, key=lambda t: t[2] - t[1], reverse=True)[:n]:
        samples = [(t, s) for t, s in sampler.samples if t0 <= t <= t1]
        parts = Counter()
        for (t, stack), (t_next, _) in zip(samples, samples[1:] + [(t1, ())], strict=True):
            parts[part_of(stack)] += (t_next - t) * 1000
        collected = [(g, b - a) for g, a, b in sampler.collections if t0 <= a <= t1]
        gc_ms = ", ".join(f"generation {g}: {d * 1000:.0f} ms" for g, d in collected if d > 0.005)
        print(
            f"  slice {(t1 - t0) * 1000:.0f} ms, GUI-thread CPU {cpu:.0f} ms"
            + (f" (of which garbage collection, {gc_ms})" if gc_ms else "")
            + ":"
        )
        for part, ms in parts.most_common(8):
            print(f"    {ms:6.0f} ms  {part}")
        leaves = Counter(where(stack) for _, stack in samples)
        for text, count in leaves.most_common(3):  # the innermost calls, for the unexplained
            print(f"      {count:4d} samples  {text}")


def first_layer(name, top, freeze=False):
    """Only the first ``model`` layer, the first ``smoothed`` layer and a ``model`` layer of one
    label less (each filled, with its tracks): each long slice split by part, or with ``top`` a
    cProfile of each of the three longest slices."""
    cine = cine_named(name)
    viewer, dock, pages = setup(cine)
    annotate, model, smooth = pages["Annotate"], pages["Model"], pages["Smooth"]
    labels, truth, n = cine["labels"], cine["truth"], cine["n"]
    rng = np.random.default_rng(1)
    conf = rng.uniform(0.5, 1.0, truth.shape[:2])
    bench_gui.wait(500)
    if freeze:  # what full collections would cost with the viewer's objects left out
        gc.collect()
        gc.freeze()
    dog = TurnProfiler() if top else SliceDog()
    sampler = Sampler()
    # the third replaces the model layer (a prediction after the labels changed)
    steps = (
        ("model layer", model.output, len(labels)),
        ("smoothed layer", smooth.output, len(labels)),
        ("model layer replaced", model.output, len(labels) - 1),
    )
    for action, output, n_labels in steps:
        with dog.during(action):
            t0 = time.perf_counter()
            output.begin(labels[:n_labels], n, annotate.cine_layer)
            bench_gui.wait_until(lambda out=output: out.layer is not None)
            t_added = time.perf_counter() - t0
            xy = truth[:, :n_labels] + rng.normal(0, 1.0, truth[:, :n_labels].shape)
            output.put(np.arange(n), xy, conf[:, :n_labels])
            output.finish()
            bench_gui.wait_until(lambda out=output: not out.busy)
            bench_gui.wait(500)
        print(f"{action}: layer in after {t_added:.2f} s")
    dog.timer.stop()
    if top:
        dog.stop()
    sampler.stop()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n##### {name} cine ({n} frames, {len(labels)} labels); load average {load}")
    print_full_collections(sampler, dog)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    gc.collect()
    print(
        f"a full collection now: {(time.perf_counter() - t0) * 1000:.0f} ms "
        f"(CPU {(time.thread_time() - cpu0) * 1000:.0f} ms)"
    )
    for action, *_ in steps:
        if not top:
            split_slices(dog, sampler, action)
            continue
        mine = [p for p in dog.profiles if p[0] == action]
        late = np.asarray(dog.late.get(action, [0.0]))
        print(
            f"\n=== {action}: {len(late)} ticks, p95 late {np.percentile(late, 95):.0f} ms, "
            f"max {late.max():.0f} ms (under cProfile: inflated)"
        )
        for _, t0, t1, cpu, prof in sorted(mine, key=lambda p: p[2] - p[1], reverse=True)[:3]:
            print(f"\n--- slice {(t1 - t0) * 1000:.0f} ms, GUI-thread CPU {cpu:.0f} ms")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(top or 30)
    annotate.unbind()
    viewer.close()


def print_full_collections(sampler, dog) -> None:
    """Each full collection: how long, and in which action (the slice it started in)."""
    full = []
    for g, a, b in sampler.collections:
        if g == 2:
            action = next((t[0] for t in dog.ticks if t[1] <= a <= t[2]), "?")
            full.append(f"{(b - a) * 1000:.0f} ms ({action})")
    print(
        f"full garbage collections (generation 2): {len(full)}: {', '.join(full)}; "
        f"{len(gc.get_objects())} objects tracked, {gc.get_freeze_count()} frozen"
    )


def whole_session(name, top, actions=("predict apply", "smooth apply")):
    """bench_gui's own session, with each long slice of ``actions`` split by part."""
    cine = cine_named(name)
    dog, sampler = SliceDog(), Sampler()
    bench_gui.session(name, cine, dog, "fusion" if name == "short" else None)
    dog.timer.stop()
    sampler.stop()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n##### {name} cine, bench_gui's session; load average {load}")
    print_full_collections(sampler, dog)
    for action in actions:
        split_slices(dog, sampler, action, n=top or 4)


def run(name, top):
    cine = cine_named(name)
    viewer, dock, pages = setup(cine)
    annotate, model, smooth = pages["Annotate"], pages["Model"], pages["Smooth"]
    labels, truth, n = cine["labels"], cine["truth"], cine["n"]
    rng = np.random.default_rng(1)
    pred = truth + rng.normal(0, 1.0, truth.shape)
    conf = rng.uniform(0.5, 1.0, truth.shape[:2])
    dog, sampler = SliceDog(), Sampler()
    profiles = {}

    def profiled(action, body):
        prof = cProfile.Profile() if top else None
        with dog.during(action):
            if prof is not None:
                prof.enable()
            t0 = time.perf_counter()
            body()
            wall = time.perf_counter() - t0
            if prof is not None:
                prof.disable()
        profiles[action] = (prof, wall)

    def predict():
        bench_gui.feed_predictions(
            model, annotate.cine_layer, labels, pred, conf, 50 if name == "short" else 5
        )
        model.output.finish()
        bench_gui.wait_until(lambda: not model.output.busy)

    def accept():
        model.min_conf.setValue(0.9)
        model.accept_confident()
        bench_gui.wait(100)
        bench_gui.wait_until(lambda: not annotate.accepting)
        bench_gui.wait(600)

    def smoothed():
        if name == "short":
            smooth.source.setCurrentText("model")
            smooth.mode.setCurrentText("fusion")
            smooth.frames.setValue(9)
            smooth.run()
            bench_gui.wait_until(lambda: not smooth.taskbar.busy)
        else:
            out = truth + rng.normal(0, 0.3, truth.shape)
            smooth.output.begin(labels, n, annotate.cine_layer)
            smooth.output.put(np.arange(n), out, conf)
            smooth.output.finish()
        bench_gui.wait_until(lambda: not smooth.output.busy)
        bench_gui.wait(300)

    profiled("predict apply", predict)
    profiled("accept", accept)
    profiled("smooth apply", smoothed)

    def undo():
        annotate.session.undo()
        bench_gui.wait(600)

    profiled("undo accept", undo)

    def accept_all():  # every predicted point: 80,000 on the long cine
        model._accept(0, n - 1, 0.0)
        bench_gui.wait(100)
        bench_gui.wait_until(lambda: not annotate.accepting)
        bench_gui.wait(600)

    profiled("accept all", accept_all)
    profiled("undo accept all", undo)
    sampler.stop()
    dog.timer.stop()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n##### {name} cine ({n} frames, {len(labels)} labels); load average {load}")
    for action, (prof, wall) in profiles.items():
        describe_slices(dog, sampler, action)
        print(f"  wall {wall:.2f} s")
        if prof is not None:
            print(f"  GUI-thread profile, top {top} by cumulative time:")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(top)
    annotate.unbind()
    viewer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cine", choices=("short", "long"), default="long")
    parser.add_argument(
        "--top",
        type=int,
        default=0,
        help="also profile with cProfile and print this many functions (cProfile's overhead "
        "inflates the CPU figures: leave it 0 to measure them)",
    )
    parser.add_argument(
        "--first-layer",
        action="store_true",
        help="only add the first model and smoothed layers, then a model layer of one label "
        "less; each long slice split by part (with --top: a cProfile of the three longest)",
    )
    parser.add_argument(
        "--session",
        action="store_true",
        help="run bench_gui.py's whole session and split the longest slices of predict apply "
        "and smooth apply by part (--top: how many slices)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="with --first-layer: gc.freeze() once the viewer and dock are up (an experiment: "
        "what full garbage collections cost without the objects made so far)",
    )
    args = parser.parse_args(argv)
    if not os.environ.get("DISPLAY") and "BENCH_GUI_XVFB" not in os.environ:
        import subprocess

        env = dict(os.environ, BENCH_GUI_XVFB="1")
        cmd = ["xvfb-run", "-a", "-s", "-screen 0 1280x800x24", sys.executable, __file__]
        return subprocess.call(cmd + sys.argv[1:], env=env)
    import tempfile

    from napari._qt.qt_event_loop import get_qapp

    get_qapp()
    os.environ["PROFILE_TMP"] = tempfile.mkdtemp(prefix="profile_apply-")
    if args.session:
        whole_session(args.cine, args.top)
    elif args.first_layer:
        first_layer(args.cine, args.top, freeze=args.gc_freeze)
    else:
        run(args.cine, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
