"""Coordinate regression on heatmaps (DSNT / integral regression).

Each output channel is a softmax over the image; its expectation is the predicted point, and
the loss is the distance of that expectation from the label. Plain MSE against Gaussian targets
learns slowly on sparse peaks; the expectation gives every pixel a gradient from the first step.
A small Jensen-Shannon term pulls the distribution towards a Gaussian at the label so that the
mass concentrates (which makes the peak and its confidence meaningful).
"""

from __future__ import annotations

import torch


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last two dims: (B, L, h, w) -> probabilities summing to 1 per channel."""
    b, c, h, w = logits.shape
    return torch.softmax(logits.reshape(b, c, h * w).float(), dim=-1).reshape(b, c, h, w)


def expectation(prob: torch.Tensor) -> torch.Tensor:
    """Expected (x, y) of each channel of ``prob`` (B, L, h, w) -> (B, L, 2), pixel units."""
    h, w = prob.shape[-2:]
    xs = torch.arange(w, dtype=prob.dtype, device=prob.device)
    ys = torch.arange(h, dtype=prob.dtype, device=prob.device)
    x = (prob.sum(dim=-2) * xs).sum(dim=-1)
    y = (prob.sum(dim=-1) * ys).sum(dim=-1)
    return torch.stack([x, y], dim=-1)


def gaussian_targets(xy: torch.Tensor, shape: tuple[int, int], sigma: float) -> torch.Tensor:
    """Normalised Gaussians (B, L, h, w) centred on ``xy`` (B, L, 2); NaN -> uniform (masked)."""
    h, w = shape
    xs = torch.arange(w, dtype=torch.float32, device=xy.device)
    ys = torch.arange(h, dtype=torch.float32, device=xy.device)
    safe = torch.nan_to_num(xy, nan=0.0)
    gx = torch.exp(-((xs - safe[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((ys - safe[..., 1:2]) ** 2) / (2 * sigma**2))
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per channel (B, L) between distributions over (h, w)."""
    m = 0.5 * (p + q)
    eps = 1e-12

    def kl(a):
        return (a * (torch.log(a + eps) - torch.log(m + eps))).sum(dim=(-2, -1))

    return 0.5 * kl(p) + 0.5 * kl(q)


def heatmap_loss(
    logits: torch.Tensor,
    xy: torch.Tensor,
    sigma: float,
    reg_weight: float,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked loss over the labelled points.

    Parameters
    ----------
    logits : (B, L, h, w)
    xy : (B, L, 2)
        Targets on the working grid; NaN for a missing label (no loss).
    weights : (B, L), optional
        Weight of each point in the mean (its label's reliability); default all 1.

    Returns
    -------
    loss : scalar tensor
    error : (B, L) tensor
        Distance of the expectation from the target in working pixels (NaN where masked).
    """
    prob = spatial_softmax(logits)
    pred = expectation(prob)
    mask = torch.isfinite(xy).all(dim=-1)
    target = torch.nan_to_num(xy, nan=0.0)
    dist = torch.sqrt(((pred - target) ** 2).sum(dim=-1) + 1e-6)
    reg = js_divergence(prob, gaussian_targets(xy, prob.shape[-2:], sigma))
    per_point = dist + reg_weight * reg
    w = mask.float() if weights is None else mask * weights
    loss = (per_point * w).sum() / w.sum().clamp_min(1e-6)
    error = torch.where(mask, dist.detach(), torch.full_like(dist, float("nan")))
    return loss, error
