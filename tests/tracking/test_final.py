"""Final tracks: the model's systematic error measured and removed, annotations kept, flow and
model weighed by confidence, never worse than the best input; the `finalize` command."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dustrack.cli import main
from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import from_array, read_points_csv, to_array, write_points_csv
from napari_dustrack.simulate import noisy_estimates, simulate, write_simulation
from napari_dustrack.tracking.final import closed_flow, final_tracks, model_bias
from napari_dustrack.tracking.flow import fill_between


@pytest.fixture(scope="module")
def slide():
    sim = simulate("probe_slide", n_frames=41, seed=3)
    truth, labels = to_array(sim.truth, sim.labels, 41)
    keys = np.full_like(truth, np.nan)
    keys[::20] = truth[::20]
    return sim, truth, keys, labels


def _overshooting_model(truth, seed=0):
    """A model that overshoots the extremes of motion by 15 % and sits 0.6 px to the right."""
    centre = np.nanmean(truth, axis=0, keepdims=True)
    return noisy_estimates(centre + 1.15 * (truth - centre), seed, 0.4, 0.0) + [0.6, 0.0]


def _rmse(xy, truth):
    return float(np.sqrt(np.nanmean(np.sum((xy - truth) ** 2, axis=2))))


def test_model_bias_is_measured_per_label_and_removed(slide):
    _, truth, _, labels = slide
    model = _overshooting_model(truth)
    ref = np.full_like(truth, np.nan)
    ref[::4] = truth[::4]  # annotations on a few frames
    bias = model_bias(model, ref)
    assert np.allclose(bias.mean[:, 0], 0.6, atol=0.3)
    lo, hi = bias.extremes[:, 0], bias.extremes[:, 1]
    moving = np.ptp(truth[..., 0], axis=0) > 20
    # overshoot: the error has opposite signs at the two extremes of motion
    assert np.all(np.sign((hi - lo)[moving, 0]) == np.sign(bias.slope[moving, 0]))
    corrected = bias.correct(model)
    assert _rmse(corrected, truth) < 0.5 * _rmse(model, truth)
    text = bias.lines(labels)
    assert len(text) == len(labels) and "mean signed error" in text[0]


def test_final_tracks_keep_annotations_and_beat_their_inputs(slide):
    sim, truth, keys, labels = slide
    flow, flow_c = fill_between(sim.frames, keys)
    model = _overshooting_model(truth, seed=2)
    final = final_tracks(
        sim.frames,
        window=10,
        annotations=keys,
        flow=flow,
        flow_confidence=flow_c,
        model=model,
        model_confidence=np.full(truth.shape[:2], 0.5),
        labels=labels,
    )
    np.testing.assert_array_equal(final.xy[::20], keys[::20])
    best = min(_rmse(flow, truth), _rmse(model, truth))
    assert _rmse(final.xy, truth) <= best
    assert final.bias is not None and final.flags.points >= 0


def test_closed_flow_takes_back_the_drift_where_the_fill_is_lk_rstc():
    sim = simulate("cardiac", n_frames=61, seed=5)
    truth, _ = to_array(sim.truth, sim.labels, 61)
    keys = np.full_like(truth, np.nan)
    keys[::20] = truth[::20]
    flow, _ = fill_between(sim.frames, keys, method="dustrack")
    closed = closed_flow(sim.frames, keys, flow)
    np.testing.assert_array_equal(closed[::20], keys[::20])
    assert _rmse(closed, truth) < 0.95 * _rmse(flow, truth)
    # a segment that is not the LK-RSTC blend (re-tracked, edited) is left as it is
    other = flow.copy()
    other[21:40, 0] += 0.5
    kept = closed_flow(sim.frames, keys, other)
    np.testing.assert_array_equal(kept[21:40, 0], other[21:40, 0])
    np.testing.assert_array_equal(kept[1:20], closed[1:20])


def test_final_tracks_from_the_fill_alone_are_not_worse_than_the_fill():
    """Issue 12: final tracks (no model) never worse than their fill. On this short probe clip
    the closed LK tracks of a 31 px window, averaged in alike, made them 1.01x the fill; each
    window is now weighed by its own misses at the keyframes."""
    sim = simulate("probe_slide", n_frames=61, seed=1)
    truth, _ = to_array(sim.truth, sim.labels, 61)
    keys = np.full_like(truth, np.nan)
    keys[::20] = truth[::20]
    flow, conf = fill_between(sim.frames, keys)
    final = final_tracks(sim.frames, window=10, annotations=keys, flow=flow, flow_confidence=conf)
    inner = np.ones(61, bool)
    inner[::20] = False
    assert _rmse(final.xy[inner], truth[inner]) <= 0.995 * _rmse(flow[inner], truth[inner])


def test_final_tracks_need_an_input_of_one_shape(slide):
    sim, truth, keys, _ = slide
    with pytest.raises(DustrackError, match="annotations, flow or model"):
        final_tracks(sim.frames, window=10)
    with pytest.raises(DustrackError, match="same shape"):
        final_tracks(sim.frames, window=10, annotations=keys, model=truth[:, :2])


def test_finalize_command(tmp_path, capsys, slide):
    sim, truth, keys, labels = slide
    paths = write_simulation(sim, tmp_path)
    write_points_csv(from_array(keys, labels, source="manual"), tmp_path / "keys.csv")
    model = _overshooting_model(truth, seed=4)
    write_points_csv(
        from_array(model, labels, source="model", confidence=np.full(truth.shape[:2], 0.6)),
        tmp_path / "pred.csv",
    )
    assert (
        main(
            [
                "finalize",
                str(paths["video"]),
                "--annotations",
                str(tmp_path / "keys.csv"),
                "--model",
                str(tmp_path / "pred.csv"),
                "--out",
                str(tmp_path / "final.csv"),
                "--window",
                "0.5",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "model bias removed" in printed and "final tracks:" in printed
    out = read_points_csv(tmp_path / "final.csv")
    assert set(out["source"]) == {"manual", "smoothed"}
    xy, _ = to_array(out, labels, 41)
    assert _rmse(xy, truth) < _rmse(model, truth)
    assert (
        main(
            [
                "finalize",
                str(paths["video"]),
                "--annotations",
                str(tmp_path / "pred.csv"),
                "--out",
                str(tmp_path / "x.csv"),
            ]
        )
        == 2
    )
    assert "no manual or reviewed" in capsys.readouterr().err


def test_closed_flow_is_weighed_against_the_fill_by_its_tracks_disagreement():
    """Closing LK's drift pays where the forward and backward tracks part (the fill's blend is
    uncertain there); where they agree, the fill keeps much of its weight."""
    from napari_dustrack.tracking.final import _closed_share
    from napari_dustrack.tracking.lk import rstc_weight

    n = 21
    w = rstc_weight(np.arange(n), 0, n - 1)[:, None]
    path = np.c_[np.linspace(0, 20, n), np.zeros(n)][:, None, :]
    agree = _closed_share(path, path.copy(), path[0], path[-1], w)
    drift = np.c_[np.zeros(n), np.linspace(0, 6, n)][:, None, :]  # F drifts 6 px, B 6 px back
    part = _closed_share(path + drift, path - drift[::-1], path[0], path[-1], w)
    assert 0.5 < agree[n // 2, 0] < 0.8
    assert part[n // 2, 0] > 0.95
