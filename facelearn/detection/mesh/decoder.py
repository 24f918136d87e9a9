"""The mesh auto-encoder: a graph-convolution decoder from a 128-d shape-and-texture code to a coloured
SynthFace mesh, its encoder, and their pre-training on SynthFace's true meshes (book chapter "The dense
regression branch").

RetinaFace's dense branch (Deng et al. 2020, following Zhou et al. 2019) predicts a code P_ST per face and
decodes it with a *pre-trained* mesh decoder D into V vertices with position and colour:

    D(P_ST) = ChebConv_3(σ(ChebConv_2(σ(ChebConv_1(σ(W P_ST + c))))))  ∈ R^{V×6}            (decoder eq. (1))

The linear layer spreads the code over the vertices (C_0 features each); three Chebyshev convolutions of
order 3 (:mod:`~facelearn.detection.mesh.chebconv`) then smooth and refine the field over a 9-hop receptive
field. CoMA (Ranjan et al. 2018) down- and up-samples the mesh between convolutions because its meshes have
5,023 vertices; SynthFace's 644 vertices are few enough to convolve at full resolution, which keeps the
decoder one readable stack. Outputs are relative to the training set's mean mesh and colour, normalised by
one scale for positions (model units) and colours in [0, 1].

The encoder mirrors it (three ChebConvs, then a linear layer from the flattened vertex features to the code).
:func:`pretrain_autoencoder` trains both with the engine's Trainer on random SynthFace identities ×
expressions (:func:`synthface_meshes`), with an L1 loss on normalised positions and on colours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facelearn.detection.mesh.chebconv import ChebConv
from facelearn.detection.mesh.graph import synthface_graph

PUPILS = (96, 97)  # vertex indices of the two pupils (WFLW landmarks 96, 97): the inter-ocular distance


@dataclass(frozen=True)
class DecoderConfig:
    """code_dim: size of P_ST; features: C_0 per vertex after the linear layer; width: ChebConv channels;
    order: Chebyshev degree K of each layer; n_train / n_test: meshes (distinct random identities, each with a
    random expression) for pre-training and held-out evaluation; epochs, batch_size, lr: the schedule;
    colour_weight: weight of the colour term of the L1 loss; encoder_features: per-vertex channels the encoder
    flattens before its linear layer."""

    name: str = "quick"
    code_dim: int = 128
    features: int = 8
    width: int = 32
    order: int = 3
    n_train: int = 3000
    n_test: int = 300
    epochs: int = 40
    batch_size: int = 32
    lr: float = 2e-3
    colour_weight: float = 1.0
    encoder_features: int = 4


PRESETS = {"quick": DecoderConfig(),
           "full": DecoderConfig("full", n_train=30000, n_test=1000, epochs=100, width=64)}


def decoder_config(name: str, **changes: Any) -> DecoderConfig:
    """The preset called ``name`` (keys of :data:`PRESETS`) with ``changes`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown mesh-decoder preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


def true_mesh(identity, expression) -> tuple[np.ndarray, np.ndarray]:
    """SynthFace's true coloured mesh of a face: (V, 3) vertices in model units — exactly the geometry its
    renderer projects (hair grown over the scalp) — and (V, 3) albedo in [0, 1] (skin, hair, beard)."""
    from facelearn.data.synthface.render import _BEARD_ZONE, hair_mask, project

    _, cam, _ = project(identity, expression, (0.0, 0.0, 0.0), (0.0, 0.0), 1.0)
    cam[:, 2] -= 80.0  # project() places the (unrotated) head 80 units in front of the camera
    albedo = np.broadcast_to(identity.skin, cam.shape).copy()
    hair = hair_mask(identity)
    albedo[hair] = identity.hair
    if identity.beard:
        mix = 0.45 if identity.beard == 1 else 0.9
        albedo[_BEARD_ZONE & ~hair] = (1 - mix) * identity.skin + mix * identity.hair * 0.8
    return cam, albedo / 255.0


def synthface_meshes(n: int, seed: int = 0) -> torch.Tensor:
    """(n, V, 6) float32: xyz (model units) and rgb (0…1) of n random SynthFace identities, each with a random
    expression (seeded; different seeds give different identities)."""
    from facelearn.data.synthface import sample_expression, sample_identity

    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(n):
        v, c = true_mesh(sample_identity(rng), sample_expression(rng))
        out.append(np.concatenate([v, c], 1))
    return torch.from_numpy(np.stack(out)).float()


class _MeshNet(nn.Module):
    """Shared pieces: L̃ (non-persistent buffer) and the data normalisation (persistent buffers)."""

    def __init__(self) -> None:
        super().__init__()
        g = synthface_graph()
        self.n_vertices = g.n_vertices
        self.register_buffer("laplacian", g.scaled_tensor(), persistent=False)
        self.register_buffer("mean", torch.zeros(g.n_vertices, 6))
        self.register_buffer("scale", torch.ones(6))

    def set_normalisation(self, meshes: torch.Tensor) -> None:
        """Mean mesh and scales from (N, V, 6) training meshes: one scale for xyz, colours unscaled."""
        self.mean.copy_(meshes.mean(0))
        s = (meshes[..., :3] - self.mean[:, :3]).std()
        self.scale.copy_(torch.tensor([float(s)] * 3 + [1.0] * 3))


class MeshEncoder(_MeshNet):
    """forward(meshes (B, V, 6)) → codes (B, code_dim)."""

    def __init__(self, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.convs = nn.ModuleList([ChebConv(6, cfg.width, cfg.order), ChebConv(cfg.width, cfg.width, cfg.order),
                                    ChebConv(cfg.width, cfg.encoder_features, cfg.order)])
        self.fc = nn.Linear(self.n_vertices * cfg.encoder_features, cfg.code_dim)
        self.act = nn.ELU()

    def forward(self, meshes: torch.Tensor) -> torch.Tensor:
        x = (meshes - self.mean) / self.scale
        for i, conv in enumerate(self.convs):
            x = conv(x, self.laplacian)
            x = self.act(x) if i < len(self.convs) - 1 else x
        return self.fc(x.flatten(1))


class MeshDecoder(_MeshNet):
    """Decoder eq. (1). forward(codes (B, code_dim)) → (B, V, 6): xyz in model units, rgb in [0, 1]."""

    def __init__(self, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.config = cfg
        self.features = cfg.features
        self.fc = nn.Linear(cfg.code_dim, self.n_vertices * cfg.features)
        self.convs = nn.ModuleList([ChebConv(cfg.features, cfg.width, cfg.order),
                                    ChebConv(cfg.width, cfg.width, cfg.order), ChebConv(cfg.width, 6, cfg.order)])
        self.act = nn.ELU()

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.act(self.fc(codes).view(codes.shape[0], self.n_vertices, self.features))
        for i, conv in enumerate(self.convs):
            x = conv(x, self.laplacian)
            x = self.act(x) if i < len(self.convs) - 1 else x
        return x * self.scale + self.mean


def mesh_decoder() -> MeshDecoder:
    """The ``quick`` mesh decoder (for ``facelearn models``)."""
    return MeshDecoder(DecoderConfig())


def autoencoder_loss(colour_weight: float = 1.0):
    """``loss_fn(model, batch)`` for the Trainer: model is ``ModuleDict(encoder=, decoder=)``, batch a tuple
    with (B, V, 6) meshes; L1 on normalised positions + colour_weight · L1 on colours, both logged (``xyz``,
    ``rgb``: detached 0-d tensors on the meshes' device)."""

    def loss_fn(model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        meshes = batch[0].float()
        recon = model["decoder"](model["encoder"](meshes)).float()
        scale = model["decoder"].scale
        xyz = ((recon[..., :3] - meshes[..., :3]) / scale[:3]).abs().mean()
        rgb = (recon[..., 3:] - meshes[..., 3:]).abs().mean()
        return xyz + colour_weight * rgb, {"xyz": xyz.detach(), "rgb": rgb.detach()}

    return loss_fn


@torch.no_grad()
def reconstruction_error(encoder: MeshEncoder, decoder: MeshDecoder, meshes: torch.Tensor) -> dict[str, float]:
    """Held-out reconstruction error of (N, V, 6) meshes: ``vertex_iod`` mean vertex distance / inter-ocular
    distance (pupil to pupil), ``vertex_diag`` the same / bounding-box diagonal of the mesh, ``colour`` mean
    absolute colour error in grey levels (0…255)."""
    dev = next(decoder.parameters()).device
    meshes = meshes.to(dev)
    recon = decoder(encoder(meshes))
    dist = (recon[..., :3] - meshes[..., :3]).norm(dim=-1).mean(1)
    iod = (meshes[:, PUPILS[0], :3] - meshes[:, PUPILS[1], :3]).norm(dim=-1)
    diag = (meshes[..., :3].amax(1) - meshes[..., :3].amin(1)).norm(dim=-1)
    return {"vertex_iod": float((dist / iod).mean()), "vertex_diag": float((dist / diag).mean()),
            "colour": float((recon[..., 3:] - meshes[..., 3:]).abs().mean() * 255)}


def pretrain_autoencoder(cfg: DecoderConfig = DecoderConfig(), *, seed: int = 0, device=None,
                         checkpoint: str | os.PathLike | None = None, progress: bool = True,
                         train_meshes: torch.Tensor | None = None):
    """Train encoder + decoder on ``cfg.n_train`` SynthFace meshes with the engine's Trainer (Adam, cosine
    schedule). Returns (encoder, decoder, history), both in eval mode."""
    from facelearn import runtime
    from facelearn.engine import Trainer, cosine_schedule, make_loader

    runtime.seed_everything(seed)
    meshes = synthface_meshes(cfg.n_train, seed) if train_meshes is None else train_meshes
    model = nn.ModuleDict({"encoder": MeshEncoder(cfg), "decoder": MeshDecoder(cfg)})
    model["encoder"].set_normalisation(meshes)
    model["decoder"].set_normalisation(meshes)
    loader = make_loader(torch.utils.data.TensorDataset(meshes), cfg.batch_size, shuffle=True, seed=seed,
                         drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    steps = cfg.epochs * len(loader)
    trainer = Trainer(model, optimizer, autoencoder_loss(cfg.colour_weight), device=device,
                      scheduler=cosine_schedule(optimizer, steps, max(1, steps // 50)), checkpoint=checkpoint,
                      seed=seed)
    history = trainer.fit(loader, cfg.epochs, progress=progress)
    return model["encoder"].eval(), model["decoder"].eval(), history


def save_decoder(decoder: MeshDecoder, path: str | os.PathLike, metrics: dict | None = None,
                 encoder: MeshEncoder | None = None) -> Path:
    """Write the decoder's (and optionally the encoder's) weights, the config (as a dict) and ``metrics``;
    read back with :func:`load_decoder` / :func:`load_autoencoder`."""
    from dataclasses import asdict

    from facelearn.engine import save_checkpoint

    state = {"decoder": {k: v.detach().cpu() for k, v in decoder.state_dict().items()},
             "config": asdict(decoder.config), "metrics": metrics or {}}
    if encoder is not None:
        state["encoder"] = {k: v.detach().cpu() for k, v in encoder.state_dict().items()}
    return save_checkpoint(state, path)


def load_decoder(path: str | os.PathLike | None = None, device=None) -> MeshDecoder:
    """A frozen :class:`MeshDecoder` from ``path`` (default: the shipped ``mesh_decoder_quick.pt``), eval mode."""
    return load_autoencoder(path, device, encoder=False)[1]


def load_autoencoder(path: str | os.PathLike | None = None, device=None, encoder: bool = True):
    """(encoder or None, decoder) from ``path`` (default: the shipped file), frozen, eval mode, plus nothing
    else; ``checkpoint_metrics(path)`` gives the figures stored with them."""
    from facelearn.engine import load_checkpoint
    from facelearn.errors import DataError

    path = Path(path) if path is not None else SHIPPED_DECODER
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; make it with `facelearn train mesh-decoder --preset quick "
                                f"--out {path}`")
    state = load_checkpoint(path)
    if "decoder" not in state or "config" not in state:
        raise DataError.at(path, None, "not a mesh-decoder checkpoint (no 'decoder' weights or 'config')")
    cfg = DecoderConfig(**state["config"])
    nets = [MeshEncoder(cfg) if encoder else None, MeshDecoder(cfg)]
    if encoder and "encoder" not in state:
        raise DataError.at(path, None, "this checkpoint holds no encoder")
    for net, key in zip(nets, ("encoder", "decoder")):
        if net is None:
            continue
        try:
            net.load_state_dict(state[key])
        except RuntimeError as err:
            raise DataError.at(path, None, f"{key} weights do not fit their config "
                                           f"({str(err).splitlines()[0]})") from None
        for p in net.parameters():
            p.requires_grad_(False)
        net.to(device or "cpu").eval()
    return nets[0], nets[1]


def checkpoint_metrics(path: str | os.PathLike | None = None) -> dict:
    """The metrics stored with a decoder checkpoint (default: the shipped file)."""
    from facelearn.engine import load_checkpoint

    return dict(load_checkpoint(Path(path) if path is not None else SHIPPED_DECODER).get("metrics", {}))


#: The shipped decoder (``make checkpoints`` regenerates it).
SHIPPED_DECODER = Path(__file__).resolve().parents[1] / "checkpoints" / "mesh_decoder_quick.pt"
