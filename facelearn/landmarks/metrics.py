"""Landmark accuracy: NME, failure rate, the CED curve and its AUC (book: chapter "PFLD").

NME of one face = (1/P) Σ_i ‖p̂_i − p_i‖ / d_io, with d_io the distance between the outer eye corners
(WFLW points 60 and 72, 300-W points 36 and 45) — the "inter-ocular" normalisation of the WFLW
benchmark {cite}`wu2018look`. The cumulative error distribution (CED) is the fraction of faces whose NME is
at most e; the failure rate at 0.1 is the fraction above 0.1, and AUC@0.1 is the area under the CED on
[0, 0.1] divided by 0.1.
"""

from __future__ import annotations

import numpy as np

from facelearn.data.wflw import N_WFLW, W300_OUTER_EYES, WFLW_ATTRIBUTES, WFLW_OUTER_EYES


def _as_points(x) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 2:
        a = a.reshape(a.shape[0], -1, 2)
    if a.ndim != 3 or a.shape[2] != 2:
        raise ValueError(f"landmarks must be (N, P, 2) or (N, 2P), got shape {a.shape}")
    return a


def nme(pred, target, eyes: tuple[int, int] | None = None) -> np.ndarray:
    """Per-face NME with inter-ocular normalisation.

    pred, target: (N, P, 2) or (N, 2P), same units → (N,) float64. ``eyes`` defaults to (60, 72) for 98
    points and (36, 45) for 68 points.
    """
    p, t = _as_points(pred), _as_points(target)
    if p.shape != t.shape:
        raise ValueError(f"pred {p.shape} and target {t.shape} differ")
    if eyes is None:
        if t.shape[1] == N_WFLW:
            eyes = WFLW_OUTER_EYES
        elif t.shape[1] == 68:
            eyes = W300_OUTER_EYES
        else:
            raise ValueError(f"give the outer-eye indices for {t.shape[1]} points")
    d_io = np.linalg.norm(t[:, eyes[0]] - t[:, eyes[1]], axis=1)
    if np.any(d_io <= 0):
        raise ValueError("a target face has coincident outer eye corners (inter-ocular distance 0)")
    return np.linalg.norm(p - t, axis=2).mean(axis=1) / d_io


def ced(errors: np.ndarray, thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The CED curve: (thresholds, fraction of faces with NME ≤ threshold). Default grid 0…0.1, 1001 steps."""
    errors = np.asarray(errors, dtype=np.float64)
    x = np.linspace(0.0, 0.1, 1001) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return x, (errors[None, :] <= x[:, None]).mean(axis=1)


def failure_rate(errors: np.ndarray, threshold: float = 0.1) -> float:
    """Fraction of faces whose NME exceeds ``threshold``."""
    return float((np.asarray(errors) > threshold).mean())


def auc(errors: np.ndarray, threshold: float = 0.1, steps: int = 10001) -> float:
    """Area under the CED on [0, threshold], divided by ``threshold`` (1 = every face perfect)."""
    x, y = ced(errors, np.linspace(0.0, threshold, steps))
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / threshold)


def summary(errors: np.ndarray, attributes: np.ndarray | None = None, threshold: float = 0.1) -> dict:
    """NME, FR@threshold and AUC@threshold, overall and (given (N, 6) WFLW flags) per attribute subset.

    Returns ``{"all": {"n", "nme", "fr", "auc"}, "pose": {...}, …}``; empty subsets are left out.
    """
    errors = np.asarray(errors, dtype=np.float64)

    def one(e: np.ndarray) -> dict:
        return {"n": int(len(e)), "nme": float(e.mean()), "fr": failure_rate(e, threshold),
                "auc": auc(e, threshold)}

    out = {"all": one(errors)}
    if attributes is not None:
        attributes = np.asarray(attributes)
        for j, name in enumerate(WFLW_ATTRIBUTES):
            mask = attributes[:, j] > 0
            if mask.any():
                out[name] = one(errors[mask])
    return out
