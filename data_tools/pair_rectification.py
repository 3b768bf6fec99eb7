"""Dense depth of one photo from a second photo taken anywhere nearby: rectify, match, un-rectify.

The ``mvs`` mode's pairs come from a calibrated rig, already rectified. Photos of a walk
round the cage are not: the second camera is rotated and shifted in every direction, as
SfM found it. Semi-global matching searches along image rows, so both photos are first
turned (a pure rotation about each camera centre, i.e. a homography) to a common
orientation whose x axis is the baseline - Fusiello, Trucco and Verri's construction - so
that epipolar lines become rows and the second camera lies to the right of the first
(positive disparities, whatever the direction of travel). Then StereoSGBM, depth
= f B / d in the rectified frame, and back to the first photo: each of its pixels looks up
the disparity where it landed in the rectified image (nearest neighbour, so depths are
never blended across an edge) and takes the depth of its own ray.

Cameras are pinhole (``data_tools.render.Camera``): undistort photos first. Units are
whatever the poses are in (metres, or SfM's arbitrary scale): nothing here assumes one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data_tools.photogrammetry import SGBMParams
from data_tools.render import Camera

__all__ = ["RectifiedPair", "pair_depth", "rectify_pair"]


@dataclass(eq=False)
class RectifiedPair:
    left: np.ndarray  # (H, W, 3) the first photo turned to the common orientation
    right: np.ndarray  # the second photo, same orientation: epipolar lines are rows
    K: np.ndarray  # 3x3 shared intrinsics of both rectified images
    baseline: float  # distance between the camera centres (pose units)
    rect_from_world: np.ndarray  # 3x3 rotation of the common orientation
    left_homography: np.ndarray  # 3x3: first photo's pixels -> rectified pixels


def _rect_rotation(left: Camera, right: Camera) -> tuple[np.ndarray, float]:
    """rect_from_world (rows: x = baseline, y, z = mean viewing direction made orthogonal)."""
    base = right.center - left.center
    b = float(np.linalg.norm(base))
    if b <= 0:
        raise ValueError("rectification needs two camera centres apart, got the same centre twice")
    x = base / b
    z_mean = left.world_from_camera[:3, 2] + right.world_from_camera[:3, 2]
    y = np.cross(z_mean, x)
    if np.linalg.norm(y) < 1e-6 * np.linalg.norm(z_mean):
        raise ValueError("rectification needs a sideways baseline, got cameras one behind the other")
    y /= np.linalg.norm(y)
    return np.stack([x, y, np.cross(x, y)]), b


def _homography(k_new: np.ndarray, rect_from_world: np.ndarray, cam: Camera) -> np.ndarray:
    """Pixels of `cam` -> pixels of the rotated camera (same centre, intrinsics k_new)."""
    return k_new @ rect_from_world @ cam.world_from_camera[:3, :3] @ np.linalg.inv(cam.K)


def _apply(h: np.ndarray, uv: np.ndarray) -> np.ndarray:
    p = np.c_[uv, np.ones(len(uv))] @ h.T
    return p[:, :2] / p[:, 2:]


def rectify_pair(left_rgb: np.ndarray, right_rgb: np.ndarray, left: Camera,
                 right: Camera) -> RectifiedPair:
    """Both photos turned to the orientation whose x axis is the baseline (see the module).

    The rectified images keep the first photo's size and the mean focal length; their
    principal point is placed so that the two photos' centres land, on average, in the
    middle - the part both photos share stays in frame.
    """
    import cv2

    rot, b = _rect_rotation(left, right)
    f = float(np.mean([left.fx, left.fy, right.fx, right.fy]))
    w, h = left.width, left.height
    k_new = np.array([[f, 0, 0], [0, f, 0], [0, 0, 1]], float)
    centres = np.array([[(left.width - 1) / 2, (left.height - 1) / 2],
                        [(right.width - 1) / 2, (right.height - 1) / 2]])
    landed = np.concatenate([_apply(_homography(k_new, rot, left), centres[:1]),
                             _apply(_homography(k_new, rot, right), centres[1:])])
    k_new[:2, 2] = np.array([(w - 1) / 2, (h - 1) / 2]) - landed.mean(0)
    h_left, h_right = _homography(k_new, rot, left), _homography(k_new, rot, right)
    warp = lambda img, hom: cv2.warpPerspective(  # noqa: E731
        np.ascontiguousarray(img, np.float32), hom, (w, h), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return RectifiedPair(warp(left_rgb, h_left), warp(right_rgb, h_right), k_new, b, rot, h_left)


def _grey_u8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _disparity(pair: RectifiedPair, sgbm: SGBMParams, near: float, far: float) -> tuple[np.ndarray, float]:
    """Rectified disparity map (NaN where invalid) searched over depths [near, far]."""
    import cv2

    fb = pair.K[0, 0] * pair.baseline
    d_min = int(math.floor(fb / far))
    num = max(16, int(math.ceil((fb / near - d_min) / 16.0)) * 16)  # OpenCV: a multiple of 16
    # SGBM needs the search to fit in the image: a wide baseline at a small image size gives
    # up the nearest depths rather than fail.
    width = pair.left.shape[1]
    num = min(num, (width - d_min - sgbm.block_size // 2 - 1) // 16 * 16)
    if num < 16:
        return np.full(pair.left.shape[:2], np.nan, np.float32), fb
    matcher = cv2.StereoSGBM_create(
        minDisparity=d_min, numDisparities=num, blockSize=sgbm.block_size,
        P1=sgbm.p1_factor * sgbm.block_size ** 2, P2=sgbm.p2_factor * sgbm.block_size ** 2,
        disp12MaxDiff=sgbm.disp12_max_diff, uniquenessRatio=sgbm.uniqueness,
        speckleWindowSize=sgbm.speckle_window, speckleRange=sgbm.speckle_range, preFilterCap=31)
    disp = matcher.compute(_grey_u8(pair.left), _grey_u8(pair.right)).astype(np.float32) / 16.0
    # Invalid pixels come back as min_disp - 1; d <= 0 would be at or beyond infinity.
    disp[~(disp > max(d_min, 0))] = np.nan
    return disp, fb


def pair_depth(left_rgb: np.ndarray, right_rgb: np.ndarray, left: Camera, right: Camera,
               sgbm: SGBMParams, depth_range: tuple[float, float]) -> np.ndarray:
    """(H, W) float32 depth of the FIRST photo along its own optical axis, NaN where the
    matcher found nothing; `depth_range` (near, far) bounds the disparity search."""
    import cv2

    near, far = depth_range
    if not 0 < near < far:
        raise ValueError(f"depth range must be 0 < near < far, got {depth_range}")
    pair = rectify_pair(left_rgb, right_rgb, left, right)
    disp, fb = _disparity(pair, sgbm, near, far)
    v, u = np.mgrid[0:left.height, 0:left.width]
    landed = _apply(pair.left_homography, np.c_[u.ravel(), v.ravel()].astype(np.float64))
    map_x = landed[:, 0].reshape(v.shape).astype(np.float32)
    map_y = landed[:, 1].reshape(v.shape).astype(np.float32)
    d = cv2.remap(disp, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                  borderValue=float("nan"))
    # The pixel's ray in the rectified frame, scaled to the matched depth, seen from the
    # first camera: its z there is the depth (a rotation only - both share the centre).
    z_rect = fb / d
    k = pair.K
    ray = np.stack([(map_x - k[0, 2]) / k[0, 0], (map_y - k[1, 2]) / k[1, 1],
                    np.ones_like(map_x)], -1)
    cam_from_rect = left.world_from_camera[:3, :3].T @ pair.rect_from_world.T
    depth = z_rect * (ray @ cam_from_rect[2])
    depth[~(depth > 0)] = np.nan
    return depth.astype(np.float32)
