"""The model presets of the book, listed by ``facelearn models`` (book: every model chapter).

A preset is a name, a task, an input size and a builder given as ``"module:function"`` so that listing
the presets imports only what it builds. Task packages add their presets to :data:`PRESETS`.
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class ModelPreset:
    """One buildable model.

    name: unique preset name (``retinaface-mobilenet0.25``); task: ``detection``, ``recognition``,
    ``landmarks`` or ``normalisation``; input_size: (C, H, W) of one input image;
    builder: ``"module:function"``, a function of no arguments that returns the ``nn.Module``.
    """

    name: str
    task: str
    input_size: tuple[int, int, int]
    builder: str
    note: str = ""

    def build(self) -> nn.Module:
        module, func = self.builder.split(":")
        return getattr(importlib.import_module(module), func)()


PRESETS: list[ModelPreset] = [
    ModelPreset("digits-cnn-2d", "normalisation", (1, 16, 16), "facelearn.recognition.backbones:digits_cnn_2d",
                "the normalisation chapter's CNN with 2-D features"),
    ModelPreset("pfld-1x", "landmarks", (3, 112, 112), "facelearn.landmarks.pfld:pfld_1x",
                "PFLD 1X, 98 WFLW points (paper: ~1.26 M)"),
    ModelPreset("pfld-0.25x", "landmarks", (3, 112, 112), "facelearn.landmarks.pfld:pfld_025x",
                "PFLD 0.25X, 98 WFLW points"),
    ModelPreset("pfld-aux-1x", "landmarks", (64, 28, 28), "facelearn.landmarks.pfld:pfld_aux_1x",
                "PFLD 1X auxiliary Euler-angle net (training only)"),
    ModelPreset("pfld-aux-0.25x", "landmarks", (16, 28, 28), "facelearn.landmarks.pfld:pfld_aux_025x",
                "PFLD 0.25X auxiliary Euler-angle net (training only)"),
    ModelPreset("synthface-cnn", "recognition", (3, 64, 64), "facelearn.recognition.backbones:synthface_cnn",
                "the loss chapters' CPU network, 128-d embedding"),
    ModelPreset("mobilefacenet", "recognition", (3, 112, 112), "facelearn.recognition.backbones:mobilefacenet",
                "MobileFaceNet (Chen et al. 2018), 128-d embedding"),
    ModelPreset("iresnet18", "recognition", (3, 112, 112), "facelearn.recognition.backbones:iresnet18",
                "insightface iResNet-18, 512-d embedding"),
    ModelPreset("iresnet34", "recognition", (3, 112, 112), "facelearn.recognition.backbones:iresnet34",
                "insightface iResNet-34, 512-d embedding"),
    ModelPreset("iresnet50", "recognition", (3, 112, 112), "facelearn.recognition.backbones:iresnet50",
                "insightface iResNet-50, 512-d embedding"),
    ModelPreset("iresnet100", "recognition", (3, 112, 112), "facelearn.recognition.backbones:iresnet100",
                "insightface iResNet-100, 512-d embedding"),
    ModelPreset("retinaface-mobilenet0.25", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:mobilenet025_common", "RetinaFace, common 3-level anchors (16,800)"),
    ModelPreset("retinaface-mobilenet0.25-paper", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:mobilenet025_paper", "RetinaFace, paper's P2-P6 anchors"),
    ModelPreset("retinaface-resnet50", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:resnet50_common", "RetinaFace, common 3-level anchors (16,800)"),
    ModelPreset("retinaface-resnet50-paper", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:resnet50_paper", "RetinaFace, paper's P2-P6 anchors (102,300)"),
    ModelPreset("retinaface-resnet152-paper", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:resnet152_paper", "RetinaFace, paper's P2-P6 anchors (102,300)"),
    ModelPreset("retinaface-mobilenet0.25-dense", "detection", (3, 640, 640),
                "facelearn.detection.retinaface:mobilenet025_dense", "RetinaFace with the dense regression head"),
    ModelPreset("mesh-decoder", "detection", (1, 1, 128), "facelearn.detection.mesh.decoder:mesh_decoder",
                "dense branch: 128-d code -> 644 x (xyz, rgb) graph-conv decoder"),
]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply–accumulate operations of one forward pass of ``model`` on one input of ``input_shape``
    (convolutions and fully connected layers; counted with forward hooks on a zero input on the model's
    device — a model built under ``torch.device("meta")`` is counted without any arithmetic)."""
    total = 0

    def conv(m: nn.Conv2d, i, o) -> None:
        nonlocal total
        total += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, i, o) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


def preset(name: str) -> ModelPreset:
    """The preset called ``name``; a ``ValueError`` lists the known names otherwise."""
    for p in PRESETS:
        if p.name == name:
            return p
    raise ValueError(f"unknown model preset {name!r}; known: {', '.join(p.name for p in PRESETS)}")


def table() -> list[dict]:
    """One row per preset: name, task, parameters, input size, note.

    Models are built on the ``meta`` device: shapes only, no memory and no initialisation cost.
    """
    with torch.device("meta"):
        built = {p.name: p.build() for p in PRESETS}
    return [
        {"name": p.name, "task": p.task, "parameters": count_parameters(built[p.name]),
         "input_size": list(p.input_size), "note": p.note}
        for p in PRESETS
    ]


def weights_table(task: str | None = None) -> list[dict]:
    """One row per registered set of weights (:func:`facelearn.registry.list_weights`): name, model, task,
    where it comes from (a file shipped in the package or the publisher's location) and licence."""
    from facelearn.registry import SHIPPED
    from facelearn.releases import RELEASES

    rows = [{"name": n, "model": m, "task": preset(m).task, "source": f"facelearn/{f}", "licence": "MIT (facelearn)"}
            for n, m, f, _ in SHIPPED]
    rows += [{"name": w.name, "model": w.model, "task": w.task, "source": w.url, "licence": w.licence}
             for w in RELEASES]
    return [r for r in rows if task is None or r["task"] == task]


def _cmd_models(args: argparse.Namespace) -> int:
    if args.weights:
        rows = weights_table(args.task)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            print(f"{r['name']:<44} {r['model']:<26} {r['source']}")
        return 0
    rows = table()
    if args.task:
        rows = [r for r in rows if r["task"] == args.task]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':<32} {'task':<14} {'parameters':>12}  input")
    for r in rows:
        size = "x".join(map(str, r["input_size"]))
        print(f"{r['name']:<32} {r['task']:<14} {r['parameters']:>12,}  {size}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from facelearn.cli import common, subparser

    p = subparser(subparsers, "models", "list every model preset: name, task, parameter count, input size",
                  "facelearn models --task detection --json", _cmd_models)
    common(p, "json")
    p.add_argument("--task", choices=sorted({m.task for m in PRESETS}), help="only presets of this task")
    p.add_argument("--weights", action="store_true",
                   help="list the registered weights instead (shipped checkpoints and public releases)")
