"""From per-anchor predictions to detections: decode, score threshold, NMS, and ``detect`` on any image
(book chapter "Training and evaluating RetinaFace").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from facelearn.detection.box_coding import VARIANCES, decode_boxes, decode_landmarks


@dataclass
class Detections:
    """boxes: (N, 4) x1 y1 x2 y2; scores: (N,) face probability, descending; landmarks: (N, 5, 2) x y —
    all in pixels of the image given to :func:`detect` (or of the network input for :func:`postprocess`)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    landmarks: torch.Tensor

    def __len__(self) -> int:
        return len(self.scores)

    def scaled(self, factor_x: float, factor_y: float) -> "Detections":
        """These detections with x multiplied by ``factor_x`` and y by ``factor_y``."""
        f = self.boxes.new_tensor([factor_x, factor_y])
        return Detections(self.boxes * f.repeat(2), self.scores, self.landmarks * f)


@torch.no_grad()
def postprocess(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, *, score_threshold: float = 0.02,
                nms_iou: float = 0.4, pre_nms_top_k: int = 5000, max_detections: int = 750,
                variances: tuple[float, float] = VARIANCES) -> list[Detections]:
    """Decode a batch of model outputs. outputs: dict of (B, A, k); anchors: (A, 4) cx cy w h.

    Keeps anchors whose face probability (softmax of ``cls``) exceeds ``score_threshold``, the
    ``pre_nms_top_k`` best of them, then torchvision NMS at ``nms_iou`` and the ``max_detections`` best.
    """
    scores = F.softmax(outputs["cls"].float(), dim=-1)[..., 1]
    anchors = anchors.to(scores.device, torch.float32)
    results = []
    for b in range(scores.shape[0]):
        s = scores[b]
        keep = (s > score_threshold).nonzero().squeeze(1)
        keep = keep[s[keep].argsort(descending=True)[:pre_nms_top_k]]
        boxes = decode_boxes(outputs["box"][b, keep].float(), anchors[keep], variances)
        if "landmarks" in outputs:
            pts = decode_landmarks(outputs["landmarks"][b, keep].float(), anchors[keep], variances)
        else:
            pts = boxes.new_full((len(keep), 5, 2), -1.0)
        k = nms(boxes, s[keep], nms_iou)[:max_detections]
        results.append(Detections(boxes[k], s[keep][k], pts[k]))
    return results


def to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """An H×W×3 uint8 RGB array (as ``cv2``/``PIL`` images converted to RGB) or a (3, H, W) float tensor in
    [0, 1] → (3, H, W) float32 in [0, 1]."""
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(image.shape)}")
        return image.float()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {arr.shape}")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float()
    return t / 255.0 if arr.dtype == np.uint8 else t


@torch.no_grad()
def detect(model: torch.nn.Module, image: np.ndarray | torch.Tensor, *, score_threshold: float = 0.5,
           nms_iou: float = 0.4, scale: float | Sequence[float] = 1.0, max_size: int | None = None,
           max_detections: int = 750) -> Detections:
    """Detect faces in one image of any size. Returns boxes, scores, landmarks in the image's pixels.

    image: H×W×3 uint8 RGB or (3, H, W) float in [0, 1]; scale: the image is resized by this factor for the
    network (above 1 shows small faces at the size training crops showed them); several factors make an image
    pyramid whose detections are pooled and suppressed together (the paper's multi-scale test; chapter
    "Training and evaluating RetinaFace"); max_size: if given, each resized long side is capped at it.
    """
    scales = (scale,) if isinstance(scale, (int, float)) else tuple(scale)
    if not scales or not all(s > 0 for s in scales):
        raise ValueError(f"scale must be a positive number or a non-empty list of them, got {scale}")
    x = to_tensor(image)
    h, w = x.shape[-2:]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    found = []
    for factor in scales:
        if max_size is not None and max(h, w) * factor > max_size:
            factor = max_size / max(h, w)
        xs = x
        if factor != 1.0:
            xs = F.interpolate(x[None], size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="bilinear",
                               align_corners=False, antialias=factor < 1)[0]
        out = model(xs[None].to(device))
        anchors = model.anchors(tuple(xs.shape[-2:]), device=device)
        det = postprocess(out, anchors, score_threshold=score_threshold, nms_iou=nms_iou,
                          max_detections=max_detections)[0]
        found.append(det.scaled(w / xs.shape[-1], h / xs.shape[-2]))
    model.train(was_training)
    det = found[0]
    if len(found) > 1:
        boxes, scores = torch.cat([d.boxes for d in found]), torch.cat([d.scores for d in found])
        keep = nms(boxes, scores, nms_iou)[:max_detections]
        det = Detections(boxes[keep], scores[keep], torch.cat([d.landmarks for d in found])[keep])
    det.boxes[:, 0::2] = det.boxes[:, 0::2].clamp(0, w)
    det.boxes[:, 1::2] = det.boxes[:, 1::2].clamp(0, h)
    return Detections(det.boxes.cpu(), det.scores.cpu(), det.landmarks.cpu())
