"""Head pose (yaw, pitch, roll) from 2-D landmarks with OpenCV's solvePnP (book: chapter "PFLD").

PFLD's auxiliary net is supervised with Euler angles estimated from each training face's landmarks: a
3-D reference face (13 rigid points — eye corners, eyebrows, nose, mouth corners — in millimetres;
contour points such as the chin are left out because they slide along the jaw as the head turns) is fitted to the matching 2-D landmarks with a pinhole camera whose focal length and
principal point are in the pixels of the image the landmarks live in. The rotation is then split into
Euler angles.

Convention (camera frame: x right, y down, z away from the camera; a frontal face looks at the camera):
``R = R_z(roll) · R_x(pitch) · R_y(yaw)`` maps face coordinates to camera coordinates (yaw applied first,
the convention of SynthFace's renderer, whose true angles test this module). Positive yaw turns
the nose towards image-right, positive pitch raises the chin (the nose moves up), positive roll turns the
face clockwise on screen. Angles are in radians unless a name says ``_deg``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

#: WFLW index → 3-D point (mm) of a generic adult face, x right, y down, z away from the camera, origin
#: between the inner eye corners. Image-left points (subject's right side) have negative x.
REFERENCE_98: dict[int, tuple[float, float, float]] = {
    33: (-50.0, -22.0, 14.0), 46: (50.0, -22.0, 14.0),      # outer eyebrow ends
    37: (-14.0, -24.0, -2.0), 42: (14.0, -24.0, -2.0),      # inner eyebrow ends (upper edge)
    60: (-45.0, 0.0, 12.0), 72: (45.0, 0.0, 12.0),          # outer eye corners
    64: (-16.0, 0.0, 4.0), 68: (16.0, 0.0, 4.0),            # inner eye corners
    54: (0.0, 40.0, -22.0),                                 # nose tip
    55: (-14.0, 47.0, -4.0), 59: (14.0, 47.0, -4.0),        # nose wings
    76: (-25.0, 75.0, 6.0), 82: (25.0, 75.0, 6.0),          # mouth corners
}
#: The same rigid points in the 68-point (300-W) numbering.
INDEX_68_FROM_98 = {33: 17, 46: 26, 37: 21, 42: 22, 60: 36, 72: 45, 64: 39, 68: 42, 54: 30, 55: 31, 59: 35,
                    76: 48, 82: 54}


def reference_points(n_points: int = 98) -> tuple[np.ndarray, np.ndarray]:
    """(indices (K,) int, points (K, 3) float64 mm) of the 3-D reference face for 98 or 68 landmarks."""
    keys = sorted(REFERENCE_98)
    pts = np.array([REFERENCE_98[k] for k in keys], dtype=np.float64)
    if n_points == 98:
        return np.array(keys), pts
    if n_points == 68:
        return np.array([INDEX_68_FROM_98[k] for k in keys]), pts
    raise ValueError(f"no reference face for {n_points} points (98 or 68)")


def camera_matrix(width: float, height: float, focal: float | None = None) -> np.ndarray:
    """The 3×3 pinhole camera of a ``width``×``height`` pixel image: principal point at the centre,
    focal length ``focal`` pixels (default: the image's larger side, a 53° field of view)."""
    f = float(max(width, height)) if focal is None else float(focal)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = R_z(roll) · R_x(pitch) · R_y(yaw) in facelearn's convention (radians) → (3, 3)."""
    a, b, c = -pitch, -yaw, roll   # signs: chin up and nose right are positive on screen (y down)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def euler_from_rotation(r: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_euler`: (3, 3) → (yaw, pitch, roll) radians, pitch in [−π/2, π/2]."""
    a = math.asin(max(-1.0, min(1.0, r[2, 1])))
    b = math.atan2(-r[2, 0], r[2, 2])
    c = math.atan2(-r[0, 1], r[1, 1])
    return -b, -a, c


def project(points3d: np.ndarray, yaw: float, pitch: float, roll: float, distance: float,
            camera: np.ndarray) -> np.ndarray:
    """Pinhole projection of face points (K, 3) mm rotated by the Euler angles and placed ``distance`` mm
    in front of the camera → (K, 2) pixels. The forward model that :func:`euler_from_landmarks` inverts."""
    cam = points3d @ rotation_from_euler(yaw, pitch, roll).T + np.array([0.0, 0.0, distance])
    uvw = cam @ camera.T
    return uvw[:, :2] / uvw[:, 2:3]


def euler_from_landmarks(landmarks: np.ndarray, width: float, height: float,
                         focal: float | None = None) -> np.ndarray:
    """Yaw, pitch, roll (radians) of one face from its (98, 2) or (68, 2) pixel landmarks.

    The reference face's rigid points are fitted with ``cv2.solvePnP`` (iterative Levenberg–Marquardt from
    the EPnP solution) in the camera of :func:`camera_matrix` ``(width, height, focal)`` → (3,) float64.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    idx, pts3d = reference_points(len(landmarks))
    cam = camera_matrix(width, height, focal)
    pts2d = np.ascontiguousarray(landmarks[idx])
    ok, rvec, tvec = cv2.solvePnP(pts3d, pts2d, cam, None, flags=cv2.SOLVEPNP_EPNP)
    if ok:
        ok, rvec, tvec = cv2.solvePnP(pts3d, pts2d, cam, None, rvec, tvec, useExtrinsicGuess=True,
                                      flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise ValueError("solvePnP found no pose for these landmarks")
    if tvec[2, 0] < 0:  # the mirror solution behind the camera
        raise ValueError("solvePnP placed the face behind the camera")
    r, _ = cv2.Rodrigues(rvec)
    return np.array(euler_from_rotation(r))


def euler_batch(landmarks: np.ndarray, width: float, height: float, focal: float | None = None) -> np.ndarray:
    """:func:`euler_from_landmarks` over (N, P, 2) landmarks → (N, 3) radians."""
    return np.stack([euler_from_landmarks(lm, width, height, focal) for lm in np.asarray(landmarks)])
