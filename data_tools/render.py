"""Raycasting renderer for labelled scene meshes: colour, depth, normal, object id, label.

One concept: a pinhole ``Camera`` casts one ray per pixel into Open3D's Embree
``RaycastingScene`` (CPU); the hit triangle gives geometry and labels, and a shading step
turns it into a phone-like photo good enough for dense stereo matching:

* albedo = ``MATERIALS`` base colour (the one colour table, shared with the source clouds)
  x a real photo texture from scikit-image (triplanar-mapped on world coordinates)
  x procedural multi-octave value noise (solid, so it never tiles); rust adds dark pits;
* light = Lambert sun (with cast shadows from a second, occlusion-only ray cast) +
  hemispherical ambient + a small roughness-driven specular term;
* sensor = per-channel gain, Gaussian noise, optional vignetting.

Texture is a function of the world point and ``Appearance.texture_seed`` only, never of
the per-image ``rng``: every view of one scene must see the same surface, or stereo
matching between views would be meaningless. The ``rng`` only drives sensor noise.

Conventions: metres, z up; cameras follow OpenCV (x right, y down, z forward) with
``world_from_camera`` poses and integer pixel centres (``cx = (W - 1) / 2`` is the middle).
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np

from data_tools.rebar.mesh import LabeledMesh
from data_tools.rebar.model import MATERIAL_NAMES, MATERIALS

__all__ = ["PRESETS", "Appearance", "Camera", "CameraPath", "CaptureSettings", "MaterialTexture",
           "RaycastScene", "Render", "camera_path", "extend_ground", "fbm", "look_at", "rays",
           "render", "stereo_partner", "sun_direction", "value_noise"]

NO_LABEL = 255  # label where a ray hits nothing (the project's "ignore")


# --------------------------------------------------------------------------- cameras

@dataclass
class Camera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    world_from_camera: np.ndarray = field(default_factory=lambda: np.eye(4))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], float)

    @property
    def center(self) -> np.ndarray:
        return self.world_from_camera[:3, 3].copy()

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) and depth z (N,)."""
        cam_from_world = np.linalg.inv(self.world_from_camera)
        pc = points @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        z = pc[:, 2]
        uv = np.stack([self.fx * pc[:, 0] / z + self.cx, self.fy * pc[:, 1] / z + self.cy], 1)
        return uv, z


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """``world_from_camera`` 4x4 for an OpenCV camera at `eye` looking at `target`."""
    eye, target, up = (np.asarray(a, float) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along `up`: any right vector will do
        x = np.cross(z, (0.0, 1.0, 0.0))
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], 1)  # y = z x x points down in the image
    pose[:3, 3] = eye
    return pose


def rays(camera: Camera) -> np.ndarray:
    """(H, W, 6) float32 rays for ``cast_rays``: origin + direction with camera-z = 1.

    Directions are deliberately not normalised: Embree's ``t_hit`` is then the depth along
    the optical axis, exactly what stereo and depth maps use.
    """
    u = (np.arange(camera.width) - camera.cx) / camera.fx
    v = (np.arange(camera.height) - camera.cy) / camera.fy
    d_cam = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), -1)
    rot, origin = camera.world_from_camera[:3, :3], camera.world_from_camera[:3, 3]
    out = np.empty((camera.height, camera.width, 6), np.float32)
    out[..., :3] = origin
    out[..., 3:] = d_cam @ rot.T
    return out


def stereo_partner(camera: Camera, baseline: float) -> Camera:
    """The right-hand camera of a rectified pair: same intrinsics and rotation, shifted by
    `baseline` metres along the camera's own x axis, so epipolar lines are image rows and
    disparity = fx * baseline / depth."""
    pose = camera.world_from_camera.copy()
    pose[:3, 3] += baseline * pose[:3, 0]
    return replace(camera, world_from_camera=pose)


# --------------------------------------------------------------------------- scene

@dataclass(eq=False)
class RaycastScene:
    """An Embree scene built once per mesh and reused for every view and shadow ray."""

    scene: object  # open3d.t.geometry.RaycastingScene
    mesh: LabeledMesh
    face_normals: np.ndarray  # (T, 3) float32
    vertex_normals: np.ndarray  # (V, 3) float32, area-weighted; used on bars only
    smooth: np.ndarray  # (T,) bool: interpolate normals (tubes), keep hard edges elsewhere

    @classmethod
    def from_mesh(cls, mesh: LabeledMesh) -> RaycastScene:
        import open3d as o3d  # heavy import only when something is rendered

        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)),
                            o3d.core.Tensor(mesh.triangles.astype(np.uint32)))
        v = mesh.vertices[mesh.triangles]
        cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])  # length = 2 x area
        vn = np.zeros_like(mesh.vertices)
        for k in range(3):
            np.add.at(vn, mesh.triangles[:, k], cross)
        fn = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-30)
        vn /= np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)
        return cls(scene, mesh, fn.astype(np.float32), vn.astype(np.float32),
                   np.asarray(mesh.labels) > 0)

    def cast(self, ray_array: np.ndarray) -> dict[str, np.ndarray]:
        ans = self.scene.cast_rays(ray_array)
        return {k: ans[k].numpy() for k in ("t_hit", "primitive_ids", "primitive_uvs")}

    def occluded(self, ray_array: np.ndarray, tnear: float = 0.0) -> np.ndarray:
        import open3d as o3d

        return self.scene.test_occlusions(o3d.core.Tensor(ray_array), tnear=tnear).numpy()


def extend_ground(mesh: LabeledMesh, margin: float = 25.0, material: str = "soil",
                  depth: float = 0.003) -> LabeledMesh:
    """Add a site ground quad reaching `margin` metres past the mesh, `depth` below z=min.

    Scenes model only a small ground patch; a photo taken from 2 m away would otherwise
    show sky below the horizon. The quad lies just under the patch (the patch wins where
    both exist), is its own object (id = max + 1) and background (label 0).
    """
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    z = lo[2] - depth
    x0, y0, x1, y1 = lo[0] - margin, lo[1] - margin, hi[0] + margin, hi[1] + margin
    quad = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    tris = np.array([[0, 1, 2], [0, 2, 3]]) + len(mesh.vertices)
    mat = list(mesh.material_names).index(material)
    oid = int(mesh.object_ids.max()) + 1 if len(mesh.object_ids) else 0
    return LabeledMesh(np.concatenate([mesh.vertices, quad]),
                       np.concatenate([mesh.triangles, tris]),
                       np.concatenate([mesh.object_ids, np.full(2, oid, np.int32)]),
                       np.concatenate([mesh.labels, np.zeros(2, mesh.labels.dtype)]),
                       np.concatenate([mesh.material_ids, np.full(2, mat, np.int32)]),
                       mesh.material_names)


# --------------------------------------------------------------------------- noise

_PRIMES = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D)


def _mix01(h: np.ndarray) -> np.ndarray:
    """Murmur3 finaliser on uint64 (in place) -> uniform [0, 1) float32."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return (h >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def value_noise(x: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] at points (N, d), lattice spacing 1; deterministic."""
    cell = np.floor(x)
    f = (x - cell).astype(np.float32)
    f = f * f * (3 - 2 * f)  # smoothstep: no visible lattice creases
    cell = cell.astype(np.int64).astype(np.uint64)  # negative cells wrap: fine for hashing
    # Hash of a lattice corner = mix(seed + sum_k cell_k * prime_k); the per-axis products
    # for the lower and upper corner are computed once, not once per corner.
    terms = [(cell[:, k] * np.uint64(_PRIMES[k]), (cell[:, k] + np.uint64(1)) * np.uint64(_PRIMES[k]))
             for k in range(x.shape[1])]
    base = np.uint64((seed * 0x27D4EB2F165667C5 + 1) & 0xFFFFFFFFFFFFFFFF)
    out = np.zeros(len(x), np.float32)
    for corner in itertools.product((0, 1), repeat=x.shape[1]):
        h = terms[0][corner[0]] + base
        w = f[:, 0] if corner[0] else 1 - f[:, 0]
        for k in range(1, x.shape[1]):
            h += terms[k][corner[k]]
            w = w * (f[:, k] if corner[k] else 1 - f[:, k])
        out += w * _mix01(h)
    return out


def fbm(x: np.ndarray, seed: int, octaves: int = 4, gain: float = 0.5) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: frequency doubles, amplitude x `gain` per octave."""
    out = np.zeros(len(x), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        out += amp * value_noise(x * 2.0 ** o, seed + 7919 * o)
        total += amp
        amp *= gain
    return out / total


# --------------------------------------------------------------------------- settings

@dataclass
class MaterialTexture:
    """How one material looks beyond its base colour."""

    source: str = "none"  # brick | gravel | grass | wood | photo:<skimage name> | none
    px_per_m: float = 800.0  # texture pixels per metre of surface
    strength: float = 1.0  # 0 flat .. 1 the photo's full contrast (mean kept at 1)
    noise: float = 0.25  # amplitude of the solid value noise (breaks tiling up)
    noise_scale: float = 0.05  # metres: size of the noise's finest octave x 8
    pits: float = 0.0  # 0..1 darkness of rust pits (steel only)


_DEFAULT_TEXTURES = {
    "rusty_steel": MaterialTexture("none", noise=0.45, noise_scale=0.04, pits=0.6),
    "steel": MaterialTexture("none", noise=0.25, noise_scale=0.04, pits=0.3),
    "tie_wire": MaterialTexture("none", noise=0.3, noise_scale=0.02),
    "concrete": MaterialTexture("gravel", px_per_m=2500.0, strength=0.35, noise=0.2,
                                noise_scale=0.3),
    "timber_formwork": MaterialTexture("wood", px_per_m=700.0, strength=0.8, noise=0.2,
                                       noise_scale=0.3),
    "plywood": MaterialTexture("wood", px_per_m=1200.0, strength=0.5, noise=0.15,
                               noise_scale=0.4),
    "soil": MaterialTexture("grass", px_per_m=700.0, strength=0.9, noise=0.35, noise_scale=1.0),
    "gravel": MaterialTexture("gravel", px_per_m=900.0, strength=1.0, noise=0.25,
                              noise_scale=0.5),
    "plastic_spacer": MaterialTexture("none", noise=0.1, noise_scale=0.02),
    "pvc_pipe": MaterialTexture("none", noise=0.1, noise_scale=0.2),
    "orange_pipe": MaterialTexture("none", noise=0.1, noise_scale=0.2),
}


@dataclass
class Appearance:
    """Lighting, materials and sensor of one capture (the 2D issue's domain factors)."""

    hour: float = 12.5  # local solar time; sets sun elevation and azimuth
    site_rotation_deg: float = 0.0  # scene +y relative to north: rotates the sun path
    max_sun_elevation_deg: float = 60.0  # at solar noon (latitude and season in one number)
    sun_intensity: float = 1.0
    sun_color: tuple[float, float, float] = (1.0, 0.97, 0.90)
    ambient_intensity: float = 0.35
    sky_zenith: tuple[float, float, float] = (0.35, 0.55, 0.85)
    sky_horizon: tuple[float, float, float] = (0.75, 0.82, 0.90)
    shadows: bool = True
    specular: float = 0.25  # weight of the roughness-driven highlight
    textures: dict[str, MaterialTexture] = field(default_factory=lambda: dict(_DEFAULT_TEXTURES))
    texture_strength: float = 1.0  # global multiplier on every texture and noise amplitude
    texture_seed: int = 0  # the scene's look; fixed across all views of one capture
    background_photo: str | None = None  # skimage photo mapped on the sky, or None
    exposure: float = 1.0
    noise_std: float = 0.01  # Gaussian sensor noise, fraction of full scale
    gain_std: float = 0.02  # per-channel gain (white balance) spread
    vignetting: float = 0.15  # brightness loss at the image corners
    # 0 dry .. 1 soaked: wet steel, concrete and soil are darker and glossier (water fills
    # the surface's micro-roughness). 0 leaves every colour exactly as before.
    wet: float = 0.0


@dataclass
class CameraPath:
    """A person walking round the cage with a phone: a ring of views."""

    n_images: int = 24
    distance: float = 2.5  # horizontal distance from the target, metres
    camera_height: float = 1.5  # above the ground, metres
    orbit_arc_deg: float = 360.0
    focal_px: float = 800.0
    image_size: tuple[int, int] = (960, 720)  # width, height
    look_jitter: float = 0.05  # metres of random offset of each view's look-at point
    position_jitter: float = 0.05  # metres: nobody walks a perfect circle
    baseline: float = 0.10  # metres: shift of each view's stereo partner


@dataclass
class CaptureSettings:
    appearance: Appearance = field(default_factory=Appearance)
    path: CameraPath = field(default_factory=CameraPath)


PRESETS: dict[str, CaptureSettings] = {
    "noon": CaptureSettings(),
    "overcast": CaptureSettings(Appearance(
        sun_intensity=0.12, ambient_intensity=0.85, sky_zenith=(0.62, 0.64, 0.68),
        sky_horizon=(0.80, 0.81, 0.83), specular=0.05)),
    "evening": CaptureSettings(Appearance(
        hour=17.6, sun_intensity=1.1, sun_color=(1.0, 0.72, 0.45), ambient_intensity=0.25,
        sky_zenith=(0.30, 0.40, 0.65), sky_horizon=(0.95, 0.70, 0.50))),
    "morning": CaptureSettings(Appearance(hour=8.5, sun_color=(1.0, 0.88, 0.75))),
    "close_low": CaptureSettings(path=CameraPath(n_images=30, distance=1.5, camera_height=0.8,
                                                 focal_px=700.0)),
    "far_high": CaptureSettings(path=CameraPath(n_images=18, distance=4.0, camera_height=2.5,
                                                focal_px=1100.0)),
}


def sun_direction(appearance: Appearance) -> np.ndarray:
    """Unit vector toward the sun: east +x, north +y (before `site_rotation_deg`)."""
    day = (appearance.hour - 6.0) / 12.0  # 0 sunrise, 0.5 noon, 1 sunset
    elev = math.radians(max(appearance.max_sun_elevation_deg * math.sin(math.pi * day), 1.0))
    az = math.radians(90.0 + 180.0 * day + appearance.site_rotation_deg)  # clockwise from north
    return np.array([math.sin(az) * math.cos(elev), math.cos(az) * math.cos(elev), math.sin(elev)])


# --------------------------------------------------------------------------- textures

@functools.lru_cache(maxsize=32)
def _texture_image(source: str, seed: int) -> np.ndarray:
    """(H, W, C) float32 with mean 1 per channel: a multiplicative albedo modulation."""
    import skimage.data

    if source == "wood":
        img = _wood(seed)
    elif source.startswith("photo:"):
        photo = getattr(skimage.data, source[6:])()
        photo = photo[0] if isinstance(photo, tuple) else photo
        r = np.random.default_rng(seed)
        h, w = photo.shape[:2]
        s = min(h, w, 384)
        y, x = r.integers(0, h - s + 1), r.integers(0, w - s + 1)
        img = photo[y:y + s, x:x + s, :3].astype(np.float32)
    else:
        img = getattr(skimage.data, source)().astype(np.float32)
    img = img if img.ndim == 3 else img[..., None]
    return img / np.maximum(img.mean(axis=(0, 1), keepdims=True), 1e-6)


def _wood(seed: int, size: int = 512) -> np.ndarray:
    """Grain: noise stretched 30x along u, warped rings; boards read as timber."""
    v, u = np.mgrid[0:size, 0:size].astype(np.float64)
    pts = np.stack([u.ravel() / 120.0, v.ravel() / 4.0], 1)
    warp = fbm(pts * [1.0, 0.1], seed + 1, octaves=3)
    warped = pts.copy()
    warped[:, 1] += 6.0 * warp
    grain = fbm(warped, seed, octaves=4)
    rings = 0.5 + 0.5 * np.sin(2 * np.pi * (pts[:, 1] / 3.0 + 4.0 * warp))
    return (0.55 + 0.6 * grain + 0.25 * rings).reshape(size, size)


def _bilinear(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Wrap-around bilinear lookup: magnified photo texels stay smooth for close views."""
    h, w = img.shape[:2]
    u0, v0 = np.floor(u), np.floor(v)
    fu, fv = (u - u0)[:, None].astype(np.float32), (v - v0)[:, None].astype(np.float32)
    u0, v0 = u0.astype(np.int64) % w, v0.astype(np.int64) % h
    u1, v1 = (u0 + 1) % w, (v0 + 1) % h
    top = img[v0, u0] * (1 - fu) + img[v0, u1] * fu
    return top * (1 - fv) + (img[v1, u0] * (1 - fu) + img[v1, u1] * fu) * fv


def _triplanar(img: np.ndarray, p: np.ndarray, n: np.ndarray, px_per_m: float,
               seed: int) -> np.ndarray:
    """Project the texture along x, y and z and blend by |normal|^4 (sharp seams)."""
    w = np.abs(n) ** 4
    w /= w.sum(1, keepdims=True)
    offset = np.random.default_rng(seed).uniform(0, 1e4, 6)  # per-material texture placement
    out = np.zeros((len(p), img.shape[2]), np.float32)
    for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
        m = w[:, axis] > 0.01  # flat faces need one lookup, not three
        if m.any():
            tex = _bilinear(img, p[m, a] * px_per_m + offset[2 * axis],
                            p[m, b] * px_per_m + offset[2 * axis + 1])
            out[m] += w[m, axis, None] * tex
    return out


def _albedo(name: str, tex: MaterialTexture, p: np.ndarray, n: np.ndarray, seed: int,
            strength: float) -> np.ndarray:
    """(N, 3) albedo of `name` at world points: base colour x photo x solid noise x pits."""
    base = np.asarray(MATERIALS[name].base_color, np.float32)
    mseed = seed * 1009 + MATERIAL_NAMES.index(name) * 31
    mod = np.ones((len(p), 1), np.float32)
    if tex.source != "none" and tex.strength * strength > 0:
        img = _texture_image(tex.source, mseed)
        mod = 1 + tex.strength * strength * (_triplanar(img, p, n, tex.px_per_m, mseed) - 1)
    amp = tex.noise * strength
    if amp > 0:
        # Solid noise on the world point: identical from every view, never tiles.
        noise = fbm(p / (tex.noise_scale / 8.0), mseed + 1, octaves=4)
        mod = mod * (1 + 2 * amp * (noise[:, None] - 0.5))
        if tex.pits > 0:
            # Rust: colour drifts between orange and dark brown, with dark pits.
            hue = value_noise(p / (tex.noise_scale / 2.0), mseed + 2)[:, None] - 0.5
            mod = mod * (1 + amp * hue * np.array([0.6, 0.1, -0.5], np.float32))
            pit = value_noise(p / 0.004, mseed + 3)
            mod = mod * (1 - tex.pits * strength * np.clip((pit - 0.72) * 5, 0, 1))[:, None]
    return np.clip(base * mod, 0.0, 1.0)


WETTABLE = ("steel", "rusty_steel", "tie_wire", "concrete", "soil")  # what rain darkens


def _wet_albedo(albedo: np.ndarray, names: list[str], mat: np.ndarray, wet: float) -> np.ndarray:
    if wet <= 0:
        return albedo
    dark = np.array([1 - 0.45 * wet if n in WETTABLE else 1.0 for n in names], np.float32)[mat]
    return albedo * dark[:, None]


# --------------------------------------------------------------------------- rendering

@dataclass
class Render:
    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 metres along the optical axis; +inf where no hit
    normal: np.ndarray  # (H, W, 3) float32 world normals facing the camera; 0 where no hit
    object_id: np.ndarray  # (H, W) int32; -1 where no hit
    label: np.ndarray  # (H, W) uint8; 255 where no hit


def _normals(rs: RaycastScene, prim: np.ndarray, uvs: np.ndarray, d: np.ndarray) -> np.ndarray:
    n = rs.face_normals[prim]
    sm = rs.smooth[prim]
    if sm.any():  # bars: interpolate so 12-sided tubes shade round
        tri = rs.mesh.triangles[prim[sm]]
        u, v = uvs[sm, :1], uvs[sm, 1:]
        vn = rs.vertex_normals
        ns = (1 - u - v) * vn[tri[:, 0]] + u * vn[tri[:, 1]] + v * vn[tri[:, 2]]
        n[sm] = ns / np.maximum(np.linalg.norm(ns, axis=1, keepdims=True), 1e-12)
    # Open meshes (ground quads, panels) are seen from either side: face the viewer.
    flip = (n * d).sum(1) > 0
    n[flip] *= -1
    return n


def _sky(appearance: Appearance, d: np.ndarray) -> np.ndarray:
    """(N, 3) background colour for unit ray directions d."""
    if appearance.background_photo:
        img = _texture_image(f"photo:{appearance.background_photo}", appearance.texture_seed)
        img = img / img.max()
        az = np.arctan2(d[:, 1], d[:, 0]) / (2 * np.pi) * img.shape[1] * 4
        el = (0.5 - np.arcsin(np.clip(d[:, 2], -1, 1)) / np.pi * 2) * img.shape[0]
        return _bilinear(img, az, np.clip(el, 0, img.shape[0] - 1.001))[:, :3]
    t = np.sqrt(np.clip(d[:, 2], 0, 1))[:, None]  # mild gradient: pale horizon, blue zenith
    return (1 - t) * np.asarray(appearance.sky_horizon) + t * np.asarray(appearance.sky_zenith)


def _shade(rs: RaycastScene, appearance: Appearance, p: np.ndarray, n: np.ndarray,
           d: np.ndarray, mat: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    s = sun_direction(appearance).astype(np.float32)
    cos = np.clip(n @ s, 0, None)
    lit = cos > 0
    if appearance.shadows and lit.any():
        # Second cast toward the sun; the origin steps off the surface so it cannot
        # re-hit its own triangle (float32 self-intersection "acne").
        eps = 1e-3 + 1e-5 * np.linalg.norm(p[lit], axis=1, keepdims=True)
        shadow_rays = np.concatenate([p[lit] + eps * n[lit], np.broadcast_to(s, (lit.sum(), 3))], 1)
        cos[np.flatnonzero(lit)[rs.occluded(shadow_rays.astype(np.float32))]] = 0
    rough = np.array([MATERIALS[m].roughness * (1 - 0.6 * appearance.wet if m in WETTABLE else 1.0)
                      for m in rs.mesh.material_names], np.float32)[mat]
    half = s - d
    half /= np.linalg.norm(half, axis=1, keepdims=True)
    shininess = 2.0 / np.maximum(rough ** 2, 0.02)
    spec = appearance.specular * (1 - rough) * np.clip((n * half).sum(1), 0, 1) ** shininess
    sun = appearance.sun_intensity * np.asarray(appearance.sun_color, np.float32)
    sky_mean = 0.5 * (np.asarray(appearance.sky_zenith) + np.asarray(appearance.sky_horizon))
    ambient = appearance.ambient_intensity * sky_mean / sky_mean.mean() * (0.6 + 0.4 * n[:, 2:])
    diffuse = albedo * (cos[:, None] * sun + ambient)
    return diffuse + (spec * (cos > 0))[:, None] * sun


def _sensor(img: np.ndarray, appearance: Appearance, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    gain = 1 + appearance.gain_std * rng.standard_normal(3).astype(np.float32)
    img = img * (appearance.exposure * gain)
    if appearance.vignetting > 0:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - (w - 1) / 2) ** 2 + (yy - (h - 1) / 2) ** 2) / (((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2)
        img *= (1 - appearance.vignetting * r2)[..., None]
    if appearance.noise_std > 0:
        img += appearance.noise_std * rng.standard_normal(img.shape, dtype=np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def render(mesh: LabeledMesh, camera: Camera, appearance: Appearance, rng: np.random.Generator,
           scene_cache: RaycastScene | None = None) -> Render:
    """Render one photo plus its exact depth, normals, object ids and labels.

    Pass the same `scene_cache` (``RaycastScene.from_mesh(mesh)``) for every view of a
    mesh: building the Embree scene costs more than casting one image's rays.
    """
    rs = scene_cache if scene_cache is not None else RaycastScene.from_mesh(mesh)
    h, w = camera.height, camera.width
    r = rays(camera).reshape(-1, 6)
    hit = rs.cast(r)
    t, prim = hit["t_hit"], hit["primitive_ids"]
    ok = np.isfinite(t)
    idx = np.flatnonzero(ok)
    d_unit = r[:, 3:] / np.linalg.norm(r[:, 3:], axis=1, keepdims=True)

    prim_hit = prim[idx].astype(np.int64)
    p = r[idx, :3].astype(np.float64) + t[idx, None] * r[idx, 3:].astype(np.float64)
    n = _normals(rs, prim_hit, hit["primitive_uvs"][idx], d_unit[idx])
    mat = rs.mesh.material_ids[prim_hit]
    albedo = np.empty((len(idx), 3), np.float32)
    for m in np.unique(mat):  # a loop over materials, each one vectorised over its pixels
        name = rs.mesh.material_names[m]
        sel = mat == m
        tex = appearance.textures.get(name, MaterialTexture())
        albedo[sel] = _albedo(name, tex, p[sel], n[sel], appearance.texture_seed,
                              appearance.texture_strength)
    albedo = _wet_albedo(albedo, list(rs.mesh.material_names), mat, appearance.wet)

    rgb = np.empty((h * w, 3), np.float32)
    rgb[~ok] = _sky(appearance, d_unit[~ok])
    rgb[idx] = _shade(rs, appearance, p.astype(np.float32), n, d_unit[idx], mat, albedo)

    normal = np.zeros((h * w, 3), np.float32)
    normal[idx] = n
    object_id = np.full(h * w, -1, np.int32)
    object_id[idx] = rs.mesh.object_ids[prim_hit]
    label = np.full(h * w, NO_LABEL, np.uint8)
    label[idx] = rs.mesh.labels[prim_hit]
    return Render(_sensor(rgb.reshape(h, w, 3), appearance, rng),
                  t.astype(np.float32).reshape(h, w), normal.reshape(h, w, 3),
                  object_id.reshape(h, w), label.reshape(h, w))


# --------------------------------------------------------------------------- capture

def camera_path(settings: CaptureSettings | CameraPath, bounds_lo, bounds_hi,
                rng: np.random.Generator) -> list[Camera]:
    """A ring of views round the box [bounds_lo, bounds_hi], all looking at its centre.

    The ring starts at a random azimuth and spans `orbit_arc_deg`; positions and look-at
    points get a little jitter, as when walking round a cage with a phone.
    """
    path = settings.path if isinstance(settings, CaptureSettings) else settings
    lo, hi = np.asarray(bounds_lo, float), np.asarray(bounds_hi, float)
    target = 0.5 * (lo + hi)
    start = rng.uniform(0, 360)
    full = path.orbit_arc_deg >= 360
    steps = np.arange(path.n_images) / (path.n_images if full else max(path.n_images - 1, 1))
    width, height = path.image_size
    cams = []
    for az in np.radians(start + path.orbit_arc_deg * steps):
        eye = np.array([target[0] + path.distance * np.cos(az),
                        target[1] + path.distance * np.sin(az), lo[2] + path.camera_height])
        eye += rng.normal(0, path.position_jitter, 3)
        look = target + rng.normal(0, path.look_jitter, 3)
        cams.append(Camera(width, height, path.focal_px, path.focal_px, (width - 1) / 2,
                           (height - 1) / 2, look_at(eye, look)))
    return cams
