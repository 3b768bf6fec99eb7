"""Points grouped by the grid cell they fall in: np.unique over integer (x, y, z) rows, fast.

np.unique(cells, axis=0) sorts the rows through a structured view and took ~4 s for a
million points (experiments/results/benchmarks/profile_rebar3d.md: it was most of the
local-shape features' time). Packing each row into one int64 key, x major, sorts in the
same lexicographic order, so the groups, their order and every index are the same, at a
fraction of the time and memory (experiments/bench_shape_features.py).
"""

from __future__ import annotations

import numpy as np

BITS = 21  # per axis: 2^21 cells (20 km at 1 cm) fit three to an int64


def group_cells(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, inverse, counts) of the distinct rows of the integer array `cells` (N, 3),
    exactly as np.unique(cells, axis=0, return_index=True, return_inverse=True,
    return_counts=True) returns them: distinct rows in lexicographic order, the index of
    each one's first point, every point's group, and the group sizes."""
    cells = np.asarray(cells)
    if cells.ndim != 2 or cells.shape[1] != 3 or not np.issubdtype(cells.dtype, np.integer):
        raise ValueError(f"group_cells needs an integer (N, 3) array, got {cells.dtype} {cells.shape}")
    lo = cells.min(axis=0) if len(cells) else np.zeros(3, np.int64)
    span = (cells.max(axis=0) - lo) if len(cells) else np.zeros(3, np.int64)
    if span.max() < 2**BITS:
        shifted = (cells - lo).astype(np.int64)
        key = (shifted[:, 0] << (2 * BITS)) | (shifted[:, 1] << BITS) | shifted[:, 2]
        _, first, inverse, counts = np.unique(key, return_index=True, return_inverse=True,
                                              return_counts=True)
    else:  # wider than 2^21 cells on some axis: sort the rows themselves
        _, first, inverse, counts = np.unique(cells, axis=0, return_index=True,
                                              return_inverse=True, return_counts=True)
    return first, inverse.reshape(-1), counts  # numpy 2.0.0 returned (N, 1) for axis=0
