"""The Trainer's speed switches on a RetinaFace step (chapter "Training and evaluating RetinaFace"): each one
trains, and its loss stays close to the default's; bf16 autocast also runs on the CPU when asked for by name."""

import pytest
import torch

from facelearn import runtime
from facelearn.detection import retinaface
from facelearn.detection.training import make_loss_fn, train_config
from facelearn.engine import Trainer
from facelearn.engine.recipe import build_optimizer


def _batch():
    g = torch.Generator().manual_seed(5)
    images = torch.rand(2, 3, 128, 128, generator=g)
    targets = []
    for _ in range(2):
        xy = torch.rand(3, 2, generator=g) * 70
        wh = 12 + torch.rand(3, 1, generator=g) * 40
        boxes = torch.cat([xy, xy + wh], dim=1)
        points = boxes[:, None, :2] + wh[:, None] * torch.rand(3, 5, 2, generator=g)
        targets.append({"boxes": boxes, "landmarks": points, "landmark_mask": torch.ones(3, dtype=torch.bool)})
    return images, targets


def _losses(steps: int = 2, **switches):
    """Losses of ``steps`` Trainer iterations of the quick recipe's model and optimiser on one fixed batch."""
    runtime.seed_everything(0)
    model = retinaface.build("retinaface-mobilenet0.25")
    trainer = Trainer(model, build_optimizer(train_config("quick"), model), make_loss_fn(), device="cpu", **switches)
    batch = _batch()
    losses = [float(trainer.train_step(batch)["loss"]) for _ in range(steps)]
    return losses, trainer


@pytest.fixture(scope="module")
def default_losses():
    return _losses()[0]


def test_channels_last_trains_retinaface_to_the_same_losses(default_losses):
    losses, trainer = _losses(channels_last=True)
    assert trainer.model.body.stage0[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    # fp32 sums in another order: the first loss (same weights) to 1e-5; after one AdamW step, whose update
    # divides each gradient by its own size, the second to 1e-2
    assert losses[0] == pytest.approx(default_losses[0], rel=1e-5)
    assert losses[1] == pytest.approx(default_losses[1], rel=1e-2)


def test_bf16_autocast_trains_retinaface_on_the_cpu(default_losses):
    for switches in ({"amp": "bf16"}, {"amp": "bf16", "channels_last": True}):
        losses, trainer = _losses(**switches)
        assert trainer.amp_dtype == torch.bfloat16
        assert all(map(torch.isfinite, torch.tensor(losses)))
        # bf16 convolutions (8-bit mantissa): the first loss within 1 % of fp32's, the second (after one AdamW
        # step on bf16 gradients) within 5 %, and not fp32's own numbers
        assert losses[0] == pytest.approx(default_losses[0], rel=1e-2)
        assert losses[1] == pytest.approx(default_losses[1], rel=5e-2)
        assert losses != default_losses
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # the weights stay fp32


def test_amp_true_stays_fp32_on_the_cpu(default_losses):
    losses, trainer = _losses(amp=True)  # the default: what the shipped checkpoints were trained with
    assert trainer.amp_dtype is None and losses == default_losses


def test_an_unknown_amp_value_is_refused_in_one_line():
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"^amp must be True, False or 'bf16', got 'fp8'$"):
        Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), lambda m, b: (m(b).sum(), {}), device="cpu",
                amp="fp8")


def test_a_recipe_passes_bf16_to_the_trainer():
    recipe = train_config("quick", amp="bf16", channels_last=True)
    assert recipe.trainer_options() == {"amp": "bf16", "grad_clip": 10.0, "channels_last": True, "compile": False}
    assert train_config("quick").trainer_options()["amp"] is True
