"""The mesh auto-encoder, its pre-training, the shipped decoder and its command (chapter "The dense
regression branch")."""

import numpy as np
import pytest
import torch

from facelearn.data.synthface import TOPOLOGY, sample_expression, sample_identity
from facelearn.data.synthface.render import project as synthface_project
from facelearn.detection.mesh.decoder import (SHIPPED_DECODER, DecoderConfig, MeshDecoder, MeshEncoder,
                                              checkpoint_metrics, decoder_config, load_autoencoder, load_decoder,
                                              pretrain_autoencoder, reconstruction_error, save_decoder,
                                              synthface_meshes, true_mesh)
from facelearn.detection.mesh.graph import hops, synthface_graph
from facelearn.errors import DataError

SMALL = DecoderConfig(features=4, width=8, order=2, n_train=48, n_test=16, epochs=3, batch_size=16, lr=3e-3)


def test_true_mesh_is_what_synthface_projects():
    rng = np.random.default_rng(1)
    identity, expression = sample_identity(rng), sample_expression(rng)
    v, colour = true_mesh(identity, expression)
    _, cam, _ = synthface_project(identity, expression, (0.0, 0.0, 0.0), (0.0, 0.0), 100.0)
    assert np.abs(cam - (v + [0, 0, 80])).max() < 1e-9
    assert colour.shape == (len(TOPOLOGY.vertices), 3) and 0 <= colour.min() and colour.max() <= 1
    assert np.allclose(colour[54], identity.skin / 255)  # the nose tip is skin


def test_meshes_are_seeded_and_shapes():
    a, b, c = synthface_meshes(4, seed=0), synthface_meshes(4, seed=0), synthface_meshes(4, seed=1)
    assert a.shape == (4, 644, 6) and torch.equal(a, b) and not torch.equal(a, c)
    dec, enc = MeshDecoder(SMALL), MeshEncoder(SMALL)
    assert enc(a).shape == (4, 128) and dec(torch.zeros(2, 128)).shape == (2, 644, 6)


def test_decoder_receptive_field_is_three_layers_of_order_k():
    """A code can only reach vertices through the linear layer, so check the graph part: perturbing one vertex's
    features after the linear layer moves outputs exactly within 3·order hops."""
    torch.manual_seed(0)
    dec = MeshDecoder(SMALL).double()
    x = torch.randn(1, 644, SMALL.features, dtype=torch.float64)

    def graph_part(t):
        for i, conv in enumerate(dec.convs):
            t = conv(t, dec.laplacian.double())
            t = dec.act(t) if i < len(dec.convs) - 1 else t
        return t

    x2 = x.clone()
    x2[0, 54] += 1.0
    moved = (graph_part(x2) - graph_part(x)).abs().amax(-1)[0] > 1e-12
    h = torch.from_numpy(hops(synthface_graph().adjacency, 54))
    assert moved[h == 3 * SMALL.order].any() and not moved[h > 3 * SMALL.order].any()


def test_pretraining_learns_and_roundtrips(tmp_path):
    meshes = synthface_meshes(SMALL.n_train, seed=0)
    encoder, decoder, history = pretrain_autoencoder(SMALL, train_meshes=meshes, progress=False, device="cpu")
    assert history[-1]["loss"] < history[0]["loss"]
    err = reconstruction_error(encoder, decoder, synthface_meshes(8, seed=5))
    assert set(err) == {"vertex_iod", "vertex_diag", "colour"} and all(np.isfinite(list(err.values())))
    path = save_decoder(decoder, tmp_path / "d.pt", {"vertex_iod": err["vertex_iod"]}, encoder=encoder)
    enc2, dec2 = load_autoencoder(path)
    assert reconstruction_error(enc2, dec2, synthface_meshes(8, seed=5)) == pytest.approx(err)
    assert all(not p.requires_grad for p in dec2.parameters())
    assert checkpoint_metrics(path)["vertex_iod"] == pytest.approx(err["vertex_iod"])


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="facelearn train mesh-decoder"):
        load_decoder(tmp_path / "missing.pt")
    torch.save({"weights": {}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match="not a mesh-decoder checkpoint"):
        load_decoder(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="unknown mesh-decoder preset"):
        decoder_config("huge")


@pytest.mark.skipif(not SHIPPED_DECODER.is_file(), reason="shipped decoder not built (make checkpoints)")
def test_shipped_decoder_reproduces_its_figures():
    """Re-evaluate the shipped auto-encoder on its held-out identities (the figures the chapter quotes)."""
    stored = checkpoint_metrics()
    encoder, decoder = load_autoencoder()
    err = reconstruction_error(encoder, decoder, synthface_meshes(stored["n_test"], seed=stored["seed"] + 1000))
    for key in ("vertex_iod", "vertex_diag", "colour"):
        assert err[key] == pytest.approx(stored[key], rel=1e-3, abs=1e-4)
    assert stored["vertex_iod"] < 0.05 and stored["colour"] < 10  # quality floor: < 5 % IOD, < 10 grey levels
    assert SHIPPED_DECODER.stat().st_size < 5e6


def test_cli_help_and_bad_input(capsys):
    from facelearn.cli import main

    with pytest.raises(SystemExit):
        main(["train", "mesh-decoder", "--help"])
    assert "facelearn train mesh-decoder --preset quick --out" in capsys.readouterr().out
    assert main(["train", "mesh-decoder", "--out", "x.pt", "--epochs", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--epochs: must be an integer >= 1" in err[0]


def test_cli_trains_a_tiny_decoder(tmp_path, capsys):
    from facelearn.cli import main

    out = tmp_path / "dec.pt"
    assert main(["train", "mesh-decoder", "--out", str(out), "--epochs", "1", "--n-train", "32", "--quiet",
                 "--device", "cpu"]) == 0
    assert out.is_file() and "mean vertex error" in capsys.readouterr().out
    assert load_decoder(out)(torch.zeros(1, 128)).shape == (1, 644, 6)
