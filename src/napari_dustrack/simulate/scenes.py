"""The scenarios: a cardiac short-axis view, a pennate muscle, and that muscle under a probe
sliding sideways (with and without out-of-plane decorrelation)."""

from __future__ import annotations

import math

import numpy as np

from .base import Population, Scene, random_field, ridge_positions, ridges, smoothstep


class Cardiac(Scene):
    """Short-axis view of the left ventricle through a phased array (sector image).

    The myocardial ring contracts radially with an incompressible wall (it thickens as the
    cavity shrinks), twists (endocardium more than epicardium) and translates a little with
    each beat, plus slow breathing motion. Blood in the cavity is dark and decorrelates fast.
    """

    name = "cardiac"
    fps = 50.0
    default_frames = 250
    spacing_mm = 0.25
    f_mhz = 3.5
    psf_axial_mm = 0.4
    psf_lateral_mm = (0.75, 1.2)
    focus = 0.55
    atten_db = 22.0
    tgc_db = 18.0
    heart_rate_bpm = 72.0
    shortening = 0.30  # endocardial radial shortening at end-systole
    twist_deg = 7.0

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        H, W = self.shape
        g = self.g
        self.cx, self.cy = (W - 1) / 2.0, (H - 1) / 2.0 + 6 * g
        self.r_endo, self.r_epi = 48 * g, 78 * g
        self.apex_y, self.half_angle = -30 * g, math.radians(42)
        pad = 8 * g + 3 * self._psf_px_max()  # inward motion + PSF reach
        self.bounds = (-pad, W - 1 + pad, -pad, H - 1 + pad)
        myo = random_field(rng, self.bounds, 14 * g, 0.7, 1.3)
        around = random_field(rng, self.bounds, 22 * g, 0.25, 1.4)
        pap = [(self.r_endo - 10 * g, math.radians(a)) for a in (40.0, 140.0)]  # papillary muscles
        self._papillary = [(self.cx + r * math.cos(a), self.cy + r * math.sin(a)) for r, a in pap]
        self._pap_r = 8 * g
        self.populations = self._populations(myo, around)
        self.points = self._named_points()

    def _in_papillary(self, X, Y):
        near = [np.hypot(X - px, Y - py) < self._pap_r for px, py in self._papillary]
        return np.any(near, axis=0)

    def _populations(self, myo, around) -> list[Population]:
        """Myocardium (and papillary muscles), pericardium and surroundings; blood."""
        g, in_pap = self.g, self._in_papillary

        def tissue_density(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            return ((R >= self.r_endo) | in_pap(X, Y)).astype(float)

        def tissue_echo(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            peri = (R >= self.r_epi) & (R < self.r_epi + 5 * g)
            return np.select(
                [R < self.r_endo, R < self.r_epi, peri],
                [0.8 * myo(X, Y), myo(X, Y), 2.6],
                0.55 * around(X, Y),
            )

        def blood_density(X, Y):
            R = np.hypot(X - self.cx, Y - self.cy)
            return ((R < self.r_endo) & ~in_pap(X, Y)).astype(float)

        return [
            Population(tissue_density, tissue_echo, per_cell=12.0, renew=0.03),
            Population(
                blood_density,
                lambda X, Y: np.full(np.shape(X), 0.015),
                per_cell=4.0,
                renew=0.35,
                kind="blood",
            ),
        ]

    def _named_points(self) -> dict[str, tuple[float, float]]:
        g = self.g
        mid = 0.5 * (self.r_endo + self.r_epi)
        polar = {  # angle measured from +x towards +y (image down): anterior is up
            "anterior_endo": (self.r_endo + 3 * g, -90.0),
            "anterior_epi": (self.r_epi - 3 * g, -90.0),
            "inferior_endo": (self.r_endo + 3 * g, 90.0),
            "inferior_epi": (self.r_epi - 3 * g, 90.0),
            "septal": (mid, 180.0),
            "lateral": (mid, 0.0),
        }
        return {
            k: (self.cx + r * math.cos(math.radians(a)), self.cy + r * math.sin(math.radians(a)))
            for k, (r, a) in polar.items()
        }

    def _psf_px_max(self):
        return max(self.psf_px[1])

    def activation(self, t):
        """Contraction 0..1 over the cycle: systole, fast filling, diastasis, atrial kick."""
        phase = np.mod(np.asarray(t, float) * self.heart_rate_bpm / 60.0, 1.0)
        return np.select(
            [phase < 0.35, phase < 0.6, phase < 0.85],
            [
                0.5 * (1 - np.cos(np.pi * phase / 0.35)),
                0.5 * (1 + np.cos(np.pi * (phase - 0.35) / 0.25)),
                0.0,
            ],
            -0.06 * np.sin(np.pi * (phase - 0.85) / 0.15) ** 2,  # atrial kick: slight extra filling
        )

    def material(self, X, Y):
        R = np.hypot(X - self.cx, Y - self.cy)
        theta = np.arctan2(Y - self.cy, X - self.cx)
        inside = R < self.r_endo
        # the heart (wall plus the pericardium on it) rotates and translates; around it the
        # motion fades over ~12 px (at 256 px): the heart slides within its surroundings
        wall = np.clip((R - self.r_endo) / (self.r_epi - self.r_endo), 0.0, 1.0)
        fade = np.exp(-0.5 * (np.maximum(R - self.r_epi - 5 * self.g, 0.0) / (12 * self.g)) ** 2)
        return {
            "R2": (R * R).astype(np.float32),
            "theta": theta.astype(np.float32),
            "inside": inside,
            "twist": ((1.0 - 0.35 * wall) * fade).astype(np.float32),  # endo twists most
            "carry": fade.astype(np.float32),
        }

    def deform(self, m, t):
        s = float(self.activation(t))
        r_endo_t = self.r_endo * (1.0 - self.shortening * s)
        delta = self.r_endo**2 - r_endo_t**2
        # cavity scales uniformly; wall and surroundings keep the area of every annulus
        r = np.where(
            m["inside"],
            np.sqrt(m["R2"]) * (r_endo_t / self.r_endo),
            np.sqrt(np.maximum(m["R2"] - delta, 0.0)),
        )
        ang = m["theta"] + math.radians(self.twist_deg) * s * m["twist"]
        tx = 3.0 * self.g * s
        ty = -2.0 * self.g * s + 2.5 * self.g * math.sin(2 * math.pi * t / 4.0)  # beat + breathing
        x = self.cx + r * np.cos(ang) + tx * m["carry"]
        y = self.cy + r * np.sin(ang) + ty * m["carry"]
        return x, y

    def mask(self):
        H, W = self.shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        ang = np.arctan2(xx - self.cx, yy - self.apex_y)
        edge = (self.half_angle - np.abs(ang)) * np.hypot(xx - self.cx, yy - self.apex_y)
        return np.clip(edge + 0.5, 0.0, 1.0).astype(np.float32)

    def extra_info(self):
        return {
            "heart_rate_bpm": self.heart_rate_bpm,
            "centre_xy": [self.cx, self.cy],
            "r_endo_px": self.r_endo,
            "r_epi_px": self.r_epi,
            "shortening": self.shortening,
            "twist_deg": self.twist_deg,
        }


class Muscle(Scene):
    """Pennate muscle through a linear array: fascicles between two aponeuroses.

    A slow contraction (ramp, hold, release over the cine) shears the belly and thickens it a
    little, so the pennation angle grows by about 3 degrees while the aponeuroses slide; a twitch
    moves the belly ~10 px (at 256 px) within 60 ms, then relaxes.
    """

    name = "muscle"
    fps = 100.0
    default_frames = 300
    spacing_mm = 0.12
    f_mhz = 10.0
    psf_axial_mm = 0.2
    psf_lateral_mm = (0.36, 0.55)
    focus = 0.45
    atten_db = 18.0
    tgc_db = 14.0
    pennation_deg = 22.0
    twitch_px = 10.0  # at REFERENCE_SIZE
    twitch_ms = 60.0

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        H, W = self.shape
        g = self.g
        self.cx = (W - 1) / 2.0
        self.ys = 0.22 * H  # superficial aponeurosis (depth of its centre)
        self.yd0 = 0.74 * H  # deep aponeurosis at the image centre, tilted
        self.tilt = math.tan(math.radians(4.0))
        self.yb = 1.25 * H  # below the deep aponeurosis motion fades out towards here
        self.apo_half = 3.0 * g
        pad = 4 * max(self.psf_px[1])
        self.bounds = (-10 * g - pad, W - 1 + 0.25 * W + pad, -pad, H - 1 + pad)
        alpha = math.radians(self.pennation_deg)
        self.n_belly = np.array([-math.sin(alpha), math.cos(alpha)])  # normal to the fascicles
        self.mid = (self.cx, 0.5 * (self.ys + self.yd0))
        self.populations = [
            Population(
                lambda X, Y: np.ones(np.shape(X)), self._echo(*self._texture(rng)), 12.0, 0.03
            )
        ]
        self.points = self._named_points(alpha)
        n = max(int(n_frames), 1)
        dur = max(round(self.twitch_ms * 1e-3 * self.fps), 1)
        start = min(int(round(0.6 * n)), max(n - dur - 1, 0))
        self.twitch_frames = (start, start + dur)

    def _texture(self, rng):
        """Draw the fascicle ridges (belly and deep muscle); return the random fields of the
        broken perimysium and of the fat, and the subcutaneous septa."""
        H, W = self.shape
        g = self.g
        d_mid = float(self.n_belly @ self.mid)
        span = 2 * (W + H)
        self.belly_ridges = ridge_positions(rng, d_mid - span, d_mid + span, (7 * g, 13 * g), d_mid)
        self.belly_heights = rng.uniform(1.5, 3.0, len(self.belly_ridges))
        self.belly_heights[np.argmin(np.abs(self.belly_ridges - d_mid))] = 2.5
        beta = math.radians(-12.0)
        self.n_deep = np.array([-math.sin(beta), math.cos(beta)])
        self.deep_ridges = ridge_positions(rng, -span, span, (9 * g, 15 * g))
        self.deep_heights = rng.uniform(0.4, 1.0, len(self.deep_ridges))
        breaks = random_field(rng, self.bounds, 10 * g, 0.3, 1.5)  # broken perimysium lines
        fat = random_field(rng, self.bounds, 16 * g, 0.6, 1.4)
        septa = [
            (rng.uniform(0.35, 0.85) * self.ys, rng.uniform(40, 120) * g, rng.uniform(0, 6.3))
            for _ in range(3)
        ]
        return breaks, fat, septa

    def _echo(self, breaks, fat, septa):
        """Echo amplitude over material space: aponeuroses, belly, deep muscle, fat and skin."""
        g = self.g

        def echo(X, Y):
            yd = self.deep_depth(X)
            belly = (Y > self.ys + self.apo_half) & (Y < yd - self.apo_half)
            apo = (np.abs(Y - self.ys) <= self.apo_half) | (np.abs(Y - yd) <= self.apo_half)
            d_b = self.n_belly[0] * X + self.n_belly[1] * Y
            d_d = self.n_deep[0] * X + self.n_deep[1] * Y
            sub = 0.22 * fat(X, Y)
            for y0, lam, ph in septa:
                yy = y0 + 3 * g * np.sin(2 * np.pi * X / lam + ph)
                sub = sub + 1.2 * np.exp(-0.5 * ((Y - yy) / (0.8 * g)) ** 2)
            skin = 2.5 * np.exp(-0.5 * ((Y - 4 * g) / (1.2 * g)) ** 2)
            brk = breaks(X, Y)
            return np.select(
                [apo, belly, Y > yd],
                [
                    4.0 * brk**0.3,
                    0.15 + brk * ridges(d_b, self.belly_ridges, self.belly_heights, 1.4 * g),
                    0.2 + 0.8 * brk * ridges(d_d, self.deep_ridges, self.deep_heights, 1.3 * g),
                ],
                sub + skin,
            )

        return echo

    def _named_points(self, alpha) -> dict[str, tuple[float, float]]:
        W = self.shape[1]
        a = np.array([math.cos(alpha), math.sin(alpha)])  # along the fascicle
        T = self.yd0 - self.ys
        return {
            "fascicle_proximal": tuple(np.array(self.mid) - 0.2 * T / a[1] * a),
            "fascicle_distal": tuple(np.array(self.mid) + 0.2 * T / a[1] * a),
            "sup_apo_1": (0.3 * (W - 1), self.ys),
            "sup_apo_2": (0.7 * (W - 1), self.ys),
            "deep_apo_1": (0.35 * (W - 1), self.deep_depth(0.35 * (W - 1))),
            "deep_apo_2": (0.75 * (W - 1), self.deep_depth(0.75 * (W - 1))),
        }

    def deep_depth(self, X):
        return self.yd0 + self.tilt * (np.asarray(X) - self.cx)

    def activation(self, t):
        """Slow contraction: ramp over 10-40 % of the cine, hold, release over 80-100 %."""
        u = np.asarray(t, float) * self.fps / max(self.n_frames - 1, 1)
        return smoothstep((u - 0.1) / 0.3) - smoothstep((u - 0.8) / 0.2)

    def twitch(self, t):
        """0 -> 1 over ``twitch_frames`` (smooth), then exponential relaxation (tau 120 ms)."""
        f = np.asarray(t, float) * self.fps
        s, e = self.twitch_frames
        rise = 0.5 * (1 - np.cos(np.pi * np.clip((f - s) / (e - s), 0.0, 1.0)))
        decay = np.exp(-np.maximum(f - e, 0.0) / self.fps / 0.12)
        return rise * decay

    def material(self, X, Y):
        T = self.yd0 - self.ys
        below = smoothstep((Y - self.yd0) / (self.yb - self.yd0))
        A = np.where(Y < self.ys, smoothstep(Y / self.ys), 1.0 - 0.7 * below)
        B = np.where(Y < self.ys, 0.0, np.where(Y < self.yd0, Y - self.ys, T * (1.0 - 0.7 * below)))
        return {
            "X": X.astype(np.float32),
            "Y": Y.astype(np.float32),
            "A": A.astype(np.float32),
            "B": B.astype(np.float32),
        }

    def deform(self, m, t):
        a, tw = float(self.activation(t)), float(self.twitch(t))
        shift = -12.0 * self.g * a + self.twitch_px * self.g * tw
        shear = -0.22 * a - 0.03 * tw
        stretch = 0.05 * a + 0.01 * tw
        return m["X"] + shift * m["A"] + shear * m["B"], m["Y"] + stretch * m["B"]

    def pennation(self, t) -> float:
        """Pennation angle (degrees) of the belly's fascicles at time ``t``."""
        a, tw = float(self.activation(t)), float(self.twitch(t))
        alpha = math.radians(self.pennation_deg)
        shear, stretch = -0.22 * a - 0.03 * tw, 0.05 * a + 0.01 * tw
        return math.degrees(
            math.atan2((1 + stretch) * math.sin(alpha), math.cos(alpha) + shear * math.sin(alpha))
        )

    def extra_info(self):
        n = self.n_frames
        return {
            "twitch_frames": tuple(self.twitch_frames),
            "twitch_px": self.twitch_px * self.g,
            "pennation_deg": [self.pennation(f / self.fps) for f in range(n)],
            "superficial_aponeurosis_y": self.ys,
            "deep_aponeurosis_y": self.yd0,
        }


class ProbeSlide(Muscle):
    """The muscle's tissue under a linear probe that slides sideways in bursts (20 fps).

    Between slides the probe rests on the skin (the tissue only breathes: a few pixels of slow
    vertical motion); during each slide the whole tissue moves 6-10 px per frame across the image.
    An air bubble in the coupling gel, under the probe at a fixed lateral position, reflects
    brightly, casts an acoustic shadow column down the whole image and rings down in a comet of
    bands inside that column; the probe-skin interface adds reverberation bands across the near
    field. These artefacts are fixed to the *probe*, i.e. still in the image, while the tissue
    slides under them: a pattern that optical flow locks onto.
    """

    name = "probe_slide"
    fps = 20.0
    default_frames = 120
    slide_starts = (0.12, 0.42, 0.72)  # fractions of the cine
    slide_px = (56.0, -56.0, 40.0)  # probe travel of each slide at REFERENCE_SIZE
    slide_frames = 10  # duration of a slide (peak speed 1.5 x mean: 8.4 px/frame at 256 px)
    shadow_x = (0.55, 0.63)  # shadow column (fractions of the width)
    shadow_floor = 0.04  # amplitude left in the shadow
    decorrelation_per_px = 0.0  # extra scatterer renewal per pixel of probe motion per frame

    def __init__(self, shape, n_frames, rng):
        super().__init__(shape, n_frames, rng)
        n = max(int(n_frames), 1)
        dur = max(min(self.slide_frames, n // 5), 1)
        self.slides = [
            (min(int(round(f * n)), max(n - dur - 1, 0)), dur, px * self.g)
            for f, px in zip(self.slide_starts, self.slide_px, strict=True)
        ]
        H, W = self.shape
        self.shadow = (self.shadow_x[0] * (W - 1), self.shadow_x[1] * (W - 1))
        self.bubble_y = 5.0 * self.g
        self.reverb_step = 13.0 * self.g  # probe-skin round trip (reverberation period)

    def probe(self, t):
        """Lateral probe position (pixels, 0 at frame 0) at time ``t`` (s)."""
        f = np.asarray(t, float) * self.fps
        return sum(px * smoothstep((f - s) / d) for s, d, px in self.slides)

    def material(self, X, Y):
        m = super().material(X, Y)
        m["depth"] = (np.asarray(Y, float) / self.shape[0]).astype(np.float32)
        return m

    def deform(self, m, t):
        breathe = 2.0 * self.g * math.sin(2 * math.pi * t / 3.0)
        return m["X"] - float(self.probe(t)), m["Y"] + breathe * m["depth"]

    def renew_factor(self, frame: int) -> float:
        speed = abs(float(self.probe(frame / self.fps) - self.probe((frame - 1) / self.fps)))
        return 1.0 + self.decorrelation_per_px * speed / 0.03

    def shadow_gain(self, x, y):
        """Amplitude factor (0..1) of tissue echoes at image position ``(x, y)``."""
        x0, x1 = self.shadow
        edge = 1.5 * self.g
        col = smoothstep((x - x0 + edge) / (2 * edge)) * smoothstep((x1 - x + edge) / (2 * edge))
        below = smoothstep((y - self.bubble_y) / (2 * self.g))
        return 1.0 - (1.0 - self.shadow_floor) * col * below

    def fixed_echo(self, x, y):
        """Echo amplitude of the probe-fixed artefacts at image position ``(x, y)``."""
        x0, x1 = self.shadow
        H = self.shape[0]
        inside = (x > x0) & (x < x1)
        ring = np.exp(-0.5 * (((y - self.bubble_y) % self.reverb_step) / (1.0 * self.g)) ** 2)
        comet = inside * np.exp(-(y - self.bubble_y) / (0.4 * H)) * 0.5 * ring * (y > 0)
        bubble = inside * 4.0 * np.exp(-0.5 * ((y - self.bubble_y) / (1.2 * self.g)) ** 2)
        near = (
            np.exp(-y / (0.2 * H))
            * 1.2
            * np.exp(-0.5 * ((y % self.reverb_step - self.reverb_step / 2) / (1.2 * self.g)) ** 2)
        )
        return bubble + comet + near * (y > self.reverb_step / 2)

    def extra_info(self):
        n = self.n_frames
        probe = [float(self.probe(f / self.fps)) for f in range(n)]
        return {
            "probe_x": probe,
            "slide_frames": [[s, s + d] for s, d, _ in self.slides],
            "shadow_columns_x": list(self.shadow),
            "bubble_y": self.bubble_y,
            "reverberation_period_px": self.reverb_step,
            "decorrelation_per_px": self.decorrelation_per_px,
        }


class ProbeSlideDecorrelated(ProbeSlide):
    """:class:`ProbeSlide` with out-of-plane motion during the slides: 3 % of the scatterers
    are renewed per pixel the probe moves (about a quarter per frame mid-slide)."""

    name = "probe_slide_decorrelated"
    decorrelation_per_px = 0.03


SCENES = {
    "cardiac": Cardiac,
    "muscle": Muscle,
    "probe_slide": ProbeSlide,
    "probe_slide_decorrelated": ProbeSlideDecorrelated,
}
