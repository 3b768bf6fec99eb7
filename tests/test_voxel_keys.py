"""group_cells gives exactly what np.unique(axis=0) gives, on every path."""

import numpy as np
import pytest

from data_tools.voxel_keys import BITS, group_cells


def _unique_rows(cells):
    _, first, inverse, counts = np.unique(cells, axis=0, return_index=True, return_inverse=True,
                                          return_counts=True)
    return first, inverse.reshape(-1), counts


@pytest.mark.parametrize("wide", [False, True])
def test_group_cells_equals_unique_rows(wide):
    rng = np.random.default_rng(0)
    cells = rng.integers(-40, 40, size=(5000, 3))  # many repeats, negative cells
    if wide:  # one axis wider than the packed key allows: the row path
        cells[::7, 1] += 2**BITS + 5
    got, want = group_cells(cells), _unique_rows(cells)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_group_cells_refuses_floats_and_wrong_shapes():
    with pytest.raises(ValueError, match="integer \\(N, 3\\)"):
        group_cells(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="integer \\(N, 3\\)"):
        group_cells(np.zeros((4, 2), np.int64))
