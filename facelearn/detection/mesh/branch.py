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
  faces at least ``min_face`` pixels tall, each through its best-overlapping positive anchor);
* the decoder is frozen (its weights get no gradient; the gradient flows *through* it to the head), and the
  render runs in float32 with autocast disabled, so the branch works under AMP.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import roi_align

from facelearn.detection.mesh.render import CROP_MARGIN, decode_camera, decode_light, render

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


def select_faces(positives: torch.Tensor, matched: torch.Tensor, overlap: torch.Tensor, gt: torch.Tensor,
                 faces_per_image: int, min_face: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which anchors to render: per image, the ``faces_per_image`` largest ground-truth faces (≥ ``min_face``
    px tall) that have a positive anchor, each through its best-IoU positive anchor.
    positives, matched, overlap: (B, A); gt: (B, M, 4). Returns (batch index, anchor index, face index)."""
    out_b, out_a, out_f = [], [], []
    with torch.no_grad():
        for b in range(positives.shape[0]):
            idx = torch.nonzero(positives[b]).flatten()
            if idx.numel() == 0:
                continue
            faces = matched[b, idx]
            heights = gt[b, faces, 3] - gt[b, faces, 1]
            # best anchor per face: sort by IoU, keep the first occurrence of every face
            order = torch.argsort(overlap[b, idx], descending=True)
            seen: dict[int, int] = {}
            for k in order.tolist():
                f = int(faces[k])
                if f not in seen and float(heights[k]) >= min_face:
                    seen[f] = int(idx[k])
            chosen = sorted(seen.items(), key=lambda fa: -float(gt[b, fa[0], 3] - gt[b, fa[0], 1]))
            for f, a in chosen[:faces_per_image]:
                out_b.append(b), out_a.append(a), out_f.append(f)
    dev = positives.device
    return (torch.tensor(out_b, dtype=torch.long, device=dev), torch.tensor(out_a, dtype=torch.long, device=dev),
            torch.tensor(out_f, dtype=torch.long, device=dev))


class DenseBranch:
    """Decode, render and score the dense head's predictions with a frozen decoder (default: the shipped one).

    ``decode(raw (K, 144))`` → (mesh (K, V, 6), camera (K, 7), light (K, 9));
    ``loss(dense (B, A, 144), positives, matched, overlap, gt (B, M, 4), images (B, 3, H, W) in [0, 1])``
    → (L_pixel averaged over the rendered faces, number of faces rendered).
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

    def render(self, raw: torch.Tensor, background: torch.Tensor | None = None):
        """The rendered faces of raw head outputs (K, 144): :class:`~facelearn.detection.mesh.render.Rendered`."""
        mesh, camera, light = self.decode(raw)
        return render(mesh, camera, light, self.faces, self.size, sigma=self.sigma, gamma=self.gamma,
                      background=background)

    def loss(self, dense: torch.Tensor, positives: torch.Tensor, matched: torch.Tensor, overlap: torch.Tensor,
             gt: torch.Tensor, images: torch.Tensor) -> tuple[torch.Tensor, int]:
        with torch.autocast(dense.device.type, enabled=False):
            b, a, f = select_faces(positives, matched, overlap, gt, self.faces_per_image, self.min_face)
            if b.numel() == 0:
                return dense.float().sum() * 0.0, 0
            target = face_crops(images.float(), gt[b, f].float(), b, self.size)
            background = target.mean((2, 3)).detach()
            out = self.render(dense[b, a], background)
            per_face = (out.image - target).abs().sum(1).mean((1, 2))   # 1/(W·H) Σ ‖·‖₁ over the crop
            return per_face.mean(), int(b.numel())
