"""Where a frame change costs its time while scrubbing the long cine with every plugin layer:
bench_gui.py's *scrub (Measure hidden)*, profiled.

Usage (re-runs itself under ``xvfb-run`` when there is no display)::

    python benchmarks/profile_scrub.py                 # long cine, 10,000 frames x 8 labels
    python benchmarks/profile_scrub.py --top 40 --steps 60

The scene is the one bench_gui.py's long session leaves before its scrub: the cine, the
``annotations`` layer holding the accepted confident predictions, ``model`` and ``smoothed``
points for every frame and label, and the three Tracks layers. Reported, with the load average:
the event loop's lateness during the scrub (bench_gui's watchdog), the GUI thread's CPU time per
frame change, the time of each frame change split into napari's slicing (``set_current_step``,
synchronous) and the paint that follows (a synchronous repaint of the canvas), each layer's
share of the slicing, and a cProfile of the slicing and of the paint.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_gui  # noqa: E402 - the benchmark's cines, scene, watchdog and event-loop helpers


def build_scene(cine):
    """The long session's layers, without its clicks and steps (see bench_gui.scene)."""
    viewer = bench_gui.open_viewer(cine)
    bench_gui.wait(300)
    dock = bench_gui.scene(viewer, cine)
    return viewer, dock


class LayerTimer:
    """GUI-thread CPU time each layer spends in napari's slicing of a frame change
    (``_slice_dims``: its slice, its vispy node's update, thumbnail, highlight)."""

    def __init__(self, viewer):
        self.times: dict[str, list[float]] = defaultdict(list)
        for layer in viewer.layers:
            self._wrap(layer)

    def _wrap(self, layer):
        original = layer._slice_dims
        times = self.times[layer.name]

        def timed(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                times.append(time.thread_time() - t0)

        layer._slice_dims = timed


def split(viewer, frames, top: int, title: str) -> None:
    """Time each frame change's slicing (``set_current_step``) and the synchronous repaint of
    the canvas that follows, apart: wall and GUI-thread CPU time; a cProfile of each when
    ``top``."""
    slicing, painting, slicing_cpu, painting_cpu, painting_all = [], [], [], [], []
    prof_slice, prof_paint = cProfile.Profile(), cProfile.Profile()
    native = viewer.window._qt_viewer.canvas.native
    for f in frames:
        t0, c0 = time.perf_counter(), time.thread_time()
        if top:
            prof_slice.enable()
        viewer.dims.set_current_step(0, f)
        if top:
            prof_slice.disable()
        t1, c1, p1 = time.perf_counter(), time.thread_time(), time.process_time()
        if top:
            prof_paint.enable()
        native.repaint()
        if top:
            prof_paint.disable()
        t2, c2, p2 = time.perf_counter(), time.thread_time(), time.process_time()
        slicing.append(t1 - t0)
        painting.append(t2 - t1)
        slicing_cpu.append(c1 - c0)
        painting_cpu.append(c2 - c1)
        painting_all.append(p2 - p1)
        bench_gui.wait(30)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{title}: {len(frames)} frame changes, load average {load}, profiler {bool(top)}")
    print(f"  slicing wall {ms(slicing)}; GUI-thread CPU {ms(slicing_cpu)}")
    print(f"  paint   wall {ms(painting)}; GUI-thread CPU {ms(painting_cpu)}")
    print(f"  paint   CPU of every thread (Mesa's included) {ms(painting_all)}")
    if top:
        print("\n=== cProfile: slicing\n" + stats_text(prof_slice, top))
        print("\n=== cProfile: paint\n" + stats_text(prof_paint, top))


def ms(values) -> str:
    v = np.asarray(values) * 1000
    return f"mean {v.mean():5.1f} ms, median {np.median(v):5.1f}, p95 {np.percentile(v, 95):5.1f}"


def stats_text(prof, top):
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(top)
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top // 2)
    return out.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="frame changes")
    parser.add_argument("--top", type=int, default=45, help="cProfile rows (0: no profile)")
    parser.add_argument("--only", help="show only the image and this layer")
    parser.add_argument(
        "--per-layer", action="store_true", help="also time the image with one layer at a time"
    )
    args = parser.parse_args(argv)
    status = bench_gui.rerun_under_xvfb(__file__)
    if status is not None:
        return status
    from napari._qt.qt_event_loop import get_qapp

    get_qapp()
    cine = bench_gui.long_cine()
    viewer, dock = build_scene(cine)
    n = cine["n"]
    frames = list(range(0, n, max(1, n // args.steps)))[: args.steps]

    # 1. the benchmark's scrub, as the user sees it: lateness and GUI-thread CPU
    dog = bench_gui.Watchdog()
    cpu0, all0 = time.thread_time(), time.process_time()
    bench_gui.scrub(viewer, n, dog, "scrub (Measure hidden)")
    cpu = (time.thread_time() - cpu0) * 1000 / len(frames)
    cpu_all = (time.process_time() - all0) * 1000 / len(frames)
    dog.timer.stop()
    late = np.asarray(dog.late["scrub (Measure hidden)"])
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average {load}; layers: {[layer.name for layer in viewer.layers]}")
    print(
        f"scrub: p95 late {np.percentile(late, 95):.0f} ms, max {late.max():.0f} ms; "
        f"CPU per frame change: GUI thread {cpu:.1f} ms, every thread (Mesa's included) "
        f"{cpu_all:.1f} ms (wait(30) between changes)"
    )

    if args.only:
        for layer in list(viewer.layers)[1:]:
            layer.visible = layer.name == args.only
        bench_gui.wait(300)
    # 2. each frame change split into its slicing and its paint, timed and profiled apart
    layer_timer = LayerTimer(viewer)
    split(viewer, frames, args.top, "every layer")
    print("  GUI-thread CPU in each layer's _slice_dims:")
    for name, values in layer_timer.times.items():
        print(f"    {name!r:28s} {ms(values)}")
    if args.per_layer:  # 3. the image with one plugin layer at a time
        visible = {layer: layer.visible for layer in viewer.layers}
        image = viewer.layers[0]
        for only in [image, *list(viewer.layers)[1:]]:
            for layer in viewer.layers:
                layer.visible = layer is image or layer is only
            bench_gui.wait(300)
            split(viewer, frames[:60], 0, f"image + {only.name!r}")
        for layer, was in visible.items():
            layer.visible = was
    dock.pages["Annotate"].unbind()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
