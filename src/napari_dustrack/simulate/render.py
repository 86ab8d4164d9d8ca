"""The B-mode renderer: scatterers -> complex baseband image -> PSF -> envelope -> 8-bit log
display (the steps listed in the package docstring)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .base import Population, Scene

SPEED_OF_SOUND = 1.54  # mm/us


class Renderer:
    """Scatterers -> 8-bit B-mode frames for one scene (state: scatterers and the RNG)."""

    def __init__(self, scene: Scene, rng):
        self.scene, self.rng = scene, rng
        H, W = scene.shape
        sp = scene.spacing
        sig_ax, sig_lat = scene.psf_px[0], np.array(scene.psf_px[1])
        # render coarser where the PSF is wide: the complex image is band-limited, so it is
        # interpolated up exactly enough, and the cost stays near that of a 256-px frame
        self.r = min(sig_ax, sig_lat[0]) / 1.5
        self.r = 1.0 if self.r < 1.5 else self.r
        self.h, self.w = max(int(round(H / self.r)), 8), max(int(round(W / self.r)), 8)
        self.sx, self.sy = self.w / W, self.h / H
        self.sig_ax, self.sig_lat = sig_ax * self.sy, sig_lat * self.sx
        self.m = int(math.ceil(3 * max(self.sig_ax, self.sig_lat.max()))) + 1
        self.k0 = 2 * scene.f_mhz / SPEED_OF_SOUND * sp  # round-trip cycles per output pixel
        depth = (np.arange(self.h + 2 * self.m, dtype=np.float32) - self.m + 0.5) / self.h
        self.att = 10 ** (-scene.atten_db * depth / 20)[:, None, None].astype(np.float32)
        self.tgc = 10 ** (scene.tgc_db * depth / 20)[:, None, None].astype(np.float32)
        far = np.clip(np.abs(depth - scene.focus) / max(scene.focus, 1 - scene.focus), 0, 1)
        self.blend = far[:, None, None].astype(np.float32)
        cell = 2 * math.pi * sig_ax * sig_lat[0]  # resolution cell, output pixels^2
        self.pops = []
        for pop in scene.populations:
            per_px = pop.per_cell / cell
            area = (scene.bounds[1] - scene.bounds[0]) * (scene.bounds[3] - scene.bounds[2])
            X, Y = self._draw(pop, int(per_px * area), exact=False)
            self.pops.append(self._state(pop, X, Y))
        # receive noise: per-pixel sd matched to the splatted tissue signal, scaled to noise_db
        tissue_px = max(p.per_cell for p in scene.populations) / cell / (self.sx * self.sy)
        self.noise_sd = float(math.sqrt(tissue_px) * 10 ** (scene.noise_db / 20))
        self.mask = scene.mask()
        self.ref = None
        self.renew_scale = 1.0
        self.shadow, self.fixed = self._probe_fixed(
            per_px=max(p.per_cell for p in scene.populations) / cell
        )

    def _grid_xy(self):
        """Output-pixel coordinates (x, y) of the padded render grid's nodes."""
        m, hp, wp = self.m, self.h + 2 * self.m, self.w + 2 * self.m
        x = (np.arange(wp, dtype=np.float64) - m + 0.5) / self.sx - 0.5
        y = (np.arange(hp, dtype=np.float64) - m + 0.5) / self.sy - 0.5
        return np.meshgrid(x, y)

    def _probe_fixed(self, per_px: float):
        """Shadow gain (hp, wp, 1) and the echo grid of the probe-fixed artefacts, or Nones.

        The artefacts' scatterers never move or renew: their speckle is still in the image.
        """
        scene = self.scene
        if scene.shadow_gain is None:
            return None, None
        gx, gy = self._grid_xy()
        shadow = scene.shadow_gain(gx, gy).astype(np.float32)[..., None]
        H, W = scene.shape
        k = int(per_px * H * W)
        x, y = self.rng.uniform(-0.5, W - 0.5, k), self.rng.uniform(-0.5, H - 0.5, k)
        amp = (scene.fixed_echo(x, y) * self.rng.standard_normal(k)).astype(np.float32)
        return shadow, self._splat(x, y, amp) * self.att

    def _draw(self, pop: Population, n: int, exact: bool = True):
        """``n`` material positions from the population's density (rejection sampling).

        With ``exact=False`` one batch of ``n`` candidates is thinned (the initial cloud, whose
        size follows the density); otherwise candidates are drawn until ``n`` are accepted.
        """
        x0, x1, y0, y1 = self.scene.bounds
        xs, ys, have, tried = [], [], 0, 0
        while True:
            rate = max(have / tried, 0.01) if tried else pop.accept
            k = max(n, 64) if not exact else int(1.2 * (n - have) / rate) + 16
            X = self.rng.uniform(x0, x1, k)
            Y = self.rng.uniform(y0, y1, k)
            keep = self.rng.random(k) < pop.density(X, Y)
            xs.append(X[keep])
            ys.append(Y[keep])
            have, tried = have + int(keep.sum()), tried + k
            if not exact or have >= n:
                break
        if not exact:
            pop.accept = max(have / tried, 0.01)
        X, Y = np.concatenate(xs), np.concatenate(ys)
        return (X[:n], Y[:n]) if exact else (X, Y)

    def _state(self, pop, X, Y):
        amp = (pop.echo(X, Y) * self.rng.standard_normal(len(X))).astype(np.float32)
        return {"pop": pop, "m": self.scene.material(X, Y), "amp": amp}

    def _renew(self, st):
        n = len(st["amp"])
        rate = min(st["pop"].renew * self.renew_scale, 1.0)
        idx = np.flatnonzero(self.rng.random(n) < rate)
        if len(idx) == 0:
            return
        X, Y = self._draw(st["pop"], len(idx))
        fresh = self._state(st["pop"], X, Y)
        for key, value in fresh["m"].items():
            st["m"][key][idx] = value
        st["amp"][idx] = fresh["amp"]

    def _splat(self, x, y, amp):
        """Bilinear splat of complex weights onto the padded render grid -> (h+2m, w+2m, 2)."""
        m, hp, wp = self.m, self.h + 2 * self.m, self.w + 2 * self.m
        u = (x + 0.5) * self.sx - 0.5 + m  # output pixel centres -> render grid (as cv2.resize)
        v = (y + 0.5) * self.sy - 0.5 + m
        ok = (u >= 0) & (u < wp - 1) & (v >= 0) & (v < hp - 1)
        u, v, amp = u[ok], v[ok], amp[ok]
        cycles = self.k0 * y[ok].astype(np.float64)  # exact depth, not the grid's
        phase = ((cycles - np.floor(cycles)) * (-2 * np.pi)).astype(np.float32)
        re, im = amp * np.cos(phase), amp * np.sin(phase)
        u0, v0 = np.floor(u), np.floor(v)
        fu, fv = u - u0, v - v0
        base = v0.astype(np.intp) * wp + u0.astype(np.intp)
        size, length = hp * wp, hp * wp + wp + 2
        out = np.empty((hp, wp, 2), np.float32)
        # bilinear weights: one bincount per corner at the same index, shifted afterwards
        for c, val in enumerate((re, im)):
            top, bottom = val * (1 - fv), val * fv
            acc = np.bincount(base, top * (1 - fu), length)
            acc[1:] += np.bincount(base, top * fu, length)[:-1]
            acc[wp:] += np.bincount(base, bottom * (1 - fu), length)[:-wp]
            acc[wp + 1 :] += np.bincount(base, bottom * fu, length)[: -wp - 1]
            out[..., c] = acc[:size].reshape(hp, wp)
        return out

    def _psf(self, grid):
        ax = cv2.getGaussianKernel(2 * int(3 * self.sig_ax) + 1, self.sig_ax, cv2.CV_32F)
        one = np.ones((1, 1), np.float32)
        axial = cv2.sepFilter2D(grid, -1, one, ax, borderType=cv2.BORDER_CONSTANT)
        out = []
        for sig in self.sig_lat:
            k = cv2.getGaussianKernel(2 * int(3 * sig) + 1, float(sig), cv2.CV_32F)
            out.append(cv2.sepFilter2D(axial, -1, k, one, borderType=cv2.BORDER_CONSTANT))
        return out[0] + self.blend * (out[1] - out[0])

    def envelope(self, t: float) -> np.ndarray:
        """Envelope image (H, W) float32 at time ``t`` (s)."""
        xs, ys, amps = [], [], []
        for st in self.pops:
            x, y = self.scene.deform(st["m"], t)
            xs.append(x), ys.append(y), amps.append(st["amp"])
        grid = self._splat(np.concatenate(xs), np.concatenate(ys), np.concatenate(amps))
        grid *= self.att
        if self.shadow is not None:  # probe-fixed: the shadow dims tissue, the artefacts add
            grid *= self.shadow
            grid += self.fixed
        grid += self.rng.standard_normal(grid.shape, dtype=np.float32) * self.noise_sd
        iq = self._psf(grid) * self.tgc
        m = self.m
        iq = iq[m : m + self.h, m : m + self.w]
        H, W = self.scene.shape
        if (self.h, self.w) != (H, W):
            iq = cv2.resize(iq, (W, H), interpolation=cv2.INTER_CUBIC)
        env = cv2.magnitude(*cv2.split(iq))
        return env if self.mask is None else cv2.multiply(env, self.mask)

    def frame(self, t: float) -> np.ndarray:
        """One 8-bit frame; the display gain is fixed on the first frame (no flicker)."""
        env = self.envelope(t)
        if self.ref is None:
            self.ref = float(np.percentile(env[env > 0], 99.5)) * 10 ** (-self.scene.gain_db / 20)
        dr = self.scene.dynamic_range_db
        # grey = 255 (20 log10(env / ref) + dr) / dr, rounded and saturated to 0..255
        log_env = cv2.log(np.maximum(env, self.ref * 1e-6, out=env))
        scale = 255.0 / dr * 20.0 / math.log(10.0)
        offset = 255.0 - scale * math.log(self.ref)
        return cv2.addWeighted(log_env, scale, log_env, 0.0, offset, dtype=cv2.CV_8U)

    def step(self, frame: int | None = None):
        """Renew scatterers before ``frame`` (the scene may renew more while the probe moves)."""
        self.renew_scale = 1.0 if frame is None else self.scene.renew_factor(frame)
        for st in self.pops:
            self._renew(st)
