"""Face verification as the field measures it (book chapter "CosFace and ArcFace", section "Verification").

A verification set is a list of image pairs with a same/different flag (LFW ``pairs.txt``, insightface
``.bin``). Each image is embedded together with its horizontal flip, the two embeddings are summed and
normalised; a pair's score is the cosine similarity. Accuracy follows LFW's 10-fold protocol: the
threshold is chosen on nine folds and the accuracy is measured on the tenth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from facelearn.recognition.normalisation import l2_normalise


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch_size: int = 256, flip: bool = True,
          progress: bool = False, dedupe: bool = True) -> torch.Tensor:
    """Normalised embeddings of images (N, 3, H, W) RGB, uint8 or float in [0, 1] → (N, D) float32 on the CPU;
    the model's ``preprocess`` makes its input.

    With ``flip`` the embedding of each image and of its mirror image are summed before normalising
    (ArcFace sec. 4.1's "flip" test-time augmentation). The model runs in eval mode on its own device.
    ``dedupe``: identical images (pair lists repeat each image many times) are embedded once.
    """
    if dedupe and len(images) > 1:
        unique, inverse = torch.unique(images.reshape(len(images), -1), dim=0, return_inverse=True)
        if len(unique) < len(images):
            e = embed(model, unique.view(-1, *images.shape[1:]), batch_size, flip, progress, dedupe=False)
            return e[inverse]
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for start in tqdm(range(0, len(images), batch_size), disable=not progress, desc="embedding"):
        x = model.preprocess(images[start:start + batch_size].to(dev))
        e = model(x).float()
        if flip:
            e = e + model(torch.flip(x, dims=[3])).float()
        out.append(l2_normalise(e).cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def pair_scores(embeddings: torch.Tensor | np.ndarray) -> np.ndarray:
    """Cosine similarity of consecutive rows (0,1), (2,3), …: embeddings (2P, D) → (P,) float64.

    The layout of insightface's ``.bin`` sets: images 2i and 2i+1 form pair i.
    """
    e = torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)
    if e.ndim != 2 or len(e) % 2:
        raise ValueError(f"expected an even number of embedding rows (2P, D), got shape {tuple(e.shape)}")
    e = l2_normalise(e)
    return (e[0::2] * e[1::2]).sum(1).numpy()


def best_threshold(scores: np.ndarray, issame: np.ndarray) -> tuple[float, float]:
    """The threshold t maximising the accuracy of "same ⇔ score > t" on (scores, issame) → (t, accuracy).

    Exact: every midpoint between consecutive distinct scores (and both ends) is tried.
    """
    s = np.unique(scores)
    candidates = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    order = np.argsort(scores, kind="stable")
    ss, yy = scores[order], issame[order].astype(bool)
    # accuracy(t) = (#same with score > t + #different with score ≤ t) / P, by counting
    k = np.searchsorted(ss, candidates, side="right")  # number of scores ≤ t
    diff_le = np.concatenate([[0], np.cumsum(~yy)])[k]
    same_gt = yy.sum() - np.concatenate([[0], np.cumsum(yy)])[k]
    acc = (diff_le + same_gt) / len(ss)
    i = int(np.argmax(acc))
    return float(candidates[i]), float(acc[i])


def tar_at_far(scores: np.ndarray, issame: np.ndarray, far: float) -> tuple[float, float]:
    """True accept rate at the largest threshold whose false accept rate is ≤ ``far`` → (TAR, threshold)."""
    impostor = np.sort(scores[~issame])[::-1]
    genuine = scores[issame]
    n_false = int(np.floor(far * len(impostor)))  # impostors allowed above the threshold
    threshold = impostor[n_false] if n_false < len(impostor) else -np.inf
    return float((genuine > threshold).mean()), float(threshold)


@dataclass
class VerificationResult:
    """Accuracy over the folds (mean, std), the thresholds chosen, ROC and TAR at the requested FARs."""

    accuracy: float
    std: float
    threshold: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    tar_at_far: dict[str, float] = field(default_factory=dict)
    roc_auc: float = float("nan")
    n_pairs: int = 0
    fpr: np.ndarray | None = None
    tpr: np.ndarray | None = None

    def as_dict(self) -> dict:
        """JSON-ready summary (without the ROC arrays)."""
        return {"accuracy": self.accuracy, "std": self.std, "threshold": self.threshold,
                "fold_accuracies": self.fold_accuracies, "tar_at_far": self.tar_at_far, "roc_auc": self.roc_auc,
                "pairs": self.n_pairs}


def evaluate(scores: np.ndarray, issame: np.ndarray, n_folds: int = 10,
             fars: tuple[float, ...] = (1e-3, 1e-2, 1e-1)) -> VerificationResult:
    """LFW's 10-fold protocol on pair scores (P,) and flags (P,): for each fold, the best threshold on the
    other nine folds is applied to it; accuracy is the mean ± std over folds (consecutive folds, as LFW's
    pairs are ordered by fold). Also the ROC and TAR at each FAR in ``fars`` over all pairs.
    """
    from sklearn.metrics import auc, roc_curve

    scores = np.asarray(scores, dtype=np.float64)
    issame = np.asarray(issame).astype(bool)
    if scores.shape != issame.shape or scores.ndim != 1:
        raise ValueError(f"scores and issame must be two 1-D arrays of one length, got {scores.shape}, {issame.shape}")
    if len(scores) < n_folds or issame.all() or not issame.any():
        raise ValueError(f"need at least {n_folds} pairs with both same and different pairs, got {len(scores)}")
    folds = np.array_split(np.arange(len(scores)), n_folds)
    accs, thresholds = [], []
    for test in folds:
        train = np.setdiff1d(np.arange(len(scores)), test)
        t, _ = best_threshold(scores[train], issame[train])
        accs.append(float(((scores[test] > t) == issame[test]).mean()))
        thresholds.append(t)
    fpr, tpr, _ = roc_curve(issame, scores)
    tars = {f"{far:g}": tar_at_far(scores, issame, far)[0] for far in fars}
    return VerificationResult(float(np.mean(accs)), float(np.std(accs)), float(np.mean(thresholds)), accs, thresholds,
                              tars, float(auc(fpr, tpr)), len(scores), fpr, tpr)


def verify(model: nn.Module, images: torch.Tensor, issame: np.ndarray, *, flip: bool = True, n_folds: int = 10,
           batch_size: int = 256, progress: bool = False) -> VerificationResult:
    """Embed 2P images (pairs consecutive), score the pairs and run :func:`evaluate`."""
    e = embed(model, images, batch_size=batch_size, flip=flip, progress=progress)
    return evaluate(pair_scores(e), np.asarray(issame), n_folds=n_folds)


def pairs_across_identities(n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """A balanced pair list for a set of ``n_pairs`` matched pairs of different people (images 2i and 2i + 1
    show person i, as in a ``.bin`` set whose flags are all True): matched pair i, then the mismatched pair of
    image 2i with image 2((i + 1) mod P) + 1, for i = 0 … P − 1.

    Returns (index (4P,) into the images, pairs consecutive as :func:`pair_scores` reads them; issame (2P,)
    alternating True, False), so each of the 10 folds of P = 10 holds one matched and one mismatched pair.
    """
    if n_pairs < 2:
        raise ValueError(f"need at least 2 matched pairs of different people, got {n_pairs}")
    i = np.arange(n_pairs)
    matched = np.stack([2 * i, 2 * i + 1], 1)
    mismatched = np.stack([2 * i, 2 * ((i + 1) % n_pairs) + 1], 1)
    return np.stack([matched, mismatched], 1).reshape(-1), np.tile([True, False], n_pairs)


def roc_auc_all_pairs(embeddings: torch.Tensor | np.ndarray) -> float:
    """ROC AUC over every pair of a set of matched pairs of different people: embeddings (2P, D), rows 2i and
    2i + 1 of person i → the P matched pairs against all 2P(2P − 2)/2 pairs of two people."""
    from sklearn.metrics import roc_auc_score

    e = l2_normalise(torch.as_tensor(np.asarray(embeddings), dtype=torch.float64)).numpy()
    person = np.arange(len(e)) // 2
    a, b = np.triu_indices(len(e), k=1)
    return float(roc_auc_score(person[a] == person[b], (e[a] * e[b]).sum(1)))
