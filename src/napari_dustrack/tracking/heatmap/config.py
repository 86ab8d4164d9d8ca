"""Every setting of the heatmap model in one dataclass (no torch import)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ...errors import DustrackError

# The U-Net halves the image up to five times: the working size must divide by this.
SIZE_MULTIPLE = 32


@dataclass
class HeatmapConfig:
    """Settings of the U-Net heatmap model, its training and its prediction.

    Attributes
    ----------
    encoder : str
        segmentation-models-pytorch encoder; ``resnet18`` trains in minutes on a CPU.
    encoder_weights : str or None
        ``None`` (offline, the default) or e.g. ``"imagenet"`` where it can be downloaded.
    decoder_channels : tuple of int
        U-Net decoder widths, one per encoder stage used (4 stages: the deepest, 1/32-scale
        stage of the encoder is left out). Narrower and shallower than smp's default so that
        training takes minutes and prediction keeps up with video on a CPU.
    scale : float
        Working size as a fraction of the video size when ``working_size`` is not given
        (rounded to a multiple of 32).
    working_size : (int, int) or None
        (height, width) the frames are resized to; fixed by the first training of a model.
    sigma : float
        Width (working pixels) of the Gaussian the heatmaps are pulled towards.
    reg_weight : float
        Weight of the Gaussian regulariser next to the coordinate loss.
    minutes : float
        Training time budget (wall clock).
    clock : str
        ``"wall"`` (default): ``minutes`` of wall-clock time. ``"cpu"``: ``minutes`` x torch
        threads of process CPU time, i.e. the wall time on otherwise idle cores; for
        benchmarks on a shared machine, where wall time depends on other users' load.
    max_epochs : int
        Upper bound on passes over the training frames.
    patience : int
        Early stopping: validations without improvement before stopping.
    lr, weight_decay : float
        AdamW settings (cosine decay over the budget after a short warm-up).
    batch_size : int
        Frames per training step.
    val_fraction : float
        Share of the labelled frames held out to choose the best checkpoint.
    seed : int
        Seeds numpy and torch so a run can be repeated.
    device : str
        ``"auto"`` (CUDA, then Apple MPS, then CPU), or a torch device name.
    threads : int or None
        torch CPU threads (None: all cores the process may use).
    predict_batch : int
        Frames per forward pass when predicting.
    peak_radius : int
        Half-size (working pixels) of the window the sub-pixel peak is measured in.
    augment : bool
        Ultrasound-like augmentation of the training frames.
    """

    encoder: str = "resnet18"
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] = (64, 32, 16, 16)
    scale: float = 0.5
    working_size: tuple[int, int] | None = None
    sigma: float = 2.0
    reg_weight: float = 1.0
    minutes: float = 4.0
    clock: str = "wall"
    max_epochs: int = 10_000
    patience: int = 40
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_size: int = 4
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    predict_batch: int = 16
    peak_radius: int = 5
    augment: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.working_size is not None:
            h, w = (int(v) for v in self.working_size)
            if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE or h <= 0 or w <= 0:
                raise DustrackError(
                    f"working size {h}x{w} must be positive multiples of {SIZE_MULTIPLE}"
                )
            self.working_size = (h, w)
        if not 0 < self.scale <= 1:
            raise DustrackError(f"scale {self.scale} must lie in (0, 1]")
        if self.clock not in ("wall", "cpu"):
            raise DustrackError(f"clock must be 'wall' or 'cpu', not {self.clock!r}")
        if self.minutes <= 0:
            raise DustrackError(f"training time {self.minutes} min must be positive")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        d["working_size"] = None if self.working_size is None else list(self.working_size)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeatmapConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def replace(self, **changes) -> HeatmapConfig:
        d = self.to_dict()
        d.update(changes)
        return HeatmapConfig.from_dict(d)

    def working_size_for(self, frame_shape: tuple[int, int]) -> tuple[int, int]:
        """The working (height, width) for frames of ``frame_shape``.

        Raises
        ------
        DustrackError
            The frames are smaller than the working size (a model would have to invent detail).
        """
        h, w = int(frame_shape[0]), int(frame_shape[1])
        if self.working_size is not None:
            wh, ww = self.working_size
            if h < wh or w < ww:
                raise DustrackError(
                    f"video frames ({h}x{w}) are smaller than the model's working size ({wh}x{ww})"
                )
            return wh, ww
        wh = max(SIZE_MULTIPLE, int(round(h * self.scale / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
        ww = max(SIZE_MULTIPLE, int(round(w * self.scale / SIZE_MULTIPLE)) * SIZE_MULTIPLE)
        if h < wh or w < ww:
            raise DustrackError(
                f"video frames ({h}x{w}) are smaller than the smallest working size "
                f"({SIZE_MULTIPLE}x{SIZE_MULTIPLE})"
            )
        return wh, ww


def pick_device(name: str = "auto") -> str:
    """CUDA, then Apple MPS, then CPU for ``"auto"``; otherwise ``name`` (imports torch)."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def set_threads(threads: int | None) -> None:
    """Let torch use ``threads`` CPU threads (default: the cores this process may run on)."""
    import torch

    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # macOS, Windows
            threads = os.cpu_count() or 1
    torch.set_num_threads(max(1, int(threads)))
