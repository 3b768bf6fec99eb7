"""Make a user's photogrammetry cloud usable: clean, level, scale, normalise, tile.

An SfM + MVS cloud arrives in arbitrary scale and orientation. The usual order is::

    cloud, _ = voxel_downsample(cloud, voxel)            # even density, labels kept
    cloud, _ = remove_statistical_outliers(cloud)         # drop floating MVS noise
    cloud = scale_cloud(cloud, scale_from_reference(p1, p2, true_length))  # metres
    cloud, transform = gravity_align(cloud)               # ground -> z = 0, +Z up
    blocks = tile_blocks(cloud, block_size, num_points)   # model inputs
    scores = vote(len(cloud), blocks, block_logits)       # predictions -> every point

Every function is pure: it returns new arrays / clouds and never modifies its input.
Index maps (`voxel_downsample`'s ``index``, the outlier ``keep`` mask, each
``Block.indices``) relate outputs to the points they came from, so predictions made on
a prepared cloud can be carried back to the original points.

Labels: 0 background, 1 main rebar, 2 tie, 255 ignore.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from data_tools.io import PointCloud
from data_tools.voxel_keys import group_cells

__all__ = [
    "IGNORE_LABEL", "Block", "denormalise", "fit_ground_plane", "gravity_align",
    "normalise", "remove_statistical_outliers", "rotation_to_z", "add_votes", "scale_cloud",
    "scale_from_reference", "tile_blocks", "transform_cloud", "vote", "voxel_downsample",
]

IGNORE_LABEL = 255


def _copy(a: np.ndarray | None, idx: np.ndarray | slice = slice(None)) -> np.ndarray | None:
    return None if a is None else a[idx].copy()


def _subset(cloud: PointCloud, idx: np.ndarray) -> PointCloud:
    """New cloud holding the points `idx` (an index array or boolean mask) of `cloud`."""
    return PointCloud(xyz=cloud.xyz[idx].copy(), rgb=_copy(cloud.rgb, idx),
                      normals=_copy(cloud.normals, idx), labels=_copy(cloud.labels, idx))


# --------------------------------------------------------------------------- voxels


def voxel_downsample(cloud: PointCloud, voxel: float) -> tuple[PointCloud, np.ndarray]:
    """One point per occupied voxel, plus ``index`` mapping each original point to it.

    Voxels are the cells ``floor(xyz / voxel)`` of a grid anchored at the origin (so the
    grid does not move with the cloud's extent). Per voxel: the centroid of xyz, the mean
    colour, the mean normal renormalised (the first point's normal if the mean is ~0,
    e.g. opposite normals on both faces of a thin bar), and the majority label ignoring
    255 (255 only if every point is 255; ties go to the smallest label). Output points
    are in lexicographic voxel order; ``out.xyz[index[i]]`` lies in point i's voxel.
    """
    if not (math.isfinite(voxel) and voxel > 0):
        raise ValueError(f"voxel size must be a positive finite number, got {voxel}")
    cloud.validate("voxel_downsample input")
    cells = np.floor(cloud.xyz / voxel)
    if np.abs(cells).max() >= 2**62:
        raise ValueError(f"voxel size {voxel} is too small for coordinates this large")
    first, index, counts = group_cells(cells.astype(np.int64))
    m = len(counts)

    def mean(a: np.ndarray) -> np.ndarray:
        sums = np.stack([np.bincount(index, a[:, c], m) for c in range(a.shape[1])], axis=1)
        return sums / counts[:, None]

    xyz = mean(cloud.xyz).astype(cloud.xyz.dtype)
    rgb = None if cloud.rgb is None else np.clip(mean(cloud.rgb), 0, 1).astype(cloud.rgb.dtype)
    normals = None
    if cloud.normals is not None:
        n = mean(cloud.normals)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        n = np.where(norm > 1e-9, n / np.maximum(norm, 1e-300), cloud.normals[first])
        normals = n.astype(cloud.normals.dtype)
    labels = None if cloud.labels is None else _majority(cloud.labels, index, m)
    return PointCloud(xyz=xyz, rgb=rgb, normals=normals, labels=labels), index


def _majority(labels: np.ndarray, index: np.ndarray, m: int) -> np.ndarray:
    """Per group, the most frequent label other than 255 (255 if the group has no other)."""
    values, codes = np.unique(labels, return_inverse=True)
    votes = np.zeros((m, len(values)), dtype=np.int64)
    np.add.at(votes, (index, codes.reshape(-1)), 1)
    ignore = values == IGNORE_LABEL
    votes[:, ignore] = 0
    out = values[votes.argmax(axis=1)].astype(np.int64)  # argmax: ties -> smallest label
    out[votes.sum(axis=1) == 0] = IGNORE_LABEL
    return out


# --------------------------------------------------------------------------- outliers


def remove_statistical_outliers(cloud: PointCloud, k: int = 16,
                                std_ratio: float = 2.0) -> tuple[PointCloud, np.ndarray]:
    """Drop points whose mean distance to their k nearest neighbours is unusually large.

    A point is kept when its mean k-NN distance is <= mean + std_ratio * std over all
    points (the rule of PCL / Open3D's statistical outlier removal, here with labels
    kept). Returns the kept cloud and the boolean keep mask over the input points.
    """
    if k < 1 or std_ratio <= 0 or not math.isfinite(std_ratio):
        raise ValueError(f"need k >= 1 and a positive finite std_ratio, got k={k}, {std_ratio}")
    cloud.validate("remove_statistical_outliers input")
    n = len(cloud)
    if n < 2:
        raise ValueError(f"need at least 2 points to find outliers, got {n}")
    k = min(k, n - 1)
    dist, _ = cKDTree(cloud.xyz).query(cloud.xyz, k=k + 1)  # column 0: the point itself
    mean_dist = dist[:, 1:].mean(axis=1)
    keep = mean_dist <= mean_dist.mean() + std_ratio * mean_dist.std()
    return _subset(cloud, keep), keep


# --------------------------------------------------------------------------- ground, gravity


def fit_ground_plane(xyz: np.ndarray, distance: float, iterations: int = 1000, seed: int = 0,
                     max_eval_points: int = 100_000) -> tuple[np.ndarray, float, np.ndarray]:
    """RANSAC plane ``normal . x + d = 0``, refined by least squares; returns (normal, d, inliers).

    Each iteration fits a plane through 3 random points (seeded, so the result is
    deterministic) and counts points within `distance`; hypotheses are scored on a
    random subset of at most `max_eval_points` points for speed. The best plane is
    refined twice by SVD on its inliers (over all points). The unit normal is oriented so
    that most points off the plane (beyond `distance`) are on its positive side, i.e.
    "above the ground"; with no such points it is oriented towards +Z.
    """
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) < 3:
        raise ValueError(f"need an (N, 3) array with N >= 3, got shape {xyz.shape}")
    if not (math.isfinite(distance) and distance > 0) or iterations < 1:
        raise ValueError(f"need a positive distance and iterations >= 1, got {distance}, {iterations}")
    rng = np.random.default_rng(seed)
    sample = xyz if len(xyz) <= max_eval_points else xyz[rng.choice(len(xyz), max_eval_points, replace=False)]
    tri = xyz[rng.integers(0, len(xyz), size=(iterations, 3))]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(normals, axis=1)
    ok = norm > 1e-12 * max(1.0, float(np.abs(xyz).max())) ** 2
    if not ok.any():
        raise ValueError("all RANSAC samples were degenerate (coincident or collinear points)")
    normals, anchors = normals[ok] / norm[ok, None], tri[ok, 0]
    best, best_count = 0, -1
    for start in range(0, len(normals), 64):  # 64 hypotheses at a time bounds memory
        nrm, anc = normals[start:start + 64], anchors[start:start + 64]
        counts = (np.abs(sample @ nrm.T - (anc * nrm).sum(axis=1)) <= distance).sum(axis=0)
        if counts.max() > best_count:
            best, best_count = start + int(counts.argmax()), int(counts.max())
    normal, d = normals[best], -float(anchors[best] @ normals[best])
    for _ in range(2):  # refit on the inliers, then re-select inliers with the refined plane
        inliers = np.abs(xyz @ normal + d) <= distance
        if inliers.sum() < 3:
            break
        centroid = xyz[inliers].mean(axis=0)
        normal = np.linalg.svd(xyz[inliers] - centroid, full_matrices=False)[2][-1]
        d = -float(centroid @ normal)
    signed = xyz @ normal + d
    inliers = np.abs(signed) <= distance
    above, below = int((signed > distance).sum()), int((signed < -distance).sum())
    if below > above or (above == below and normal[2] < 0):
        normal, d = -normal, -d
    return normal, d, inliers


def rotation_to_z(up: np.ndarray) -> np.ndarray:
    """The 3x3 rotation (Rodrigues) taking direction `up` onto +Z by the smallest angle.

    up == +Z gives the identity; up == -Z (no unique smallest rotation) gives a half
    turn about the X axis.
    """
    up = np.asarray(up, dtype=np.float64).reshape(-1)
    norm = np.linalg.norm(up) if up.shape == (3,) else 0.0
    if not (np.isfinite(up).all() and norm > 0):
        raise ValueError(f"up must be a finite non-zero 3-vector, got {up}")
    a = up / norm
    axis = np.cross(a, [0.0, 0.0, 1.0])
    s, c = np.linalg.norm(axis), a[2]
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    kx, ky, kz = axis / s
    k = np.array([[0, -kz, ky], [kz, 0, -kx], [-ky, kx, 0]])
    angle = math.atan2(s, c)
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def transform_cloud(cloud: PointCloud, transform: np.ndarray) -> PointCloud:
    """Apply a 4x4 rigid transform: xyz -> R xyz + t, normals -> R normals."""
    r, t = transform[:3, :3], transform[:3, 3]
    xyz = (cloud.xyz.astype(np.float64) @ r.T + t).astype(cloud.xyz.dtype)
    normals = None if cloud.normals is None else (cloud.normals @ r.T).astype(cloud.normals.dtype)
    return PointCloud(xyz=xyz, rgb=_copy(cloud.rgb), normals=normals, labels=_copy(cloud.labels))


def gravity_align(cloud: PointCloud, up: np.ndarray | None = None,
                  ground_distance: float | None = None,
                  seed: int = 0) -> tuple[PointCloud, np.ndarray]:
    """Rotate so that "up" is +Z; returns the aligned cloud and the 4x4 transform applied.

    With `up` given, that vector is rotated onto +Z and nothing is translated. Without
    it, ASSUMPTION: the largest plane in the cloud is the ground. Its RANSAC normal
    (oriented towards the side holding most off-plane points) becomes +Z and the cloud
    is shifted so the ground is z = 0. This fails when a wall, or a rebar mat larger than
    the visible ground, is the largest plane: then pass `up` (e.g. the camera's up).
    `ground_distance` is the RANSAC inlier distance in cloud units; None means 0.5% of
    the bounding-box diagonal, which works before the cloud has been scaled to metres.
    """
    cloud.validate("gravity_align input")
    transform = np.eye(4)
    if up is not None:
        transform[:3, :3] = rotation_to_z(up)
    else:
        if ground_distance is None:
            ground_distance = 0.005 * float(np.linalg.norm(np.ptp(cloud.xyz, axis=0)))
        normal, d, _ = fit_ground_plane(cloud.xyz, ground_distance, seed=seed)
        transform[:3, :3] = rotation_to_z(normal)
        transform[2, 3] = d  # plane n.x + d = 0 becomes z = -d after rotating n onto +Z
    return transform_cloud(cloud, transform), transform


# --------------------------------------------------------------------------- scale


def scale_cloud(cloud: PointCloud, factor: float) -> PointCloud:
    """Multiply coordinates by `factor` (> 0, about the origin); normals are unchanged."""
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale factor must be a positive finite number, got {factor}")
    return PointCloud(xyz=(cloud.xyz * factor).astype(cloud.xyz.dtype), rgb=_copy(cloud.rgb),
                      normals=_copy(cloud.normals), labels=_copy(cloud.labels))


def scale_from_reference(p1: np.ndarray, p2: np.ndarray, true_length: float) -> float:
    """Factor making the distance between picked points p1, p2 equal `true_length`.

    p1, p2: two points picked in the cloud (e.g. the ends of a bar or a tape measure);
    true_length: that distance measured on site, in the unit wanted (metres).
    """
    p1, p2 = (np.asarray(p, dtype=np.float64) for p in (p1, p2))
    if p1.shape != (3,) or p2.shape != (3,):
        raise ValueError(f"reference points must be 3-vectors, got shapes {p1.shape}, {p2.shape}")
    if not (np.isfinite(p1).all() and np.isfinite(p2).all()):
        raise ValueError(f"reference points must be finite, got {p1}, {p2}")
    if not (math.isfinite(true_length) and true_length > 0):
        raise ValueError(f"true length must be a positive finite number, got {true_length}")
    measured = float(np.linalg.norm(p2 - p1))
    if measured <= 1e-12 * max(1.0, float(np.abs(p1).max())):
        raise ValueError(f"reference points coincide ({p1}); pick two distinct points")
    return true_length / measured


# --------------------------------------------------------------------------- normalise


def normalise(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre on the bounding-box centre and scale into the unit sphere.

    The bounding-box centre (not the centroid) is used because photogrammetry density is
    very uneven: a centroid is pulled towards well-photographed parts, the box centre
    depends only on the extent. scale = the largest distance from the centre (1 for a
    single point), so the farthest point lands on the unit sphere. Undo: `denormalise`.
    """
    xyz = np.asarray(xyz)
    centre = (xyz.min(axis=0) + xyz.max(axis=0)) / 2.0
    scale = float(np.linalg.norm(xyz - centre, axis=1).max())
    scale = scale if scale > 0 else 1.0
    return (xyz - centre) / scale, centre, scale


def denormalise(xyz_normalised: np.ndarray, centre: np.ndarray, scale: float) -> np.ndarray:
    """Inverse of `normalise`: xyz_normalised * scale + centre."""
    return np.asarray(xyz_normalised) * scale + centre


# --------------------------------------------------------------------------- blocks, voting


@dataclass(eq=False)
class Block:
    """A model input: `indices` (num_points,) into the ORIGINAL cloud, and the xy corner
    `origin` (2,) of its square column [origin, origin + block_size) (z unbounded)."""

    indices: np.ndarray
    origin: np.ndarray


def _block_members(xy: np.ndarray, block_size: float, stride: float):
    """(block ids, their xy origins, points of each block) for every occupied grid cell."""
    low = xy.min(axis=0)
    u = xy - low
    n = 1 + np.maximum(0, np.ceil((u.max(axis=0) - block_size) / stride)).astype(np.int64)
    # half-open [i*stride, i*stride + block_size); points past the last block's far edge
    # (only rounding, by the choice of n) are clamped into it, so every point has a block
    hi = np.minimum(n - 1, np.floor(u / stride).astype(np.int64))
    lo = np.minimum(np.maximum(0, np.floor((u - block_size) / stride).astype(np.int64) + 1), hi)
    span = (hi - lo).max(axis=0) + 1
    point_ids, block_ids = [], []
    for jx in range(span[0]):
        for jy in range(span[1]):
            ij = lo + (jx, jy)
            ok = (ij <= hi).all(axis=1)
            point_ids.append(np.flatnonzero(ok))
            block_ids.append(ij[ok, 0] * n[1] + ij[ok, 1])
    points, blocks = np.concatenate(point_ids), np.concatenate(block_ids)
    order = np.lexsort((points, blocks))
    points, blocks = points[order], blocks[order]
    ids, starts = np.unique(blocks, return_index=True)
    members = np.split(points, starts[1:])
    origins = low + stride * np.stack([ids // n[1], ids % n[1]], axis=1)
    return origins, members


def tile_blocks(cloud: PointCloud, block_size: float, num_points: int,
                stride: float | None = None, seed: int = 0) -> list[Block]:
    """Cut the cloud into square XY columns of `num_points` sampled points each.

    Z must be up (run `gravity_align` first). Columns lie on a grid starting at the
    cloud's min xy with spacing `stride` (default block_size: no overlap; stride must be
    <= block_size, else points would fall in gaps); empty columns are skipped.
    Sampling: a column with fewer than num_points points takes all of them once plus
    random repeats (with replacement) up to num_points; a larger one draws num_points
    without replacement. Coverage guarantee: points left unsampled after this first pass
    are each assigned to the first column holding them, and every such column gets extra
    blocks (same origin) made of those points, num_points at a time, the last one padded
    with other points of the column (no repeats). So every point is in some block, and
    blocks are deterministic for a given seed.
    """
    stride = block_size if stride is None else stride
    if not (math.isfinite(block_size) and block_size > 0 and math.isfinite(stride)
            and 0 < stride <= block_size):
        raise ValueError(f"need 0 < stride <= block_size, got block_size={block_size}, stride={stride}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    cloud.validate("tile_blocks input")
    rng = np.random.default_rng(seed)
    origins, members = _block_members(cloud.xyz[:, :2].astype(np.float64), block_size, stride)
    blocks, covered = [], np.zeros(len(cloud), dtype=bool)
    for origin, pts in zip(origins, members):
        if len(pts) < num_points:
            idx = np.concatenate([pts, rng.choice(pts, num_points - len(pts), replace=True)])
            idx = rng.permutation(idx)
        else:
            idx = rng.choice(pts, num_points, replace=False)
        covered[idx] = True
        blocks.append(Block(indices=idx.astype(np.int64), origin=origin.copy()))
    if covered.all():
        return blocks
    owner = np.full(len(cloud), -1, dtype=np.int64)  # first column holding each point
    for b in range(len(members) - 1, -1, -1):
        owner[members[b]] = b
    for b in np.unique(owner[~covered]):
        todo = rng.permutation(np.flatnonzero(~covered & (owner == b)))
        for start in range(0, len(todo), num_points):
            chunk = todo[start:start + num_points]
            rest = np.setdiff1d(members[b], chunk, assume_unique=True)
            pad = rng.choice(rest, num_points - len(chunk), replace=False)
            idx = rng.permutation(np.concatenate([chunk, pad]))
            blocks.append(Block(indices=idx.astype(np.int64), origin=origins[b].copy()))
    return blocks


def add_votes(scores: np.ndarray, blocks: list[Block], block_logits: list[np.ndarray]) -> None:
    """Add each block's softmax probabilities to `scores` (N, K) in place (see `vote`);
    lets a caller stream blocks through a model a batch at a time."""
    if len(blocks) != len(block_logits):
        raise ValueError(f"{len(blocks)} blocks but {len(block_logits)} logit arrays")
    n, k = scores.shape
    for i, (block, logits) in enumerate(zip(blocks, block_logits)):
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != (len(block.indices), k):
            raise ValueError(f"block {i}: logits shape {logits.shape}, expected ({len(block.indices)}, {k})")
        if block.indices.min() < 0 or block.indices.max() >= n:
            raise ValueError(f"block {i}: indices outside [0, {n})")
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        np.add.at(scores, block.indices, e / e.sum(axis=1, keepdims=True))


def vote(num_points_total: int, blocks: list[Block],
         block_logits: list[np.ndarray]) -> np.ndarray:
    """Accumulate block predictions onto every original point: (N, K) summed probabilities.

    Each block's logits (num_points, K) go through a softmax and the probabilities are
    added to the points they came from (every occurrence counts, also repeats). Summing
    probabilities rather than logits keeps each vote bounded, so one overconfident block
    cannot outvote several others. argmax over K gives the label. Points in no block keep
    all-zero scores and a RuntimeWarning reports them (`tile_blocks` covers every point).
    """
    if not blocks:
        raise ValueError("no blocks to vote with")
    k = np.shape(block_logits[0])[-1] if len(block_logits) else 0
    scores = np.zeros((num_points_total, k))
    add_votes(scores, blocks, block_logits)
    unseen = ~scores.any(axis=1)
    if unseen.any():
        warnings.warn(f"{int(unseen.sum())} of {num_points_total} points are in no block and "
                      f"have no prediction (first: point {int(np.argmax(unseen))})",
                      RuntimeWarning, stacklevel=2)
    return scores
