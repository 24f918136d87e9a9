"""The dense regression branch's self-supervised pixel loss (book chapter "The dense regression branch").

RetinaFace's fourth head predicts, per anchor, 144 numbers P = (P_ST, P_cam, P_ill): a 128-d shape and
texture code, 7 camera and 9 illumination parameters. For a positive anchor the code is decoded by the
frozen, pre-trained mesh decoder D, rendered with the camera and light, and compared with the face crop I*:

    L_pixel = 1/(W·H) Σ_{i,j} ‖R(D(P_ST), P_cam, P_ill)_{i,j} − I*_{i,j}‖₁                 (RetinaFace eq. (3))

added to the multi-task loss with λ3 = 0.01 (the paper's weight). Choices of this implementation:

* the head's outputs are first multiplied by ``output_scale`` (0.1): the head starts at zero and Adam moves
  each weight by about the learning rate per step whatever λ3 is, so unscaled outputs would swing the
  camera by radians within a few steps; then the code is mapped as P_ST = μ + s ⊙ raw, with μ, s the mean
  and spread of the pre-trained encoder's codes on SynthFace meshes, so a zero output decodes to an average
  face; camera and light go through :func:`~facelearn.detection.mesh.render.decode_camera` /
  ``decode_light`` (zero: a frontal face centred in its crop, lit from the camera);
* the crop is square, centred on the matched ground-truth box, CROP_MARGIN × its height, resampled to
  S × S (S = 64 by default) with ``roi_align``; the render's background is the crop's mean colour, so a face
  that shrinks away is not rewarded;
* to bound the CPU cost only ``faces_per_image`` faces per image are rendered (the largest ground-truth
  faces at least ``min_face`` pixels tall, each through its best-overlapping positive anchor); the batch
  always decodes B × ``faces_per_image`` places, an image's missing faces undrawn and with zero weight, so
  that the choice never makes the host wait for the device (only the renderer's pixel–triangle pair count
  does);
* the decoder is frozen (its weights get no gradient; the gradient flows *through* it to the head), and the
  render runs in float32 with autocast disabled, so the branch works under AMP.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import roi_align

from facelearn.detection.mesh.render import CROP_MARGIN, decode_camera, decode_light, render
from facelearn.engine.logs import log_dtype

#: values per anchor of the dense head: code, camera, light
CODE_DIM, CAMERA_DIM, LIGHT_DIM = 128, 7, 9
DENSE_VALUES = CODE_DIM + CAMERA_DIM + LIGHT_DIM


def face_crops(images: torch.Tensor, boxes: torch.Tensor, batch_index: torch.Tensor, size: int) -> torch.Tensor:
    """Square crops (K, 3, size, size) centred on boxes (K, 4) x1 y1 x2 y2 of images (B, 3, H, W), side
    CROP_MARGIN × box height (the render's canonical framing)."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = CROP_MARGIN * (boxes[:, 3] - boxes[:, 1])[:, None] / 2
    rois = torch.cat([batch_index[:, None].to(boxes.dtype), centre - half, centre + half], 1)
    return roi_align(images, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def _least_at_or_above(value: float, dtype: torch.dtype) -> float:
    """The least number of ``dtype`` (float32 or float64) that is ≥ ``value``: for x of that dtype,
    ``x >= it`` holds exactly when ``float(x) >= value``, so the comparison can stay on the device."""
    if dtype == torch.float64:
        return float(value)
    with np.errstate(over="ignore"):
        least = np.float32(value)
        if float(least) < value:
            least = np.nextafter(least, np.float32(np.inf))
    return float(least)


def select_faces(positives: torch.Tensor, matched: torch.Tensor, overlap: torch.Tensor, gt: torch.Tensor,
                 faces_per_image: int, min_face: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which anchors to render: per image, the ``faces_per_image`` largest ground-truth faces (≥ ``min_face``
    px tall) that have a positive anchor, each through its best-IoU positive anchor (the first of equals).

    positives, matched, overlap: (B, A); gt: (B, M, 4). Returns (anchor, face, chosen), each (B, F) with
    F = ``faces_per_image``: row b holds image b's chosen faces first, largest first (equal heights: the
    higher best IoU first), each with its anchor; ``chosen`` (bool) marks them, the other places point at
    anchor 0 and face 0. The shapes never depend on the data, so nothing waits for the device: every face's
    best IoU and first anchor at it are scatter reductions over the anchors, and the order is three stable
    sorts of the faces.
    """
    if faces_per_image < 0:
        raise ValueError(f"faces_per_image must be ≥ 0, got {faces_per_image}")
    with torch.no_grad():
        bsz, n_anchors = positives.shape
        n_faces, dev = gt.shape[1], positives.device
        face = torch.where(positives, matched, 0)
        iou = torch.where(positives, overlap, float("-inf"))
        best = iou.new_full((bsz, n_faces), float("-inf")).scatter_reduce(1, face, iou, "amax")
        rank = torch.arange(n_anchors, device=dev).expand(bsz, n_anchors)
        at_best = positives & (iou == best.gather(1, face))
        no_anchor = torch.full((bsz, n_faces), n_anchors, dtype=torch.long, device=dev)
        anchor = no_anchor.scatter_reduce(1, face, torch.where(at_best, rank, n_anchors), "amin")  # (B, M)
        heights = gt[..., 3] - gt[..., 1]
        if heights.dtype != torch.float64:
            heights = heights.float()  # exact for float16 / bfloat16 boxes
        eligible = (anchor < n_anchors) & (heights >= _least_at_or_above(min_face, heights.dtype))
        # faces in the order their best anchors come in a sort of the positives by IoU (ties: lower anchor
        # first), then by height, largest first, keeping that order among equals; the eligible ones first
        order = torch.argsort(anchor, dim=1, stable=True)
        for key in (best, heights):
            order = order.gather(1, torch.argsort(key.gather(1, order), dim=1, descending=True, stable=True))
        order = order.gather(1, torch.argsort((~eligible).gather(1, order).to(torch.uint8), dim=1, stable=True))
        top = order[:, :faces_per_image]
        chosen = eligible.gather(1, top)
        if top.shape[1] < faces_per_image:  # fewer faces than places
            pad = faces_per_image - top.shape[1]
            top = torch.cat([top, top.new_zeros(bsz, pad)], 1)
            chosen = torch.cat([chosen, chosen.new_zeros(bsz, pad)], 1)
        return torch.where(chosen, anchor.gather(1, top), 0), torch.where(chosen, top, 0), chosen


class DenseBranch:
    """Decode, render and score the dense head's predictions with a frozen decoder (default: the shipped one).

    ``decode(raw (K, 144))`` → (mesh (K, V, 6), camera (K, 7), light (K, 9));
    ``loss(dense (B, A, 144), positives, matched, overlap, gt (B, M, 4), images (B, 3, H, W) in [0, 1])``
    → (L_pixel averaged over the chosen faces, their number as a detached 0-d tensor).
    """

    def __init__(self, decoder=None, encoder=None, *, size: int = 64, faces_per_image: int = 2,
                 min_face: float = 16.0, sigma: float = 0.5, gamma: float = 0.01, code_samples: int = 256,
                 output_scale: float = 0.1) -> None:
        from facelearn.data.synthface import TOPOLOGY
        from facelearn.detection.mesh.decoder import load_autoencoder, synthface_meshes

        if decoder is None:
            encoder, decoder = load_autoencoder()
        self.decoder = decoder.eval()
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            if encoder is not None:
                dev = next(encoder.parameters()).device
                codes = encoder(synthface_meshes(code_samples, seed=12345).to(dev)).cpu()
                self.code_mean, self.code_std = codes.mean(0), codes.std(0).clamp(min=1e-3)
            else:
                self.code_mean, self.code_std = torch.zeros(CODE_DIM), torch.ones(CODE_DIM)
        self.faces = torch.from_numpy(np.asarray(TOPOLOGY.triangles)).long()
        self.size, self.faces_per_image, self.min_face = size, faces_per_image, min_face
        self.sigma, self.gamma, self.output_scale = sigma, gamma, output_scale

    def _to(self, device: torch.device) -> None:
        if self.faces.device != device:
            self.decoder.to(device)
            self.faces, self.code_mean, self.code_std = (t.to(device) for t in (self.faces, self.code_mean, self.code_std))

    def decode(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._to(raw.device)
        raw = raw.float() * self.output_scale
        mesh = self.decoder(self.code_mean + self.code_std * raw[:, :CODE_DIM])
        return mesh, decode_camera(raw[:, CODE_DIM:CODE_DIM + CAMERA_DIM]), decode_light(raw[:, CODE_DIM + CAMERA_DIM:])

    def render(self, raw: torch.Tensor, background: torch.Tensor | None = None, visible: torch.Tensor | None = None):
        """The rendered faces of raw head outputs (K, 144): :class:`~facelearn.detection.mesh.render.Rendered`
        (background (K, 3); visible (K,) bool: the faces to draw, the others left to their background)."""
        mesh, camera, light = self.decode(raw)
        return render(mesh, camera, light, self.faces, self.size, sigma=self.sigma, gamma=self.gamma,
                      background=background, visible=visible)

    def loss(self, dense: torch.Tensor, positives: torch.Tensor, matched: torch.Tensor, overlap: torch.Tensor,
             gt: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L_pixel (RetinaFace eq. (3)) averaged over the faces :func:`select_faces` chooses, and their number.

        dense: (B, A, 144) head outputs; positives, matched, overlap: (B, A); gt: (B, M, 4) x1 y1 x2 y2 pixels;
        images: (B, 3, H, W) RGB in [0, 1]. Returns (0-d float32 loss, 0 without faces; 0-d count of faces in
        :func:`~facelearn.engine.logs.log_dtype`, detached). Always B · faces_per_image places are decoded, so no
        shape depends on the data; a place without a face has a zero head output, is not drawn (it costs no
        pixel–triangle pair) and weighs zero. The chosen faces come first, image by image, so the mean adds
        them in the order a list of them would (a BLAS may still round the decoder's first matrix product
        differently for another number of rows, as MKL does for fewer than 4).
        """
        with torch.autocast(dense.device.type, enabled=False):
            anchor, face, chosen = select_faces(positives, matched, overlap, gt, self.faces_per_image, self.min_face)
            count = chosen.sum()
            if chosen.numel() == 0:  # no place to render (faces_per_image 0 or no image): a shape, not a value
                return dense.float().sum() * 0.0, count.to(log_dtype(dense.device))
            with torch.no_grad():
                order = torch.argsort((~chosen).flatten().to(torch.uint8), stable=True)
                b = torch.div(order, chosen.shape[1], rounding_mode="floor")
                a, f, chosen = anchor.flatten()[order], face.flatten()[order], chosen.flatten()[order]
            target = face_crops(images.float(), gt[b, f].float(), b, self.size)
            background = target.mean((2, 3)).detach()
            out = self.render(torch.where(chosen[:, None], dense[b, a], 0), background, visible=chosen)
            per_face = (out.image - target).abs().sum(1).mean((1, 2))   # 1/(W·H) Σ ‖·‖₁ over the crop
            total = torch.where(chosen, per_face, 0).sum()
            return total / count.clamp(min=1).to(total.dtype), count.to(log_dtype(dense.device))
