"""Five-point similarity alignment to insightface's 112×112 ArcFace template (book: loss chapters, data).

Recognition models are trained and evaluated on faces warped so that the eyes, nose tip and mouth
corners land on fixed template positions. The warp is the least-squares similarity transform (rotation,
uniform scale, translation) from the detected points to the template (Umeyama 1991), applied with OpenCV.
It is geometry on images and points, so it lives with the data: SynthFace's aligned crops use it, and
:mod:`facelearn.recognition.alignment` gives it to the recognition chapters and the pipeline.
"""

from __future__ import annotations

import cv2
import numpy as np

#: insightface's ArcFace template for a 112×112 crop: left eye, right eye, nose tip, left and right mouth
#: corner (image-left first), in pixels (x, y).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×3 similarity matrix M minimising Σ‖M·[src_i, 1] − dst_i‖² (Umeyama 1991, eqs. (40)–(42)).

    src, dst: (K, 2) points, K ≥ 2 → (2, 3) float64 matrix [sR | t].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 2:
        raise ValueError(f"expected two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    n = len(src)
    mu_s, mu_d = src.sum(0) / n, dst.sum(0) / n  # np.mean's sum and division, without its overhead
    s_c, d_c = src - mu_s, dst - mu_d
    var_s = (s_c**2).sum() / n
    if var_s == 0:
        raise ValueError("the source points coincide; no similarity transform is defined")
    cov = d_c.T @ s_c / n
    u, sig, vt = np.linalg.svd(cov)
    # D = diag(1, ±1): −1 where det(U)·det(Vᵀ) < 0 (both are ±1, so the 2×2 determinants' signs suffice)
    reflect = (u[0, 0] * u[1, 1] - u[0, 1] * u[1, 0]) * (vt[0, 0] * vt[1, 1] - vt[0, 1] * vt[1, 0]) < 0
    d = _REFLECTION if reflect else _IDENTITY
    rot = u @ d @ vt
    scale = (sig[0] + sig[1] * d[1, 1]) / var_s  # tr(ΣD)
    scaled = scale * rot
    matrix = np.empty((2, 3))
    matrix[:, :2] = scaled
    matrix[:, 2] = mu_d - scaled @ mu_s  # `scale * rot @ mu_s` is (scale * rot) @ mu_s
    return matrix


_IDENTITY, _REFLECTION = np.eye(2), np.diag([1.0, -1.0])
_IDENTITY.flags.writeable = _REFLECTION.flags.writeable = False


def align_face(image: np.ndarray, points: np.ndarray, size: int = 112,
               template: np.ndarray = ARCFACE_TEMPLATE) -> np.ndarray:
    """Warp ``image`` so that its 5 ``points`` land on ``template`` scaled to a ``size``×``size`` crop.

    image: (H, W, 3) or (H, W) uint8; points: (5, 2) in pixels → (size, size[, 3]) uint8 crop.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (5, 2):
        raise ValueError(f"expected 5 landmark points of shape (5, 2), got {points.shape}")
    matrix = similarity_transform(points, template if size == 112 else template * (size / 112.0))  # x · 1.0 is x
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
