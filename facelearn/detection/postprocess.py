"""From per-anchor predictions to detections: decode, score threshold, NMS, box voting, and ``detect`` on any
image with the paper's test-time protocol — an image pyramid, its mirror, box voting (book chapter "Training
and evaluating RetinaFace").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from facelearn.data.transforms import FIVE_POINT_FLIP
from facelearn.detection.box_coding import VARIANCES, decode_boxes, decode_landmarks
from facelearn.detection.suppression import greedy_nms
from facelearn.detection.test_time import in_band, scales_for

#: Candidates that enter NMS, best first: per pass, and for the pooled passes of a test-time protocol.
PRE_NMS_TOP_K = 5000


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

    def take(self, index: torch.Tensor) -> "Detections":
        """The detections at ``index`` (a (K,) long tensor), in that order."""
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])

    def mirrored(self, width: float) -> "Detections":
        """These detections mirrored in an image ``width`` wide: ``x ↦ width − x``, box corners swapped, the
        landmarks reordered 0↔1, 3↔4 (rows of −1, from a model without a landmark head, stay −1)."""
        boxes = torch.stack([width - self.boxes[:, 2], self.boxes[:, 1], width - self.boxes[:, 0],
                             self.boxes[:, 3]], dim=1)
        pts = self.landmarks[:, list(FIVE_POINT_FLIP)].clone()
        pts[..., 0] = width - pts[..., 0]
        return Detections(boxes, self.scores, _keep_absent(pts, self.landmarks))

    @staticmethod
    def cat(parts: Sequence["Detections"]) -> "Detections":
        """One set from several (e.g. the passes of an image pyramid), in the given order."""
        return Detections(torch.cat([d.boxes for d in parts]), torch.cat([d.scores for d in parts]),
                          torch.cat([d.landmarks for d in parts]))

    def suppressed(self, nms_iou: float, max_detections: int, plus_one: bool = False) -> "Detections":
        """Greedy NMS at ``nms_iou`` (:func:`~facelearn.detection.suppression.greedy_nms`, torchvision's result):
        the ``max_detections`` best survivors, scores descending.

        plus_one: count areas and overlaps as (x2 − x1 + 1)(y2 − y1 + 1), boxes as inclusive pixel ranges, the
        convention of biubug6/Pytorch_Retinaface's ``py_cpu_nms`` (to reproduce its lists exactly)."""
        boxes = self.boxes + self.boxes.new_tensor([0.0, 0.0, 1.0, 1.0]) if plus_one else self.boxes
        return self.take(greedy_nms(boxes, self.scores, nms_iou)[:max_detections])


@torch.no_grad()
def candidates(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, *, score_threshold: float = 0.02,
               pre_nms_top_k: int = PRE_NMS_TOP_K, variances: tuple[float, float] = VARIANCES) -> list[Detections]:
    """Decode a batch of model outputs before NMS. outputs: dict of (B, A, k); anchors: (A, 4) cx cy w h.

    Keeps the anchors whose face probability (softmax of ``cls``) exceeds ``score_threshold``, at most the
    ``pre_nms_top_k`` best, scores descending; landmarks are −1 when the model has no landmark head. Only the
    anchors that can pass are softmaxed and decoded (:func:`_possible`); each row's softmax is computed on its
    own, so the scores are those of the whole tensor's softmax, bit for bit.
    """
    logits = outputs["cls"].float()
    results = []
    for b in range(logits.shape[0]):
        rows = _possible(logits[b], score_threshold)
        s = F.softmax(logits[b] if rows is None else logits[b, rows], dim=-1)[:, 1]
        keep = (s > score_threshold).nonzero().squeeze(1)
        keep = keep[s[keep].argsort(descending=True)[:pre_nms_top_k]]
        scores, keep = s[keep], keep if rows is None else rows[keep]
        a = anchors[keep.to(anchors.device)].to(logits.device, torch.float32)
        boxes = decode_boxes(outputs["box"][b, keep].float(), a, variances)
        if "landmarks" in outputs:
            pts = decode_landmarks(outputs["landmarks"][b, keep].float(), a, variances)
        else:
            pts = boxes.new_full((len(keep), 5, 2), -1.0)
        results.append(Detections(boxes, scores, pts))
    return results


def _possible(logits: torch.Tensor, score_threshold: float) -> torch.Tensor | None:
    """The rows of two-class logits (A, 2) whose face probability may exceed ``score_threshold``: softmax's
    p = σ(l_1 − l_0) > t needs l_1 − l_0 > logit(t); the test keeps a margin of 1 in the logit (a factor e in
    the odds, far beyond rounding), so every row that passes is among them → (K,) ascending indices, or None
    (every row) for other heads or a threshold outside (0, 0.99)."""
    if logits.shape[-1] != 2 or not 0 < score_threshold < 0.99:
        return None
    bound = math.log(score_threshold / (1 - score_threshold)) - 1.0
    return ((logits[:, 1] - logits[:, 0]) > bound).nonzero().squeeze(1)


@torch.no_grad()
def postprocess(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, *, score_threshold: float = 0.02,
                nms_iou: float = 0.4, pre_nms_top_k: int = PRE_NMS_TOP_K, max_detections: int = 750,
                variances: tuple[float, float] = VARIANCES, plus_one: bool = False) -> list[Detections]:
    """Decode a batch of model outputs: :func:`candidates`, then greedy NMS (:meth:`Detections.suppressed`) at
    ``nms_iou`` and the ``max_detections`` best. outputs: dict of (B, A, k); anchors: (A, 4) cx cy w h. Boxes are
    not clamped to the image; ``plus_one``: the reference implementation's NMS areas."""
    found = candidates(outputs, anchors, score_threshold=score_threshold, pre_nms_top_k=pre_nms_top_k,
                       variances=variances)
    return [d.suppressed(nms_iou, max_detections, plus_one) for d in found]


def box_vote(kept: Detections, pool: Detections, iou: float) -> Detections:
    """Box voting (Gidaris and Komodakis 2015; the RetinaFace paper's test protocol, IoU 0.4): each kept box
    (and its landmarks) becomes the score-weighted mean of the ``pool`` boxes (landmarks) overlapping it with
    IoU ≥ ``iou``; its score stays. kept: the survivors of NMS over ``pool`` (every kept box is in the pool,
    so each mean has at least one term). Boxes (K, 4), landmarks (K, 5, 2)."""
    if len(kept) == 0:
        return kept
    weights = (box_iou(kept.boxes, pool.boxes) >= iou).float() * pool.scores[None]   # (K, N)
    weights = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    pts = (weights @ pool.landmarks.flatten(1)).view(-1, 5, 2)
    return Detections(weights @ pool.boxes, kept.scores, _keep_absent(pts, kept.landmarks))


def _enlarged_input(model: torch.nn.Module, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """The network input of ``x`` enlarged to ``size``, from a model that resizes and preprocesses in its own
    runtime (:meth:`facelearn.onnx_export.OnnxRuntimeModel.enlarged_input`), else None."""
    enlarge = getattr(model, "enlarged_input", None)
    return enlarge(x, size) if enlarge is not None else None


def _keep_absent(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` landmarks (N, 5, 2) with the rows that were all −1 in ``old`` (no landmark head) −1 again."""
    new[(old == -1).flatten(1).all(1)] = -1.0
    return new


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
    return t.div_(255.0) if arr.dtype == np.uint8 else t  # float() copied the uint8 pixels: divide in place


@torch.no_grad()
def detect(model: torch.nn.Module, image: np.ndarray | torch.Tensor, *, score_threshold: float = 0.5,
           nms_iou: float = 0.4, scale: float | Sequence[float] | None = None, flip: bool = False,
           vote_iou: float | None = None, max_size: int | None = None, max_detections: int = 750) -> Detections:
    """Detect faces in one image of any size. Returns boxes, scores, landmarks in the image's pixels.

    image: H×W×3 uint8 RGB or (3, H, W) float in [0, 1]; each resized (and mirrored) pass goes through
    ``model.preprocess`` before the network (a model with an ``enlarged_input`` method, ONNX Runtime's, resizes
    and preprocesses the enlarged passes itself). The test-time protocol of the paper (chapter
    "Training and evaluating RetinaFace"): scale: the image is resized by this factor for the network (above 1
    shows small faces at the size training crops showed them); several factors make an image pyramid; None
    (the default): the pyramid :func:`facelearn.detection.test_time.pyramid_scales` chooses from the image
    size, so faces from 10 px to the whole image reach the network at sizes it learnt, and each pass keeps
    only the candidates of a learnt size (:func:`facelearn.detection.test_time.in_band`);
    flip: each resized image is also run mirrored; the candidates of all passes (before NMS) are pooled and
    the best ``PRE_NMS_TOP_K`` of them suppressed together, as for one pass; vote_iou: if given,
    :func:`box_vote` refines each survivor from that pool (the paper uses 0.4). max_size: if given, each
    resized long side is capped at it.
    """
    if vote_iou is not None and not 0 < vote_iou <= 1:
        raise ValueError(f"vote_iou must be in (0, 1], got {vote_iou}")
    x = to_tensor(image)
    h, w = x.shape[-2:]
    scales = scales_for(h, w, scale)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pool = []
    for factor in scales:
        if max_size is not None and max(h, w) * factor > max_size:
            factor = max_size / max(h, w)
        size = (max(1, round(h * factor)), max(1, round(w * factor)))
        enlarged = _enlarged_input(model, x, size) if factor > 1.0 else None
        xs = x
        if factor != 1.0 and enlarged is None:
            xs = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
        anchors = model.anchors(size, device=device)
        for mirror in (False, True) if flip else (False,):
            if enlarged is not None:  # the preprocessing is per pixel: mirroring its result mirrors its input's
                out = model((enlarged.flip(-1) if mirror else enlarged).to(device))
            else:
                out = model(model.preprocess((xs.flip(-1) if mirror else xs)[None].to(device)))
            found = candidates(out, anchors, score_threshold=score_threshold)[0]
            if scale is None:
                found = found.take(in_band(found.boxes).nonzero().squeeze(1))
            found = found.scaled(w / size[1], h / size[0])
            pool.append(found.mirrored(w) if mirror else found)
    model.train(was_training)
    pool = Detections.cat(pool)
    pool = pool.take(pool.scores.argsort(descending=True)[:PRE_NMS_TOP_K])  # one pass's cap: bounds NMS, voting
    det = pool.suppressed(nms_iou, max_detections)
    if vote_iou is not None:
        det = box_vote(det, pool, vote_iou)
    det.boxes[:, 0::2] = det.boxes[:, 0::2].clamp(0, w)
    det.boxes[:, 1::2] = det.boxes[:, 1::2].clamp(0, h)
    return Detections(det.boxes.cpu(), det.scores.cpu(), det.landmarks.cpu())
