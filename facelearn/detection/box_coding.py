"""Box and landmark encoding relative to anchors, with variances (book chapter "Anchors, pyramids and
tiny faces").

A face box (x1, y1, x2, y2) is regressed against an anchor (a_cx, a_cy, a_w, a_h) as

    t_x = (c_x − a_cx) / (v_0 a_w),   t_y = (c_y − a_cy) / (v_0 a_h),
    t_w = log(w / a_w) / v_1,          t_h = log(h / a_h) / v_1,                       (1)

and each landmark (p_x, p_y) as ((p_x − a_cx) / (v_0 a_w), (p_y − a_cy) / (v_0 a_h)),        (2)

with variances (v_0, v_1) = (0.1, 0.2), which scale the targets to roughly unit variance.
"""

from __future__ import annotations

import torch

VARIANCES = (0.1, 0.2)


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(…, 4) cx cy w h → (…, 4) x1 y1 x2 y2."""
    c, wh = boxes[..., :2], boxes[..., 2:]
    return torch.cat([c - wh / 2, c + wh / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(…, 4) x1 y1 x2 y2 → (…, 4) cx cy w h."""
    p1, p2 = boxes[..., :2], boxes[..., 2:]
    return torch.cat([(p1 + p2) / 2, p2 - p1], dim=-1)


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor,
                 variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Eq. (1). boxes: (…, 4) x1 y1 x2 y2 with positive size; anchors: (…, 4) cx cy w h (broadcast).
    Returns (…, 4) offsets (t_x, t_y, t_w, t_h)."""
    b = xyxy_to_cxcywh(boxes)
    t_c = (b[..., :2] - anchors[..., :2]) / (variances[0] * anchors[..., 2:])
    t_wh = torch.log(b[..., 2:] / anchors[..., 2:]) / variances[1]
    return torch.cat([t_c, t_wh], dim=-1)


def decode_boxes(offsets: torch.Tensor, anchors: torch.Tensor,
                 variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Inverse of eq. (1). offsets: (…, 4); anchors: (…, 4) cx cy w h. Returns (…, 4) x1 y1 x2 y2."""
    c = anchors[..., :2] + offsets[..., :2] * variances[0] * anchors[..., 2:]
    wh = anchors[..., 2:] * torch.exp(offsets[..., 2:] * variances[1])
    return cxcywh_to_xyxy(torch.cat([c, wh], dim=-1))


def encode_landmarks(points: torch.Tensor, anchors: torch.Tensor,
                     variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Eq. (2). points: (…, 5, 2) x y in pixels; anchors: (…, 4) cx cy w h. Returns (…, 10)."""
    t = (points - anchors[..., None, :2]) / (variances[0] * anchors[..., None, 2:])
    return t.flatten(-2)


def decode_landmarks(offsets: torch.Tensor, anchors: torch.Tensor,
                     variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """Inverse of eq. (2). offsets: (…, 10); anchors: (…, 4). Returns (…, 5, 2) x y in pixels."""
    t = offsets.unflatten(-1, (5, 2))
    return anchors[..., None, :2] + t * variances[0] * anchors[..., None, 2:]
