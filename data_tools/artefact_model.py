"""Fast, parametric model of what SfM + MVS does to a scene (the ``fast`` target mode).

Instead of rendering photos and running a dense matcher (``data_tools.photogrammetry``,
the ``mvs`` mode), ``fast_reconstruct`` raycasts the labelled mesh from the same cameras
and applies each artefact of image-based clouds as an explicit, fittable model:

1. **Visibility** (exact): every camera casts rays on a pixel grid subsampled by
   ``pixel_stride`` (scaled with the image width when ``stride_ref_width_px`` > 0, so a
   preset samples a scene at the same density whatever the image size); the first hit is
   a candidate, so back faces and occluded surfaces are never reconstructed. Because each view contributes one point per grid pixel,
   **density follows viewing distance** by itself: points per m^2 ~ image count x
   (f / (stride z))^2, i.e. ~ 1/z^2 per view, then capped by the voxel merge.
2. **Multi-view support**: a hit survives only where at least ``min_views - 1`` of its
   ``neighbour_views`` nearest other cameras see the same surface - it is projected into
   them and compared with their depth buffers from the same raycast (2x2 grid pixels,
   tolerance ``consistency_tol_m + consistency_tol_rel * z``). Grazing views
   (|cos incidence| < ``min_incidence_cos``) and depths beyond ``max_depth_m`` fail too.
3. **Bar dropout**: a visible bar point survives with probability
   ``keep_main|keep_tie x sigmoid((w_px - width50_px) / width_scale_px)``, w_px = 2 r f / z
   the bar's projected width in that view's full-resolution pixels (thin in the image ->
   lost). The uniform draw is shared by all views of one ``dropout_patch_m`` piece of one
   bar, so whole bar pieces go missing, as in MVS, rather than salt-and-pepper points.
4. **Holes** on background surfaces: patches (``hole_patch_m``) removed with probability
   ``keep_background`` aside, ``hole_rate x (1 - texturedness(material))``, texturedness
   read from the renderer's ``Appearance`` (texture strength / noise of each material).
5. **Depth noise** along each view's ray: sigma_z = ``disparity_noise_px`` z^2 / (f b)
   + ``depth_noise_floor_m`` (stereo: depth error grows with z^2 / (focal x baseline)),
   f in pixels of the full image, b = ``baseline_m``.
6. **Thickening** of bars: bar points move outward along the (smooth) surface normal by
   ``thicken_m + thicken_radius_frac r + thicken_px z / f`` + N(0, ``thicken_spread_m``).
   The pixel term models matching-window foreground fattening, which grows with depth.
7. **Blobs** where two bars come within ``blob_gap_m``: with probability ``blob_prob`` a
   bar point there spawns a point between it and the other bar (+ ``blob_size_m`` jitter):
   the web that dense matching spans across crossings and close pairs.
8. **Floating outliers** at silhouettes (grid pixels next to a depth jump): a fraction
   ``outlier_fraction`` of each view's points is added there as mixed-depth pixels, at a
   depth between foreground and background (at most ``outlier_range_m`` behind the edge)
   + N(0, ``outlier_spread_m``); label 255.
9. **Colour**: the hit triangle's material base colour (``LabeledMesh.face_colors``) times
   a per-view gain plus N(0, ``color_noise``); outliers take a foreground/background mix.
10. **Merge**: all views' points go on a ``voxel_m`` grid; one random point per voxel.

The output ``PointCloud`` is target-like: xyz + rgb, **no labels**. The true per-point
source labels (the hit triangle's 0/1/2, or 255 for floating outliers) are returned
separately, for evaluation only.

``ARTEFACT_PRESETS`` ("mild", "typical", "harsh", by increasing severity): typical and
harsh are fitted to the mvs mode's statistics - CALIBRATED (``CALIBRATED_PRESETS``): what
uses them carries target-domain calibration - by experiments/calibrate_fast.py (table and
held-out check in experiments/results/rebar3d/fast_calibration.md); mild keeps hand-set values
(its fit was not better on held-out scenes, see there). Parameters drawn from committed
prior ranges instead, without calibration: ``data_tools.artefact_ranges``. Every field of
``ArtefactParams`` is a plain float/int, so ``dataclasses.replace`` and ``asdict`` make them
an optimiser's vector.
``pixel_stride`` is a sampling (speed) knob, not an artefact: mvs yields up to one point
per full-resolution pixel, and a preset's stride is the coarsest grid that still gives
mvs's completeness at the capture presets' 960x720 images (harsh: far, few views, so
stride 1); it scales with the image width (``stride_ref_width_px``), so at small images
every preset samples at stride 1 and the severity order comes from the artefacts alone.
Units: metres, pixels of the full-resolution image, probabilities in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from data_tools.io import PointCloud
from data_tools.rebar.mesh import LabeledMesh
from data_tools.render import Appearance, Camera, RaycastScene, rays
from data_tools.voxel_keys import group_cells

__all__ = ["ARTEFACT_PRESETS", "CALIBRATED_PRESETS", "FITTED_FIELDS", "IGNORE", "ArtefactParams",
           "bar_radii", "effective_stride", "fast_reconstruct", "material_texturedness"]

IGNORE = 255  # source label of floating outliers: not on any surface


@dataclass(frozen=True)
class ArtefactParams:
    """Every knob of the fast artefact model; all fittable (see the module docstring)."""

    # sampling and visibility
    pixel_stride: int = 3  # cast every k-th pixel in x and y (speed vs density)
    stride_ref_width_px: int = 0  # > 0: pixel_stride holds for images this wide and scales
    # with the width (k = max(1, round(pixel_stride x width / ref))); 0: k = pixel_stride
    min_views: int = 2  # views that must see a point (MVS needs >= 2)
    neighbour_views: int = 8  # nearest other cameras checked for support
    consistency_tol_m: float = 0.005  # depth agreement tolerance, absolute part (m)
    consistency_tol_rel: float = 0.01  # ... plus this fraction of the depth
    min_incidence_cos: float = 0.1  # |cos| between ray and normal below this: not matched
    max_depth_m: float = 10.0  # depth range of the matcher (m)
    # completeness
    keep_main: float = 0.9  # survival of a visible, wide-in-image main-bar point
    keep_tie: float = 0.85  # same for ties
    keep_background: float = 0.97  # same for background surfaces (before holes)
    width50_px: float = 3.0  # projected bar width (full-res px) at which half is lost
    width_scale_px: float = 1.0  # softness of that transition (px)
    dropout_patch_m: float = 0.05  # bar pieces lost together (m)
    hole_rate: float = 0.3  # fraction of a textureless background surface in holes
    hole_patch_m: float = 0.15  # hole size (m)
    # geometry errors
    baseline_m: float = 0.10  # stereo baseline b in sigma_z = k z^2 / (f b) (m)
    disparity_noise_px: float = 0.3  # k: disparity noise (px)
    depth_noise_floor_m: float = 0.001  # added to sigma_z (m)
    thicken_m: float = 0.002  # outward offset of bar points (m)
    thicken_radius_frac: float = 0.0  # ... plus this fraction of the bar radius
    thicken_px: float = 0.5  # ... plus this many pixel footprints (z / f)
    thicken_spread_m: float = 0.001  # std of the offset (m)
    blob_prob: float = 0.1  # chance a bar point near another bar spawns a blob point
    blob_gap_m: float = 0.03  # bars closer than this form blobs (m)
    blob_size_m: float = 0.004  # std of the blob points' jitter (m)
    outlier_fraction: float = 0.01  # floating points added, fraction of each view's points
    outlier_spread_m: float = 0.02  # std of the outliers' offset along the ray (m)
    outlier_range_m: float = 0.3  # mixed depths reach at most this far behind the edge (m)
    silhouette_jump_rel: float = 0.05  # depth jump (fraction of z) marking a silhouette
    # colour and merge
    color_noise: float = 0.03  # std of additive colour noise (0..1 scale)
    color_gain_std: float = 0.05  # per-view per-channel gain spread
    voxel_m: float = 0.003  # merge grid (m)

    def __post_init__(self) -> None:
        if self.pixel_stride < 1 or self.min_views < 1 or self.neighbour_views < 0:
            raise ValueError("need pixel_stride >= 1, min_views >= 1, neighbour_views >= 0")
        for name in ("keep_main", "keep_tie", "keep_background", "hole_rate", "blob_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        for f in fields(self):
            if f.name not in ("thicken_m",) and getattr(self, f.name) < 0:
                raise ValueError(f"{f.name} must be >= 0, got {getattr(self, f.name)}")
        if self.voxel_m <= 0 or self.width_scale_px <= 0 or self.baseline_m <= 0:
            raise ValueError("voxel_m, width_scale_px and baseline_m must be > 0")


# typical and harsh: fitted to the mvs mode by experiments/calibrate_fast.py (values rounded
# to 4 significant digits; commands, fit and held-out scenes and the side-by-side table in
# experiments/results/rebar3d/fast_calibration.md / .json). Fitted: keep_background/main/tie,
# disparity_noise_px, thicken_m, outlier_fraction, width50_px, pixel_stride; baseline_m and
# voxel_m are the mvs preset's; the rest are the earlier hand-set values.
# mild: hand-set values kept (only stride_ref_width_px added, which changes nothing at
# 960x720): its fit did not bring main-bar thickening closer to mvs on the held-out scenes
# (+48% fitted vs +40% hand-set; see the status note of the results file).
# pixel_stride is the sampling density at 960x720 images (see the module docstring).
# Severity (tests/test_artefact_model.py): the order mvs shows - median error, thickening
# and outliers grow from mild to harsh; harsh is the least complete.
ARTEFACT_PRESETS: dict[str, ArtefactParams] = {
    "mild": ArtefactParams(keep_main=0.95, keep_tie=0.92, keep_background=0.99, width50_px=2.0,
                           hole_rate=0.15, disparity_noise_px=0.2, thicken_m=0.001,
                           thicken_px=0.3, blob_prob=0.05, outlier_fraction=0.005,
                           pixel_stride=3, stride_ref_width_px=960),
    "typical": ArtefactParams(keep_main=0.8903, keep_tie=1.0, keep_background=1.0,
                              width50_px=2.811, disparity_noise_px=0.3146, thicken_m=0.003242,
                              outlier_fraction=0.006588, baseline_m=0.10, voxel_m=0.004,
                              pixel_stride=2, stride_ref_width_px=960),
    "harsh": ArtefactParams(keep_main=0.7656, keep_tie=0.6847, keep_background=0.8836,
                            width50_px=4.5, hole_rate=0.5, disparity_noise_px=0.6061,
                            depth_noise_floor_m=0.002, thicken_m=0.004068, thicken_px=1.0,
                            thicken_spread_m=0.002, blob_prob=0.25, blob_gap_m=0.05,
                            outlier_fraction=0.02585, outlier_spread_m=0.05, outlier_range_m=0.6,
                            baseline_m=0.08, voxel_m=0.005, pixel_stride=1,
                            stride_ref_width_px=960),
}

# The presets whose values were FITTED to the mvs (target) statistics, and the fields the fit
# could move (harsh's width50_px stayed at its start value): anything built from these presets
# is target-calibrated and is marked so (simulated source manifests, config, tables). mild is
# hand-set (its fit was not adopted); simulation without target calibration draws from
# committed ranges instead (data_tools.artefact_ranges).
CALIBRATED_PRESETS: tuple[str, ...] = ("typical", "harsh")
FITTED_FIELDS: tuple[str, ...] = ("keep_background", "keep_main", "keep_tie", "disparity_noise_px",
                                  "thicken_m", "outlier_fraction", "width50_px", "pixel_stride")


# --------------------------------------------------------------------------- helpers

def material_texturedness(appearance: Appearance | None, names) -> np.ndarray:
    """Per material in `names`: 0 (flat, holes likely) .. 1 (strong texture), from the
    renderer's photo-texture strength and solid-noise amplitude of that material."""
    app = appearance or Appearance()
    out = []
    for n in names:
        tex = app.textures.get(n)
        if tex is None:
            out.append(0.0)
            continue
        photo = tex.strength if tex.source != "none" else 0.0
        out.append(min(1.0, max(photo, 2.0 * tex.noise) * app.texture_strength))
    return np.asarray(out, float)


def bar_radii(mesh: LabeledMesh) -> np.ndarray:
    """Per object id: the radius of a closed tube (2 x volume / lateral area), 0 for
    background objects. Exact for a cylinder up to its caps (error ~ r / length)."""
    n_obj = int(mesh.object_ids.max()) + 1 if len(mesh.object_ids) else 0
    v = mesh.vertices[mesh.triangles]
    c = v.mean(axis=(0, 1))  # a reference point near the mesh keeps the sum well conditioned
    v = v - c
    vol = np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])) / 6.0
    vol_obj = np.bincount(mesh.object_ids, vol, n_obj)
    area_obj = np.bincount(mesh.object_ids, mesh.areas(), n_obj)
    bar = np.bincount(mesh.object_ids, np.asarray(mesh.labels) > 0, n_obj) > 0
    r = np.where(bar & (area_obj > 0), 2 * np.abs(vol_obj) / np.maximum(area_obj, 1e-30), 0.0)
    return r


def _patch_uniform(points: np.ndarray, obj: np.ndarray, size: float,
                   rng: np.random.Generator) -> np.ndarray:
    """One U(0, 1) per (object, cell of `size` m, randomly offset grid), shared by all
    points in it."""
    if len(points) == 0:
        return np.zeros(0)
    cell = np.floor((points + rng.uniform(0, size, 3)) / size).astype(np.int64)
    cell -= cell.min(0)
    key = ((obj.astype(np.int64) * (1 << 14) + cell[:, 0]) * (1 << 14) + cell[:, 1]) * (1 << 14) + cell[:, 2]
    _, inv = np.unique(key, return_inverse=True)
    return rng.random(inv.max() + 1)[inv]


def effective_stride(params: ArtefactParams, width: int) -> int:
    """The pixel stride used on images `width` pixels wide (see ``stride_ref_width_px``)."""
    if params.stride_ref_width_px <= 0:
        return params.pixel_stride
    return max(1, round(params.pixel_stride * width / params.stride_ref_width_px))


def _grid_camera(cam: Camera, k: int) -> Camera:
    """Every k-th pixel of `cam`: grid pixel (u', v') is full-resolution pixel (k u', k v')."""
    w, h = (cam.width + k - 1) // k, (cam.height + k - 1) // k
    return Camera(w, h, cam.fx / k, cam.fy / k, cam.cx / k, cam.cy / k, cam.world_from_camera)


@dataclass
class _View:
    grid: Camera
    ray: np.ndarray  # (H', W', 6)
    depth: np.ndarray  # (H', W') float32, inf where no hit
    prim: np.ndarray  # (H', W') int64, -1 where no hit


def _supported(p: np.ndarray, z_self: np.ndarray, others: list[_View], params: ArtefactParams
               ) -> np.ndarray:
    """How many of `others` see the world points p at their own depth (2x2 grid pixels)."""
    count = np.zeros(len(p), np.int32)
    for o in others:
        uv, z = o.grid.project(p)
        h, w = o.depth.shape
        tol = params.consistency_tol_m + params.consistency_tol_rel * z
        agree = np.zeros(len(p), bool)
        u0, v0 = np.floor(uv[:, 0]).astype(np.int64), np.floor(uv[:, 1]).astype(np.int64)
        for du in (0, 1):
            for dv in (0, 1):
                u, v = u0 + du, v0 + dv
                inside = (z > 0) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
                d = np.full(len(p), np.inf, np.float32)
                d[inside] = o.depth[v[inside], u[inside]]
                agree |= np.abs(d - z) < tol
        count += agree
    return count


def _silhouette(depth: np.ndarray, rel: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid pixels with a hit next to a depth jump > rel x depth; and the far depth there
    (inf where the far side is sky)."""
    pad = np.pad(depth, 1, constant_values=np.inf)
    nb = np.stack([pad[:-2, 1:-1], pad[2:, 1:-1], pad[1:-1, :-2], pad[1:-1, 2:]])
    far = nb.max(0)
    with np.errstate(invalid="ignore"):  # inf - inf where both are sky: not a silhouette
        sil = np.isfinite(depth) & (far - depth > rel * depth)
    return sil, far


# --------------------------------------------------------------------------- model

def fast_reconstruct(mesh: LabeledMesh, cameras: list[Camera], params: ArtefactParams,
                     rng: np.random.Generator, appearance: Appearance | None = None,
                     scene_cache: RaycastScene | None = None) -> tuple[PointCloud, np.ndarray]:
    """Target-like cloud of `mesh` as SfM + MVS from `cameras` would give it.

    Returns ``(cloud, source_labels)``: the cloud has xyz (float64) and rgb, labels None;
    ``source_labels`` (N,) int64 in {0, 1, 2, 255} is for evaluation only. `appearance`
    (default ``Appearance()``) sets each material's texturedness for the hole model.
    Same inputs and rng state, same cloud.
    """
    p_ = params
    rs = scene_cache if scene_cache is not None else RaycastScene.from_mesh(mesh)
    labels_tri = np.asarray(mesh.labels, np.int64)
    radius_obj = bar_radii(mesh)
    texture = material_texturedness(appearance, mesh.material_names)
    colors_tri = mesh.face_colors

    # 1. one raycast per camera on the subsampled grid: candidates and depth buffers
    views = []
    for cam in cameras:
        g = _grid_camera(cam, effective_stride(p_, cam.width))
        r = rays(g)
        hit = rs.cast(r.reshape(-1, 6))
        t = hit["t_hit"].reshape(g.height, g.width).astype(np.float32)
        prim = hit["primitive_ids"].reshape(g.height, g.width).astype(np.int64)
        prim[~np.isfinite(t)] = -1
        views.append(_View(g, r, t, prim))
    centres = np.array([c.center for c in cameras]) if cameras else np.zeros((0, 3))

    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("xyz", "prim", "view", "z", "n", "d", "f")}
    outliers: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # xyz, rgb, view
    for i, (cam, v) in enumerate(zip(cameras, views)):
        ok = np.isfinite(v.depth) & (v.depth <= p_.max_depth_m)
        iy, ix = np.nonzero(ok)
        if len(iy) == 0:
            continue
        ray = v.ray[iy, ix].astype(np.float64)
        z = v.depth[iy, ix].astype(np.float64)
        prim = v.prim[iy, ix]
        xyz = ray[:, :3] + z[:, None] * ray[:, 3:]
        d_unit = ray[:, 3:] / np.linalg.norm(ray[:, 3:], axis=1, keepdims=True)
        n = _smooth_normals(rs, prim, xyz)
        cos = np.abs((n * d_unit).sum(1))
        n[(n * d_unit).sum(1) > 0] *= -1  # face the viewer (open meshes, planes)
        keep = cos >= p_.min_incidence_cos
        # 2. multi-view support
        order = np.argsort(np.linalg.norm(centres - centres[i], axis=1))
        others = [views[j] for j in order if j != i][:p_.neighbour_views]
        keep &= _supported(xyz, z, others, p_) >= p_.min_views - 1
        for key, val in (("xyz", xyz), ("prim", prim), ("z", z), ("n", n), ("d", ray[:, 3:])):
            cols[key].append(val[keep])
        cols["view"].append(np.full(keep.sum(), i, np.int32))
        cols["f"].append(np.full(keep.sum(), cam.fx, np.float64))
        # 8. floating outliers at this view's silhouettes (mixed-depth pixels)
        n_out = rng.binomial(int(keep.sum()), p_.outlier_fraction) if p_.outlier_fraction > 0 else 0
        sil, far = _silhouette(v.depth, p_.silhouette_jump_rel)
        sy, sx = np.nonzero(sil & ok)
        if n_out and len(sy):
            pick = rng.integers(0, len(sy), n_out)
            sy, sx = sy[pick], sx[pick]
            fg = v.depth[sy, sx].astype(np.float64)
            bg = np.minimum(far[sy, sx].astype(np.float64), fg + p_.outlier_range_m)  # sky: inf
            zo = fg + rng.random(n_out) * (bg - fg) + rng.normal(0, p_.outlier_spread_m, n_out)
            ro = v.ray[sy, sx].astype(np.float64)
            mix = rng.random((n_out, 1))
            c_fg = colors_tri[v.prim[sy, sx]]
            outliers.append((ro[:, :3] + zo[:, None] * ro[:, 3:],
                             mix * c_fg + (1 - mix) * np.array([0.6, 0.65, 0.7]),
                             np.full(n_out, i, np.int32)))

    if not cols["xyz"] or sum(len(a) for a in cols["xyz"]) == 0:
        return PointCloud(np.zeros((0, 3)), np.zeros((0, 3), np.float32)), np.zeros(0, np.int64)
    xyz, prim, view, z, n, d_ray, fpx = (np.concatenate(cols[k]) for k in
                                          ("xyz", "prim", "view", "z", "n", "d", "f"))
    obj = mesh.object_ids[prim]
    lab = labels_tri[prim]
    r_bar = radius_obj[obj]
    is_bar = lab > 0

    # 3. bar dropout (width in image) and 4. holes on background
    keep_class = np.array([p_.keep_background, p_.keep_main, p_.keep_tie])[np.clip(lab, 0, 2)]
    width_px = 2 * r_bar * fpx / z
    p_keep = keep_class * np.where(is_bar, _sigmoid((width_px - p_.width50_px) / p_.width_scale_px), 1.0)
    survive = _patch_uniform(xyz, obj, p_.dropout_patch_m, rng) < p_keep
    hole_p = p_.hole_rate * (1 - texture[mesh.material_ids[prim]])
    survive &= is_bar | (_patch_uniform(xyz, obj, p_.hole_patch_m, rng) >= hole_p)
    xyz, prim, view, z, n, d_ray, fpx, obj, lab, r_bar, is_bar = (
        a[survive] for a in (xyz, prim, view, z, n, d_ray, fpx, obj, lab, r_bar, is_bar))

    # 7. blobs between close bars (on the noise-free geometry, before offsets)
    blob_xyz, blob_src = _blobs(xyz, obj, is_bar, p_, rng)

    # 5. depth noise along the ray (d_ray has camera-z = 1: a depth error e moves the point
    # by e * d_ray); 6. thickening along the normal
    sigma = p_.disparity_noise_px * z ** 2 / (fpx * p_.baseline_m) + p_.depth_noise_floor_m
    xyz = xyz + (rng.standard_normal(len(z)) * sigma)[:, None] * d_ray
    off = (p_.thicken_m + p_.thicken_radius_frac * r_bar + p_.thicken_px * z / fpx
           + rng.normal(0, 1, len(z)) * p_.thicken_spread_m)
    xyz = xyz + (np.where(is_bar, off, 0.0))[:, None] * n

    # 9. colour: material colour x per-view gain + noise
    gain = 1 + p_.color_gain_std * rng.standard_normal((len(cameras), 3))
    rgb = colors_tri[prim] * gain[view]
    all_xyz = [xyz, blob_xyz, *(o[0] for o in outliers)]
    all_rgb = [rgb, colors_tri[prim[blob_src]] * gain[view[blob_src]],
               *(o[1] * gain[o[2]] for o in outliers)]
    all_lab = [lab, lab[blob_src], *(np.full(len(o[0]), IGNORE, np.int64) for o in outliers)]
    xyz, rgb, lab = np.concatenate(all_xyz), np.concatenate(all_rgb), np.concatenate(all_lab)
    rgb = np.clip(rgb + p_.color_noise * rng.standard_normal(rgb.shape), 0, 1).astype(np.float32)

    # 10. voxel merge: one random point per voxel
    perm = rng.permutation(len(xyz))
    vox = np.floor(xyz[perm] / p_.voxel_m).astype(np.int64)
    first, _, _ = group_cells(vox)
    idx = np.sort(perm[first])
    return PointCloud(xyz[idx], rgb[idx]), lab[idx]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * x))


def _smooth_normals(rs: RaycastScene, prim: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Face normals; on bars (smooth tubes) the vertex normals interpolated at p."""
    n = rs.face_normals[prim].astype(np.float64)
    sm = rs.smooth[prim]
    if sm.any():
        tri = rs.mesh.triangles[prim[sm]]
        a, b, c = (rs.mesh.vertices[tri[:, k]] for k in range(3))
        # barycentrics of p in its triangle
        v0, v1, v2 = b - a, c - a, p[sm] - a
        d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
        d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
        den = np.maximum(d00 * d11 - d01 ** 2, 1e-30)
        u, w = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
        vn = rs.vertex_normals
        ns = ((1 - u - w)[:, None] * vn[tri[:, 0]] + u[:, None] * vn[tri[:, 1]]
              + w[:, None] * vn[tri[:, 2]])
        n[sm] = ns / np.maximum(np.linalg.norm(ns, axis=1, keepdims=True), 1e-12)
    return n


def _blobs(xyz: np.ndarray, obj: np.ndarray, is_bar: np.ndarray, p_: ArtefactParams,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points spanning the gap between two different bars closer than blob_gap_m."""
    empty = np.zeros((0, 3)), np.zeros(0, np.int64)
    bars = np.flatnonzero(is_bar)
    if p_.blob_prob <= 0 or len(bars) < 2:
        return empty
    from scipy.spatial import cKDTree

    src = bars[rng.random(len(bars)) < p_.blob_prob]  # candidates first: cheap queries
    if len(src) == 0:
        return empty
    tree = cKDTree(xyz[bars])
    # nearest point on ANOTHER bar: query a few neighbours, keep the first foreign one
    k = min(16, len(bars))
    dist, nb = tree.query(xyz[src], k=k, distance_upper_bound=p_.blob_gap_m)
    dist, nb = np.atleast_2d(dist), np.atleast_2d(nb)
    valid = np.isfinite(dist)
    foreign = np.zeros_like(valid)
    foreign[valid] = obj[bars[nb[valid]]] != np.repeat(obj[src], k).reshape(-1, k)[valid]
    has = foreign.any(1)
    if not has.any():
        return empty
    j = foreign.argmax(1)[has]
    a, b = xyz[src[has]], xyz[bars[nb[has, j]]]
    t = rng.random((len(a), 1))
    pts = a + t * (b - a) + rng.normal(0, p_.blob_size_m, a.shape)
    return pts, src[has]
