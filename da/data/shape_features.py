"""Multi-scale local-shape features of a point cloud (eigenvalues of local covariances).

For each radius r, every point gets the covariance of its neighbourhood and from its
eigenvalues l1 >= l2 >= l3 and eigenvectors e1 (main direction), e3 (normal):

    linearity  (l1 - l2) / l1     a bar seen at this scale
    planarity  (l2 - l3) / l1     a formwork face, the ground, a mat of bars at large r
    scattering l3 / l1            a blob: MVS noise, a bar crossing, a tie's knot
    e1_z^2                        1 for a vertical bar (column main bar), 0 horizontal
    n_z^2                         1 for horizontal surfaces (ground), 0 for walls
    h = (e1_x^2 - e1_y^2, 2 e1_x e1_y)   the horizontal direction of e1 as a doubled
                                  angle: sign-free (e1 and -e1 give the same h) and
                                  rotating by 2a when the block rotates by a about z
                                  (`rotate`), so a network can compare bar directions
                                  inside a block (a beam's stirrups cross its main bars)

7 channels per radius, radius-major. Orientation-free except h, which augmentation
rotates with the block.

Cost: at radius r the cloud is first reduced to a grid of r / 4 (never finer than the
input), so a neighbourhood holds at most `k` cells whatever the density; each cell's
neighbours within r come from a k-d tree, and every point takes the features of its
cell. This keeps a 20 M-point scene linear in points and the per-radius work bounded.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from scipy.spatial import cKDTree

from data_tools.voxel_keys import group_cells

CHANNELS_PER_RADIUS = 7
DEFAULT_RADII = (0.02, 0.04, 0.08, 0.16)


def _covariance_features(cells: np.ndarray, radius: float, k: int,
                         chunk: int = 65536) -> np.ndarray:
    """(m, 7) features of the cell centroids `cells` (m, 3) at `radius`, computed `chunk`
    query cells at a time so the (chunk, k) neighbour arrays bound the memory.

    Chunks run on torch's thread count (what `torch.set_num_threads` / OMP_NUM_THREADS
    say), each chunk's query single-threaded: numpy and the k-d tree release the GIL, so
    the covariances, not only the queries, use every thread. Chunks write disjoint rows,
    so the result does not depend on the thread count."""
    m = len(cells)
    k = min(k, m)
    tree = cKDTree(cells)
    out = np.empty((m, CHANNELS_PER_RADIUS), np.float32)

    def one(start: int) -> None:
        query = cells[start:start + chunk]
        dist, idx = tree.query(query, k=k, distance_upper_bound=radius, workers=1)
        if k == 1:
            dist, idx = dist[:, None], idx[:, None]
        out[start:start + chunk] = _features(cells, query, np.isfinite(dist), idx)

    threads = max(1, torch.get_num_threads())
    if threads > 1:  # a few chunks per thread, so that none waits on the last big one
        chunk = max(4096, min(chunk, -(-m // (4 * threads))))
    starts = range(0, m, chunk)
    threads = min(threads, len(starts))
    if threads <= 1:
        for start in starts:
            one(start)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, starts))  # list(): re-raise a chunk's exception here
    return out


def _features(cells: np.ndarray, query: np.ndarray, valid: np.ndarray,
              idx: np.ndarray) -> np.ndarray:
    m = len(query)
    count = np.maximum(valid.sum(axis=1), 1)
    # Offsets from the query cell (small numbers: float32 is exact enough), zero where no
    # neighbour; then cov = E[d d^T] - E[d] E[d]^T from sums, without a (m, k, 3) mean pass.
    rel = (cells[np.where(valid, idx, 0)] - query[:, None]).astype(np.float32)
    rel[~valid] = 0.0
    s1 = rel.sum(axis=1, dtype=np.float64) / count[:, None]
    cov = np.empty((m, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            second = np.einsum("mk,mk->m", rel[..., a], rel[..., b], dtype=np.float64) / count
            cov[:, a, b] = cov[:, b, a] = second - s1[:, a] * s1[:, b]
    vals, vecs = np.linalg.eigh(cov)  # ascending: vals[:, 2] = l1
    l1 = np.maximum(vals[:, 2], 1e-12)
    e1, e3 = vecs[:, :, 2], vecs[:, :, 0]
    out = np.stack([(vals[:, 2] - vals[:, 1]) / l1, (vals[:, 1] - vals[:, 0]) / l1,
                    np.maximum(vals[:, 0], 0) / l1, e1[:, 2] ** 2, e3[:, 2] ** 2,
                    e1[:, 0] ** 2 - e1[:, 1] ** 2, 2 * e1[:, 0] * e1[:, 1]], axis=1)
    out[valid.sum(axis=1) < 3] = 0.0  # fewer than 3 neighbours: no shape to speak of
    return out


def local_shape(xyz: np.ndarray, radii: tuple[float, ...] | list[float] = DEFAULT_RADII,
                k: int = 32, min_cell: float = 0.0) -> np.ndarray:
    """(N, 7 * len(radii)) float32 features of the points `xyz` (N, 3), in metres.

    min_cell: the finest grid used (e.g. the cloud's own voxel size); cells are r / 4.
    """
    xyz = np.asarray(xyz, np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or not len(xyz):
        raise ValueError(f"local_shape needs a non-empty (N, 3) array, got shape {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("local_shape: coordinates contain NaN or infinite values")
    if not radii or min(radii) <= 0:
        raise ValueError(f"radii must be positive, got {radii}")
    out = np.empty((len(xyz), CHANNELS_PER_RADIUS * len(radii)), np.float32)
    for i, r in enumerate(radii):
        cell = max(r / 4.0, min_cell)
        _, inverse, counts = group_cells(np.floor(xyz / cell).astype(np.int64))
        centroids = np.stack([np.bincount(inverse, xyz[:, a], len(counts)) for a in range(3)],
                             axis=1) / counts[:, None]
        feats = _covariance_features(centroids, r, k)
        out[:, i * CHANNELS_PER_RADIUS:(i + 1) * CHANNELS_PER_RADIUS] = feats[inverse]
    return out


def rotate(shape: np.ndarray, angle: float) -> np.ndarray:
    """Shape features of a block rotated by `angle` about z: each h pair turns by 2 angle."""
    out = shape.copy()
    c, s = np.cos(2 * angle), np.sin(2 * angle)
    for start in range(0, shape.shape[1], CHANNELS_PER_RADIUS):
        hc, hs = shape[:, start + 5], shape[:, start + 6]
        out[:, start + 5], out[:, start + 6] = c * hc - s * hs, s * hc + c * hs
    return out
