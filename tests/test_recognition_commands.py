"""`facelearn train recognition` and `facelearn eval verification` end to end on tiny files."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from facelearn.cli import main
from facelearn.recognition import training


def _faces(root, n_ids=6, per=4, size=32):
    rng = np.random.default_rng(0)
    for i in range(n_ids):
        base = rng.integers(0, 255, (4, 4, 3))
        for k in range(1, per + 1):
            img = cv2.resize((base + rng.normal(0, 10, base.shape)).clip(0, 255).astype(np.uint8), (size, size),
                             interpolation=cv2.INTER_NEAREST)
            path = root / f"p{i:02d}" / f"{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
    lines = ["10 1"]
    for f in range(10):
        i = f % n_ids
        lines += [f"p{i:02d} 1 2", f"p{i:02d} 3 p{(i + 1) % n_ids:02d} 4"]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def test_train_then_evaluate_on_pairs(tmp_path, capsys):
    root = _faces(tmp_path / "ids")
    ckpt = tmp_path / "model.pt"
    assert main(["train", "recognition", "--data", str(root), "--epochs", "1", "--batch-size", "8",
                 "--val", str(root / "pairs.txt"), "--device", "cpu", "--out", str(ckpt)]) == 0
    backbone, recipe, extra = training.load_model(ckpt)
    assert recipe.loss == "arcface" and 0.0 <= extra["accuracy"] <= 1.0
    assert ckpt.stat().st_size < 5e6
    capsys.readouterr()
    assert main(["eval", "verification", "--pairs", str(root / "pairs.txt"), "--checkpoint", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pairs"] == 20 and out["accuracy"] == pytest.approx(extra["accuracy"], abs=1e-6)
    assert set(out["tar_at_far"]) == {"0.001", "0.01", "0.1"}
    # the same pairs as an insightface .bin set give the same figures
    from facelearn.data import identities
    paths, same = identities.read_pairs(root / "pairs.txt")
    identities.write_bin(tmp_path / "set.bin", [p.read_bytes() for pair in paths for p in pair], same.tolist())
    assert main(["eval", "verification", "--bin", str(tmp_path / "set.bin"), "--checkpoint", str(ckpt), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == pytest.approx(out["accuracy"])


def test_eval_precomputed_embeddings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    issame = np.tile([True, False], 50)
    a = rng.normal(size=(100, 8))
    b = np.where(issame[:, None], a + 0.1 * rng.normal(size=a.shape), rng.normal(size=a.shape))
    emb = np.stack([a, b], 1).reshape(200, 8)
    np.save(tmp_path / "E.npy", emb), np.save(tmp_path / "S.npy", issame)
    assert main(["eval", "verification", "--embeddings", str(tmp_path / "E.npy"), "--issame", str(tmp_path / "S.npy"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accuracy"] > 0.95 and out["std"] >= 0


def test_eval_bad_input_is_one_line_exit_2(tmp_path, capsys):
    np.save(tmp_path / "E.npy", np.zeros((3, 4)))
    np.save(tmp_path / "S.npy", np.array([True, False]))
    assert main(["eval", "verification", "--embeddings", str(tmp_path / "E.npy"), "--issame", str(tmp_path / "S.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert "E.npy: expected (4, D) embeddings" in err and "\n" not in err
    assert main(["eval", "verification", "--bin", str(tmp_path / "missing.bin"), "--checkpoint", str(tmp_path / "c.pt")]) == 2


def test_triplet_training_with_pk_batches(tmp_path):
    labels = torch.arange(24) % 6
    sampler = training.PKSampler(labels, p=3, k=2, seed=0)
    for batch in sampler:
        ids = labels[batch]
        assert len(batch) == 6 and all((ids == c).sum() == 2 for c in ids.unique())
    ds = torch.utils.data.TensorDataset(torch.randn(24, 3, 64, 64), labels)
    result = training.train(training.RecognitionRecipe.quick(loss="triplet", epochs=1, batch_size=8,
                                                             images_per_identity=2), ds, 6, device="cpu",
                            progress=False)
    assert result.head is None and np.isfinite(result.history[0]["loss"])
    assert sampler.batch_size == 6


@pytest.mark.parametrize("loss", [name for name in training.LOSSES if name != "triplet"])
def test_every_loss_trains_one_step(loss):
    ds = torch.utils.data.TensorDataset(torch.randn(16, 3, 64, 64), torch.arange(16) % 4)
    recipe = training.RecognitionRecipe.quick(loss=loss, epochs=1, batch_size=8, m=training.default_margin(loss))
    result = training.train(recipe, ds, 4, device="cpu", progress=False)
    head = result.head
    assert np.isfinite(result.history[0]["loss"]) and head.logits(torch.randn(2, 128)).shape == (2, 4)


def test_train_resumes_from_its_trainer_checkpoint(tmp_path):
    """``--resume``: the second run continues the first one's Trainer state (epoch 2 only), ``--fresh`` starts
    over."""
    from facelearn.engine import load_checkpoint

    torch.set_num_threads(1)
    root = _faces(tmp_path / "ids")
    resume, out = tmp_path / "trainer.pt", tmp_path / "m.pt"
    common = ["train", "recognition", "--data", str(root), "--batch-size", "8", "--device", "cpu", "--out", str(out),
              "--resume", str(resume)]
    assert main(common + ["--epochs", "1"]) == 0
    first = load_checkpoint(resume)
    assert [h["epoch"] for h in first["history"]] == [1] and first["facelearn"]["model"] == "synthface-cnn"
    assert main(common + ["--epochs", "2"]) == 0
    second = load_checkpoint(resume)
    assert [h["epoch"] for h in second["history"]] == [1, 2]
    assert second["history"][0] == first["history"][0]  # epoch 1 was not trained again
    assert main(common + ["--epochs", "1", "--fresh"]) == 0
    assert [h["epoch"] for h in load_checkpoint(resume)["history"]] == [1]
