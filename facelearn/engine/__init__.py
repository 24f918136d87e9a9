"""One training loop for every chapter: AMP, DDP, atomic checkpoints, exact resume, progress, logs."""

from facelearn.engine.checkpoint import load_checkpoint, save_checkpoint
from facelearn.engine.trainer import Trainer, cosine_schedule, make_loader, to_device

__all__ = ["Trainer", "cosine_schedule", "make_loader", "to_device", "save_checkpoint", "load_checkpoint"]
