"""Error of a track against the ground truth, shared by the smoothing tests."""

import numpy as np


def rmse(a, b) -> float:
    """Root mean square Euclidean error over frames and labels; NaN entries left out."""
    return float(np.sqrt(np.nanmean(np.sum((a - b) ** 2, axis=-1))))
