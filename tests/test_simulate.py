"""The simulator: determinism, speckle statistics, truth that the image really follows, the
muscle twitch and pennation, the cardiac wall motion, the CLI and the sample data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_dustrack.cli import main
from napari_dustrack.errors import DustrackError
from napari_dustrack.io.table import read_points_csv, to_array
from napari_dustrack.simulate import SCENARIOS, ground_truth, iter_frames, simulate
from napari_dustrack.tracking.lk import LKParams, lk_track


@pytest.fixture(scope="module")
def muscle_small():
    return simulate("muscle", n_frames=30, seed=1, shape=(128, 128))


@pytest.fixture(scope="module")
def cardiac_short():
    return simulate("cardiac", n_frames=30, seed=2)


def test_same_seed_same_cine_other_seed_other_cine():
    a = simulate("muscle", n_frames=4, seed=7, shape=(64, 96))
    b = simulate("muscle", n_frames=4, seed=7, shape=(64, 96))
    c = simulate("muscle", n_frames=4, seed=8, shape=(64, 96))
    assert a.frames.shape == (4, 64, 96) and a.frames.dtype == np.uint8
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.truth.equals(b.truth)
    assert np.mean(a.frames != c.frames) > 0.5


def test_streamed_frames_and_truth_equal_the_simulation():
    sim = simulate("cardiac", n_frames=3, seed=5, shape=(48, 64))
    frames = np.stack(list(iter_frames("cardiac", n_frames=3, seed=5, shape=(48, 64))))
    np.testing.assert_array_equal(frames, sim.frames)
    assert ground_truth("cardiac", n_frames=3, seed=5, shape=(48, 64)).equals(sim.truth)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_result_carries_units_and_a_complete_truth_table(scenario):
    sim = simulate(scenario, n_frames=3, shape=(64, 64))
    assert sim.scenario == scenario and sim.fps > 0
    assert len(sim.pixel_spacing) == 2 and all(0 < v < 5 for v in sim.pixel_spacing)
    assert set(sim.truth["source"]) == {"manual"}
    xy, labels = to_array(sim.truth, n_frames=3)
    assert len(labels) >= 4 and np.isfinite(xy).all()
    h, w = sim.frames.shape[1:]
    assert (xy[..., 0] > 0).all() and (xy[..., 0] < w - 1).all()
    assert (xy[..., 1] > 0).all() and (xy[..., 1] < h - 1).all()


def test_unknown_scenario_and_bad_sizes_are_refused():
    with pytest.raises(DustrackError, match="cardiac, muscle"):
        simulate("liver")
    with pytest.raises(DustrackError, match="frames"):
        simulate("cardiac", n_frames=0)
    with pytest.raises(DustrackError, match="shape"):
        simulate("cardiac", n_frames=2, shape=(16, 300))


def _envelope_db(sim, frame):
    """The log-compressed grey levels back in dB (0 dB = the display's top)."""
    dr = sim.info["dynamic_range_db"]
    return frame.astype(float) * dr / 255.0 - dr


def test_myocardium_is_fully_developed_speckle(cardiac_short):
    sim = cardiac_short
    cx, cy = sim.info["centre_xy"]
    yy, xx = np.mgrid[0 : sim.frames.shape[1], 0 : sim.frames.shape[2]]
    r = np.hypot(xx - cx, yy - cy)
    wall = (r > sim.info["r_endo_px"] + 3) & (r < sim.info["r_epi_px"] - 3)
    cavity = r < sim.info["r_endo_px"] - 4
    db = _envelope_db(sim, sim.frames[0])
    env = 10 ** (db[wall] / 20)
    # Rayleigh envelope: mean/sd = 1.91, sd of the log envelope 5.57 dB
    assert 1.5 < env.mean() / env.std() < 2.4
    assert 4.5 < db[wall].std() < 7.5
    # and the image has anatomy, not just texture: blood is far darker than muscle
    assert np.median(db[wall]) - np.median(db[cavity]) > 15


def test_speckle_decorrelates_slowly_from_frame_to_frame(cardiac_short):
    sim = cardiac_short
    xy, _ = to_array(sim.truth, n_frames=len(sim.frames))
    # the stillest pair of frames (diastasis) isolates scatterer renewal and noise from motion
    motion = np.linalg.norm(np.diff(xy, axis=0), axis=2).max(axis=1)
    i = int(np.argmin(motion))
    assert motion[i] < 0.3
    a, b = sim.frames[i].astype(float), sim.frames[i + 1].astype(float)
    rho = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert 0.8 < rho < 0.995
    # the share of renewed scatterers adds up: farther frames correlate less
    far = sim.frames[max(i - 10, 0)].astype(float)
    assert np.corrcoef(a.ravel(), far.ravel())[0, 1] < rho
    assert sim.frames.std() > 30  # non-trivial contrast


@pytest.mark.parametrize("name", ["muscle_small", "cardiac_short"])
def test_truth_points_follow_the_image_motion(name, request):
    sim = request.getfixturevalue(name)
    xy, _ = to_array(sim.truth, n_frames=len(sim.frames))
    params = LKParams()  # DUSTrack's 45 x 45 window
    truth_d, lk_d = [], []
    for i in range(0, 26):  # LK over 3-frame gaps, where the points move ~1-5 px
        new, ok, _ = lk_track(sim.frames[i], sim.frames[i + 3], xy[i], params)
        assert ok.all()
        truth_d.append(xy[i + 3] - xy[i])
        lk_d.append(new - xy[i])
    truth_d, lk_d = np.concatenate(truth_d), np.concatenate(lk_d)
    err = np.linalg.norm(lk_d - truth_d, axis=1)
    moved = np.linalg.norm(truth_d, axis=1)
    # the points really move (a stationary guess is wrong) and LK lands on the truth
    assert np.median(moved) > 1.0
    assert np.median(err) < 0.6 and np.median(err) < 0.35 * np.median(moved)

    # image motion = truth motion (no scale, sign or axis mix-up); LK underestimates a little
    # where speckle decorrelates under rotation and shear, as in real ultrasound
    def slope(t, m):
        return (t.ravel() @ m.ravel()) / (t.ravel() @ t.ravel())

    assert 0.85 < slope(truth_d, lk_d) < 1.15
    assert abs(slope(truth_d[:, ::-1], lk_d)) < 0.5  # x and y not swapped
    # chained frame by frame over 12 frames, LK stays within about a pixel of the truth
    p = xy[0]
    for i in range(12):
        p, ok, _ = lk_track(sim.frames[i], sim.frames[i + 1], p, params)
    assert np.median(np.linalg.norm(p - xy[12], axis=1)) < 1.5
    assert np.median(np.linalg.norm(xy[12] - xy[0], axis=1)) > 2.0


def test_muscle_twitch_is_about_10_px_within_60_ms():
    sim = simulate("muscle", n_frames=40)  # full 256 px: the twitch size is given for it
    s, e = sim.info["twitch_frames"]
    assert 0 < s < e < 40
    assert (e - s) / sim.fps <= 0.0605
    xy, labels = to_array(sim.truth, n_frames=40)
    jump = np.linalg.norm(xy[e] - xy[s], axis=1)
    assert 8.0 < jump.max() < 13.0
    before = np.linalg.norm(xy[s] - xy[s - 3], axis=1)
    assert before.max() < 0.1 * jump.max()  # sudden: the belly was still just before
    # the image moves with it: LK across the twitch frames
    i = labels.index("fascicle_proximal")
    p = xy[s, i : i + 1]
    for k in range(s, e):
        p, ok, _ = lk_track(sim.frames[k], sim.frames[k + 1], p)
    assert np.linalg.norm(p[0] - xy[e, i]) < 1.0


def test_muscle_fascicle_rotates_by_the_reported_pennation(muscle_small):
    sim = muscle_small
    xy, labels = to_array(sim.truth, n_frames=len(sim.frames))
    d = xy[:, labels.index("fascicle_distal")] - xy[:, labels.index("fascicle_proximal")]
    apo = xy[:, labels.index("sup_apo_2")] - xy[:, labels.index("sup_apo_1")]
    angle = np.degrees(np.arctan2(d[:, 1], d[:, 0]) - np.arctan2(apo[:, 1], apo[:, 0]))
    np.testing.assert_allclose(angle, sim.info["pennation_deg"], atol=1e-3)
    assert 2.0 < angle.max() - angle[0] < 6.0


def test_cardiac_wall_thickens_and_comes_back_each_beat():
    sim = simulate("cardiac", n_frames=45, shape=(96, 96))
    xy, labels = to_array(sim.truth, n_frames=45)
    epi, endo = xy[:, labels.index("anterior_epi")], xy[:, labels.index("anterior_endo")]
    thick = np.linalg.norm(epi - endo, axis=1)
    assert thick.max() > 1.15 * thick[0]
    period = 60.0 / sim.info["heart_rate_bpm"] * sim.fps  # 41.7 frames
    k = int(math.ceil(period))
    assert abs(thick[k] - thick[0]) < 0.1 * (thick.max() - thick[0])


def test_cli_writes_video_and_truth(tmp_path, capsys):
    import av

    assert (
        main(
            [
                "simulate",
                "--scenario",
                "muscle",
                "--out",
                str(tmp_path),
                "--frames",
                "6",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.split()
    video, truth = tmp_path / "muscle.mp4", tmp_path / "muscle_truth.csv"
    assert printed == [str(video), str(truth)]
    table = read_points_csv(truth)
    assert sorted(set(table["frame"])) == list(range(6))
    assert len(table) == 6 * table["label"].nunique()
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        assert stream.average_rate == 100
        assert sum(1 for _ in c.decode(video=0)) == 6


def test_cli_refuses_an_unknown_scenario_naming_the_known_ones(tmp_path, capsys):
    assert main(["simulate", "--scenario", "kidney", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kidney" in err and "cardiac" in err and "muscle" in err
    assert not any(tmp_path.iterdir())


def test_sample_data_gives_a_cached_cine_layer_and_a_truth_layer(tmp_path, monkeypatch):
    import napari.layers

    from napari_dustrack._napari import sample_data

    monkeypatch.setenv(sample_data.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("NAPARI_DUSTRACK_FRAME_CACHE", "0")
    layers = sample_data.muscle()
    (img, img_kw, img_type), (pts, pts_kw, pts_type) = layers
    assert (img_type, pts_type) == ("image", "points")
    meta = img_kw["metadata"]["dustrack"]
    video = tmp_path / "muscle" / "muscle.mp4"
    assert meta["path"] == str(video) and video.is_file()
    assert meta["fps"] == 100 and meta["n_frames"] == img.shape[0] == 300
    assert img.dtype == np.uint8 and img.ndim == 3
    assert img_kw["scale"] == (1 / meta["fps"], *meta["pixel_spacing"])  # seconds, mm
    frame = np.asarray(img[150])
    assert frame.shape == img.shape[1:] and frame.std() > 20
    assert pts.shape[1] == 3
    assert set(pts_kw["features"]["label"]) >= {"fascicle_proximal", "sup_apo_1"}
    assert pts[:, 0].max() == 299
    napari.layers.Image(img, **img_kw)
    napari.layers.Points(pts, **pts_kw)
    # a second call reuses the cache rather than simulating again
    stamp = video.stat().st_mtime_ns
    again = sample_data.muscle()
    assert video.stat().st_mtime_ns == stamp and again[0][0].shape == img.shape


@pytest.fixture(scope="module")
def probe_slides():
    return {
        name: simulate(name, n_frames=40, seed=4)
        for name in ("probe_slide", "probe_slide_decorrelated")
    }


def test_probe_slide_moves_tissue_in_bursts_under_artefacts_fixed_in_the_image(probe_slides):
    sim = probe_slides["probe_slide"]
    assert sim.fps == 20
    xy, _ = to_array(sim.truth, n_frames=40)
    speed = np.abs(np.diff(xy[..., 0], axis=0)).max(axis=1)
    slides = sim.info["slide_frames"]
    assert len(slides) == 3
    inside = np.zeros(39, bool)
    for s, e in slides:
        inside[s:e] = True
        assert 6.0 <= speed[s:e].max() <= 10.5  # 6-10 px per frame mid-slide
    assert speed[~inside].max() < 0.5  # between slides the tissue only breathes
    np.testing.assert_allclose(np.diff(sim.info["probe_x"]), -np.diff(xy[:, 0, 0]), atol=1e-9)
    # the shadow column stays put in the image while the tissue slides under it: darker than
    # its surroundings by > 10 dB in every frame
    x0, x1 = (int(round(v)) for v in sim.info["shadow_columns_x"])
    db = _envelope_db(sim, sim.frames[:, 40:, :])
    column = db[:, :, x0 + 3 : x1 - 2].mean(axis=(1, 2))
    beside = np.concatenate([db[:, :, x0 - 30 : x0 - 5], db[:, :, x1 + 5 : x1 + 30]], axis=2)
    assert (beside.mean(axis=(1, 2)) - column > 10).all()
    # a slide carries every tissue point across a good part of the image
    truth_d = xy[slides[0][1]] - xy[slides[0][0]]
    assert np.abs(truth_d[:, 0]).min() > 30


def test_decorrelated_variant_loses_speckle_while_the_probe_moves(probe_slides):
    def mid_slide_correlation(sim):
        xy, _ = to_array(sim.truth, n_frames=40)
        s, e = sim.info["slide_frames"][0]
        rhos = []
        for i in range(s + 3, e - 3):
            dx = int(round(xy[i + 1, 0, 0] - xy[i, 0, 0]))
            a = sim.frames[i, 150:230, 40:200].astype(float)
            b = sim.frames[i + 1, 150:230, 40 + dx : 200 + dx].astype(float)
            rhos.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        return float(np.mean(rhos))

    plain = mid_slide_correlation(probe_slides["probe_slide"])
    decorrelated = mid_slide_correlation(probe_slides["probe_slide_decorrelated"])
    assert plain > 0.6 and decorrelated < plain - 0.1
    assert probe_slides["probe_slide_decorrelated"].info["decorrelation_per_px"] > 0
