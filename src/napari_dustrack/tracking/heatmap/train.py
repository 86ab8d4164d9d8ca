"""Training: AdamW with warm-up and a cosine decay over the time budget, a validation split,
early stopping, fixed seeds, and a Cancel that keeps the best checkpoint so far."""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...errors import DustrackError
from ...io.region import crop_for_training
from ...io.table import labels_of, training_rows, validate
from .augment import augment
from .config import HeatmapConfig, pick_device, set_threads
from .dataset import TrainingSet, build_training_set, split
from .geometry import to_full
from .loss import heatmap_loss, spatial_softmax
from .model import architecture, build_model
from .peaks import subpixel_peaks
from .store import has_model, load_model, read_meta, save_model

WARMUP_STEPS = 20
MIN_VAL_EVERY = 10  # steps between validations when an epoch is shorter than this

Progress = Callable[[int, int], None]
Log = Callable[[dict], None]


@dataclass
class FitResult:
    """What :func:`fit` returns: the best weights and how training went."""

    state_dict: dict
    history: list[dict] = field(default_factory=list)
    best: dict = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    wall_seconds: float = 0.0
    cancelled: bool = False
    stopped_early: bool = False


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch and return a numpy generator, so that a run can be repeated."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _batch(ts: TrainingSet, idx, rng, norm, augmenting: bool, device):
    images, points = [], []
    for i in idx:
        if augmenting:
            img, xy = augment(ts.images[i], ts.xy[i], rng)
        else:
            img, xy = ts.images[i].astype(np.float32) / 255.0, ts.xy[i]
        images.append((img - norm["mean"]) / norm["std"])
        points.append(xy)
    x = torch.from_numpy(np.stack(images)[:, None].astype(np.float32)).to(device)
    y = torch.from_numpy(np.stack(points).astype(np.float32)).to(device)
    return x, y


def _weights(ts: TrainingSet, idx, device):
    """Loss weights of the batch's points (None when the set has none)."""
    if ts.weights is None:
        return None
    return torch.from_numpy(ts.weights[idx].astype(np.float32)).to(device)


@torch.no_grad()
def evaluate(net, ts: TrainingSet, idx, norm, config: HeatmapConfig, device) -> np.ndarray:
    """Per-point error (video pixels) of ``net`` on frames ``idx``, NaN where unlabelled."""
    net.eval()
    errors = []
    for start in range(0, len(idx), config.predict_batch):
        chunk = idx[start : start + config.predict_batch]
        x, _ = _batch(ts, chunk, None, norm, False, device)
        prob = spatial_softmax(net(x)).cpu().numpy()
        xy, _ = subpixel_peaks(prob, config.peak_radius)
        pred = to_full(xy, ts.full_shape, ts.size)
        truth = to_full(ts.xy[chunk], ts.full_shape, ts.size)
        errors.append(np.linalg.norm(pred - truth, axis=-1))
    net.train()
    return np.concatenate(errors)


def make_clock(kind: str) -> Callable[[], float]:
    """Seconds since now: wall clock, or process CPU time per torch thread (``"cpu"``)."""
    if kind == "cpu":
        threads = max(1, torch.get_num_threads())
        start = time.process_time()
        return lambda: (time.process_time() - start) / threads
    start = time.perf_counter()
    return lambda: time.perf_counter() - start


def _lr_factor(step: int, frac: float) -> float:
    warm = min(1.0, (step + 1) / WARMUP_STEPS)
    return warm * (0.02 + 0.98 * 0.5 * (1.0 + np.cos(np.pi * min(1.0, frac))))


def fit(
    ts: TrainingSet,
    config: HeatmapConfig,
    arch: dict[str, Any],
    norm: dict[str, float],
    init_state: dict | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    log: Log | None = None,
) -> FitResult:
    """Train a U-Net on ``ts`` until the time budget, the epoch limit or early stopping.

    Parameters
    ----------
    ts : TrainingSet
    config : HeatmapConfig
    arch : dict
        Network description (:func:`model.architecture`).
    norm : dict
        ``mean``/``std`` of the 0..1 intensities the network sees.
    init_state : dict, optional
        Weights to start from (retraining an earlier model).
    progress : callable, optional
        ``progress(done, total)`` in seconds of the time budget.
    cancel : threading.Event, optional
        When set, training stops at the next step and the best checkpoint so far is returned
        (``cancelled=True``); the product of an interrupted training is that checkpoint.
    log : callable, optional
        Called with a dict (``step, epoch, seconds, loss``, and ``val_error_px`` after a
        validation) for live loss curves.
    """
    rng = seed_everything(config.seed)
    set_threads(config.threads)
    device = pick_device(config.device)
    net = build_model(arch)
    if init_state is not None:
        net.load_state_dict(init_state)
    net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    train_idx, val_idx = split(len(ts), config.val_fraction, rng)
    steps_per_epoch = max(1, int(np.ceil(len(train_idx) / config.batch_size)))
    max_steps = config.max_epochs * steps_per_epoch
    budget = config.minutes * 60.0
    clock = make_clock(config.clock)
    wall0 = time.perf_counter()
    check = _Validation(net, ts, val_idx, norm, config, device, clock, log, steps_per_epoch)
    result, losses, step = check.result, [], 0
    while True:
        elapsed = clock()
        if _stop(result, cancel, elapsed, budget, step, max_steps, check, config.patience):
            break
        frac = max(elapsed / budget, step / max_steps)
        losses.append(_train_step(net, opt, ts, train_idx, rng, norm, config, device, step, frac))
        step += 1
        if log and step % max(1, steps_per_epoch // 2) == 0:
            log(
                {
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "seconds": clock(),
                    "loss": losses[-1],
                }
            )
        if step % check.every == 0:
            check(step, losses)
        if progress:
            progress(int(min(elapsed, budget)), int(np.ceil(budget)))
    if not result.history or result.history[-1]["step"] != step:
        check(step, losses)  # so that a short or cancelled run still has a best checkpoint
    result.steps, result.seconds = step, clock()
    result.wall_seconds = time.perf_counter() - wall0
    if progress:
        progress(int(np.ceil(budget)), int(np.ceil(budget)))
    return result


def _stop(result, cancel, elapsed, budget, step, max_steps, check, patience) -> bool:
    """Whether :func:`fit` stops before this step (and why, noted on ``result``)."""
    if cancel is not None and cancel.is_set():
        result.cancelled = True
        return True
    if elapsed >= budget or step >= max_steps:
        return True
    if check.since_best >= patience:
        result.stopped_early = True
        return True
    return False


def _train_step(net, opt, ts, train_idx, rng, norm, config, device, step, frac) -> float:
    """One optimiser step on a random batch; ``frac`` is how far through training we are."""
    for group in opt.param_groups:
        group["lr"] = config.lr * _lr_factor(step, frac)
    idx = rng.choice(train_idx, size=config.batch_size, replace=len(train_idx) < config.batch_size)
    x, y = _batch(ts, idx, rng, norm, config.augment, device)
    loss, _ = heatmap_loss(net(x), y, config.sigma, config.reg_weight, _weights(ts, idx, device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


class _Validation:
    """Validation during :func:`fit`: keeps the best weights so far and feeds the log."""

    def __init__(self, net, ts, val_idx, norm, config, device, clock, log, steps_per_epoch):
        self.net, self.ts, self.val_idx, self.norm = net, ts, val_idx, norm
        self.config, self.device, self.clock, self.log = config, device, clock, log
        self.steps_per_epoch = steps_per_epoch
        self.every = max(steps_per_epoch, MIN_VAL_EVERY)
        self.result = FitResult(state_dict={})
        self.best_err, self.since_best = np.inf, 0

    def __call__(self, step: int, losses: list[float]) -> None:
        err = evaluate(self.net, self.ts, self.val_idx, self.norm, self.config, self.device)
        med = float(np.nanmedian(err))
        entry = {
            "step": step,
            "epoch": step / self.steps_per_epoch,
            "seconds": self.clock(),
            "loss": float(np.mean(losses[-self.every :])) if losses else float("nan"),
            "val_error_px": med,
        }
        self.result.history.append(entry)
        if med < self.best_err:
            self.best_err, self.since_best = med, 0
            self.result.state_dict = copy.deepcopy(
                {k: v.detach().cpu() for k, v in self.net.state_dict().items()}
            )
            self.result.best = dict(
                entry,
                val_p95_px=float(np.nanpercentile(err, 95)),
                val_mean_px=float(np.nanmean(err)),
            )
        else:
            self.since_best += 1
        if self.log:
            self.log(dict(entry, best_val_error_px=self.best_err))


def normalisation(ts: TrainingSet) -> dict[str, float]:
    """Mean and standard deviation of the training frames' intensities (0..1)."""
    img = ts.images.astype(np.float32) / 255.0
    return {"mean": float(img.mean()), "std": float(max(img.std(), 1e-3))}


def train(
    frames,
    table: pd.DataFrame,
    model_dir: str | os.PathLike,
    config: HeatmapConfig | None = None,
    video: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Train (or retrain) the model in ``model_dir`` on the curated rows of ``table``.

    If ``model_dir`` already holds a model with the same labels, training continues from it
    (its working size, normalisation and architecture are kept) and the iteration number goes
    up by one.

    Returns
    -------
    dict
        The saved ``model.json`` content (labels, iteration, metrics...).

    Raises
    ------
    DustrackError
        Bad training data (see :func:`dataset.curated_points`), a model folder whose labels
        do not match, or frames smaller than the working size. Nothing is written then.
    """
    config = config or HeatmapConfig()
    table = validate(table)
    frames, table = crop_for_training(frames, table)  # the ultrasound image region only
    first = np.asarray(frames[0])
    init_state, previous = None, None
    if has_model(model_dir):
        previous = read_meta(model_dir)
        wanted = labels_of(training_rows(table))
        if sorted(wanted) != sorted(previous["labels"]):
            raise DustrackError(
                f"holds a model for labels {previous['labels']}, but the training points have "
                f"labels {wanted}; use another model folder",
                model_dir,
            )
        labels = list(previous["labels"])
        config = config.replace(working_size=list(previous["working_size"]))
        arch = previous["architecture"]
        norm = previous["normalisation"]
    else:
        labels, arch, norm = None, None, None
    size = config.working_size_for(first.shape[:2])
    ts = build_training_set(frames, table, size, labels)
    arch = arch or architecture(config, len(ts.labels))
    norm = norm or normalisation(ts)
    if previous is not None:
        init_state = load_model(model_dir, labels=ts.labels).net.state_dict()
    fitted = fit(ts, config, arch, norm, init_state, progress, cancel, log)
    meta = {
        "labels": ts.labels,
        "working_size": list(size),
        "source_size": list(ts.full_shape),
        "normalisation": norm,
        "architecture": arch,
        "config": config.replace(working_size=list(size)).to_dict(),
        "training_frames": ts.frames.tolist(),
        "video": None if video is None else str(video),
        "iteration": (int(previous["iteration"]) + 1) if previous else 1,
        "metrics": {
            **{k: v for k, v in fitted.best.items() if k != "epoch"},
            "n_frames": len(ts),
            "steps": fitted.steps,
            "train_seconds": fitted.seconds,
            "wall_seconds": fitted.wall_seconds,
            "clock": config.clock,
            "cancelled": fitted.cancelled,
            "stopped_early": fitted.stopped_early,
        },
        "history": fitted.history,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    save_model(model_dir, fitted.state_dict, meta)
    return read_meta(model_dir)
