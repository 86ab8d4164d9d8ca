"""The network: a segmentation-models-pytorch U-Net with one heatmap channel per label."""

from __future__ import annotations

from typing import Any

import segmentation_models_pytorch as smp
import torch

from ...errors import DustrackError
from .config import HeatmapConfig


def architecture(config: HeatmapConfig, n_labels: int) -> dict[str, Any]:
    """The JSON description of the network (enough to rebuild it without the config)."""
    return {
        "name": "Unet",
        "encoder": config.encoder,
        "encoder_weights": config.encoder_weights,
        "decoder_channels": list(config.decoder_channels),
        "in_channels": 1,
        "classes": int(n_labels),
    }


def build_model(arch: dict[str, Any], pretrained: bool = True) -> torch.nn.Module:
    """Build the U-Net described by ``arch``.

    ``pretrained=False`` skips downloading encoder weights (used when loading a saved model,
    whose own weights replace them anyway).
    """
    if arch.get("name") != "Unet":
        raise DustrackError(f"unknown architecture {arch.get('name')!r} (expected 'Unet')")
    weights = arch.get("encoder_weights") if pretrained else None
    try:
        return smp.Unet(
            encoder_name=arch["encoder"],
            encoder_weights=weights,
            in_channels=int(arch["in_channels"]),
            classes=int(arch["classes"]),
            decoder_channels=tuple(arch["decoder_channels"]),
            encoder_depth=len(arch["decoder_channels"]),
        )
    except KeyError as exc:
        raise DustrackError(f"unknown encoder or incomplete architecture ({exc})") from None
    except (OSError, RuntimeError, ValueError) as exc:
        # ImageNet weights need a download; offline that fails here.
        raise DustrackError(f"cannot build encoder {arch.get('encoder')!r}: {exc}") from None
