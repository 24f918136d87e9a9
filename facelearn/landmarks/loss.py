"""The PFLD loss: landmark distances weighted by pose and by rare attributes (book: chapter "PFLD").

PFLD eq. (2) {cite}`guo2019pfld`, for M samples with landmark error vectors d_m::

    L = 1/M Σ_m  γ_m ‖d_m‖²,     γ_m = (Σ_c ω^c 1[m ∈ c]) · Σ_{k=1..3} (1 − cos θ_m^k)

θ_m^k is the difference between the predicted and the true yaw, pitch and roll (radians), and ω^c is the
inverse frequency of category c ∈ {profile, frontal, head up, head down, expression, occlusion} in the
training set. Two corrections to a well-known implementation: angles are compared in radians (cosines of
degrees oscillate), and every sample belongs to at least one category — a sample that is neither
profile, raised, lowered, expressive nor occluded is *frontal* — so no sample gets a zero weight.
``distance="l1"`` replaces the squared L2 distance by the L1 distance Σ|Δ|.

The attribute factor a_m = Σ_c ω^c 1[m ∈ c] can be applied in two ways with the same expected loss.
``attributes="loss"`` multiplies each sample's term by a_m, as eq. (2) is written. ``attributes="sampling"``
draws training faces with probability a_m / Σ a and multiplies the batch mean by ā = Σ a / M; since
E_{m ∼ a}[ā γ'_m ‖d_m‖²] = 1/M Σ_m a_m γ'_m ‖d_m‖² (γ' the angle factor), the objective is unchanged, but a
rare face's large ω no longer makes one sample carry a batch (importance sampling; chapter "PFLD").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CATEGORIES = ("profile", "frontal", "head up", "head down", "expression", "occlusion")


@dataclass(frozen=True)
class PoseThresholds:
    """When a pose counts as profile (|yaw| ≥ ``profile``) or head up/down (pitch ≥ ``up`` / ≤ −``down``),
    in degrees. Positive pitch raises the chin (facelearn's Euler convention, :mod:`facelearn.landmarks.euler`)."""

    profile: float = 30.0
    up: float = 20.0
    down: float = 20.0
    level: float = 0.0  # the pitch (degrees) that counts as level; up/down are measured from it


def categories(angles: torch.Tensor, attributes: torch.Tensor,
               thresholds: PoseThresholds = PoseThresholds()) -> torch.Tensor:
    """Membership of each sample in each of :data:`CATEGORIES`.

    angles: (N, 3) yaw, pitch, roll in radians; attributes: (N, 6) WFLW flags (pose, expression,
    illumination, make-up, occlusion, blur) → (N, 6) bool. Every row has at least one ``True``.
    """
    yaw, pitch = angles[:, 0], angles[:, 1] - math.radians(thresholds.level)
    profile = yaw.abs() >= math.radians(thresholds.profile)
    up = pitch >= math.radians(thresholds.up)
    down = pitch <= -math.radians(thresholds.down)
    frontal = ~(profile | up | down)
    attributes = attributes.bool()
    return torch.stack([profile, frontal, up, down, attributes[:, 1], attributes[:, 4]], dim=1)


def category_weights(members: torch.Tensor) -> torch.Tensor:
    """ω^c = M / M_c, the inverse fraction of training samples in category c (0 for an empty category).

    members: (M, C) bool from :func:`categories` over the whole training set → (C,) float.
    """
    counts = members.float().sum(0)
    return torch.where(counts > 0, members.shape[0] / counts.clamp(min=1), torch.zeros_like(counts))


def attribute_weight(members: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Σ_c ω^c 1[m ∈ c]: (N, C) bool, (C,) → (N,). Positive whenever the sample's categories occur in training."""
    return members.to(omega.dtype) @ omega


def angle_weight(pred_angles: torch.Tensor, true_angles: torch.Tensor) -> torch.Tensor:
    """Σ_k (1 − cos θ^k) with θ = predicted − true angle: (N, 3), (N, 3) radians → (N,)."""
    return (1 - torch.cos(pred_angles - true_angles)).sum(dim=1)


def landmark_distance(pred: torch.Tensor, target: torch.Tensor, distance: str = "l2") -> torch.Tensor:
    """Per-sample distance ‖d‖²: squared L2 Σ(Δx² + Δy²) or L1 Σ(|Δx| + |Δy|). (N, 2P), (N, 2P) → (N,)."""
    diff = pred - target
    if distance == "l2":
        return (diff * diff).sum(dim=1)
    if distance == "l1":
        return diff.abs().sum(dim=1)
    raise ValueError(f"distance must be 'l2' or 'l1', got {distance!r}")


def pfld_loss(pred: torch.Tensor, target: torch.Tensor, pred_angles: torch.Tensor | None = None,
              true_angles: torch.Tensor | None = None, weights: torch.Tensor | None = None,
              distance: str = "l2") -> torch.Tensor:
    """PFLD eq. (2): the mean over the batch of γ_m · ‖d_m‖².

    pred, target: (N, 2P) landmarks; pred_angles, true_angles: (N, 3) radians; weights: (N,) attribute
    weights from :func:`attribute_weight`. With ``pred_angles`` and ``weights`` both ``None`` this is the
    plain loss (γ = 1). Gradients reach the auxiliary net through the angle term.
    """
    d = landmark_distance(pred, target, distance)
    gamma = torch.ones_like(d)
    if weights is not None:
        gamma = gamma * weights
    if pred_angles is not None:
        if true_angles is None:
            raise ValueError("pred_angles given without true_angles")
        gamma = gamma * angle_weight(pred_angles, true_angles)
    return (gamma * d).mean()


@dataclass(frozen=True)
class LossConfig:
    """Which loss to train with: ``weighted`` (PFLD eq. 2) or plain, with an L2 or L1 distance.

    ``attributes``: apply the attribute factor in the ``loss`` or by ``sampling`` faces (module docstring).
    ``level_pitch``: ``zero`` (a pitch of 0° is level) or ``median`` (the training set's median pitch is
    level: a 3-D reference face unlike the faces shifts every estimated pitch by the same amount).
    """

    weighted: bool = True
    distance: str = "l2"
    attributes: str = "loss"
    level_pitch: str = "zero"

    def __post_init__(self) -> None:
        if self.attributes not in ("loss", "sampling"):
            raise ValueError(f"attributes must be 'loss' or 'sampling', got {self.attributes!r}")
        if self.level_pitch not in ("zero", "median"):
            raise ValueError(f"level_pitch must be 'zero' or 'median', got {self.level_pitch!r}")


def _full(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 if autocast made it half precision (the loss is summed in full precision)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class PFLDObjective:
    """``loss_fn(model, batch) -> (loss, logs)`` for :class:`facelearn.engine.Trainer`.

    model: ``nn.ModuleDict`` with ``pfld`` and ``aux`` (:func:`facelearn.landmarks.pfld.pfld_pair`);
    batch: dict from :class:`facelearn.landmarks.crops.LandmarkCrops` with ``image`` (N, 3, 112, 112),
    ``landmarks`` (N, 2P) in [0, 1], ``angles`` (N, 3) radians, ``attributes`` (N, 6); ``omega``: (C,)
    category weights of the training set; ``thresholds``: the training set's pose thresholds (its level
    pitch); ``mean_attribute_weight``: ā = mean a_m, the factor of every face when ``config.attributes`` is
    ``"sampling"`` (the loader then draws faces with probability ∝ a_m).
    """

    def __init__(self, omega: torch.Tensor, config: LossConfig = LossConfig(),
                 thresholds: PoseThresholds = PoseThresholds(), mean_attribute_weight: float = 1.0) -> None:
        self.omega, self.config, self.thresholds = omega, config, thresholds
        self.mean_attribute_weight = mean_attribute_weight

    def __call__(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss (PFLD eq. 2, or the plain mean distance) and its logs, detached 0-d tensors on the
        batch's device: ``plain`` the mean ‖d_m‖², and with the weighted loss ``angle_error_deg`` the mean
        |θ| in degrees."""
        pred, feature = model["pfld"](model["pfld"].preprocess(batch["image"]))
        pred = _full(pred)
        plain = landmark_distance(pred, batch["landmarks"], self.config.distance).mean()
        if not self.config.weighted:
            return plain, {"plain": plain.detach()}
        angles = _full(model["aux"](feature))
        if self.config.attributes == "sampling":  # the faces were drawn with probability ∝ a_m
            w = torch.full((len(pred),), self.mean_attribute_weight, dtype=pred.dtype, device=pred.device)
        else:
            members = categories(batch["angles"], batch["attributes"], self.thresholds)
            if self.omega.device != pred.device:  # copied once: a copy each step would wait for the device
                self.omega = self.omega.to(pred.device)
            w = attribute_weight(members, self.omega)
        loss = pfld_loss(pred, batch["landmarks"], angles, batch["angles"], w, self.config.distance)
        angle_error = torch.rad2deg((angles - batch["angles"]).abs()).mean()
        return loss, {"plain": plain.detach(), "angle_error_deg": angle_error.detach()}
