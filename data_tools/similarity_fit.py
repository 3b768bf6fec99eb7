"""The similarity (scale, rotation, translation) that best maps one point set onto another.

An SfM reconstruction has no absolute frame or scale. To compare its cameras with the
renderer's - for evaluation only - the registered camera centres are mapped onto the true
ones by the least-squares similarity in closed form (Umeyama 1991: SVD of the
cross-covariance, with the reflection guard, and the scale from the variance the rotation
explains). The fitted ``Similarity`` then carries ground truth into the SfM frame and back.
"""

from __future__ import annotations

import numpy as np

from data_tools.photogrammetry import Similarity

__all__ = ["fit_similarity"]


def fit_similarity(source: np.ndarray, target: np.ndarray) -> Similarity:
    """``sim`` minimising sum |sim.apply(source_i) - target_i|^2; needs >= 3 points not on a line."""
    src, dst = (np.asarray(a, np.float64) for a in (source, target))
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3:
        raise ValueError(f"need two (N, 3) arrays of the same shape, got {src.shape} and {dst.shape}")
    if len(src) < 3:
        raise ValueError(f"a similarity needs at least 3 point pairs, got {len(src)}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    var_s = float((a ** 2).sum()) / len(src)
    u, sing, vt = np.linalg.svd(b.T @ a / len(src))
    if var_s <= 0 or sing[1] <= 1e-12 * max(sing[0], 1e-300):
        raise ValueError("the source points are (nearly) collinear: the rotation is not determined")
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would be a reflection
        d[2] = -1
    rot = u @ np.diag(d) @ vt
    scale = float((sing * d).sum()) / var_s
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)
