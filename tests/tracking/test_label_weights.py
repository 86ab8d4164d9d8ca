"""Training weights labels by reliability: manual > reviewed > accepted flow (x confidence)."""

from __future__ import annotations

import numpy as np
import torch

from napari_dustrack.io.table import make_table
from napari_dustrack.tracking.heatmap.dataset import build_training_set, label_weights
from napari_dustrack.tracking.heatmap.loss import heatmap_loss


def _table():
    return make_table(
        frame=[0, 0, 1, 1, 2, 2],
        label=["a", "b"] * 3,
        x=[10.0, 20, 11, 21, 12, 22],
        y=[5.0, 6, 5, 6, 5, 6],
        source=["manual", "manual", "flow", "flow", "model", "model"],
        confidence=[1.0, 1.0, 0.4, 0.9, 0.7, 0.7],
        reviewed=[False, False, True, True, True, True],
    )


def test_weights_follow_how_a_label_was_obtained():
    w = label_weights(_table())
    np.testing.assert_allclose(w, [1.0, 1.0, 0.2, 0.45, 0.8, 0.8])


def test_training_set_carries_the_weights_per_frame_and_label():
    frames = np.zeros((3, 32, 32), np.uint8)
    ts = build_training_set(frames, _table(), (32, 32))
    assert ts.weights.shape == (3, 2)
    np.testing.assert_allclose(ts.weights[1], [0.2, 0.45])


def test_a_zero_weight_point_does_not_move_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 16, 16)
    xy = torch.tensor([[[4.0, 4.0], [10.0, 9.0]]])
    far = xy.clone()
    far[0, 1] = torch.tensor([1.0, 15.0])
    w = torch.tensor([[1.0, 0.0]])
    a, _ = heatmap_loss(logits, xy, 1.5, 0.1, w)
    b, _ = heatmap_loss(logits, far, 1.5, 0.1, w)
    assert torch.isclose(a, b)
    c, _ = heatmap_loss(logits, far, 1.5, 0.1)
    assert not torch.isclose(a, c)
