"""The model registry: every model by name, its trained weights, and checkpoints that describe themselves
(book: "How to run it", and the "released model" section of each model chapter).

``get_model(name, weights)`` builds a model preset of :data:`facelearn.models.PRESETS` and, given weights,
loads them: a registry name (:func:`list_weights`), a file, or a :class:`~facelearn.weights.Weights`. A file
is recognised by itself — a facelearn checkpoint, or a release of a reference implementation
(:mod:`facelearn.releases`). A facelearn checkpoint carries a ``facelearn`` block (:func:`metadata`): the model
name, its config, its preprocessing and the library version, so :func:`load` rebuilds it from the path alone
and a checkpoint of another task or architecture is refused with one line (:func:`expect`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facelearn.errors import DataError
from facelearn.models import PRESETS, preset
from facelearn.weights import IMAGENET, TASK_PREPROCESS, Preprocess, Weights

#: The checkpoints shipped inside the package (``make checkpoints`` regenerates them):
#: (registry name, model, file relative to ``facelearn/``, recipe). Metrics are read from the files.
SHIPPED = (
    ("retinaface-mobilenet0.25.quick", "retinaface-mobilenet0.25", "detection/checkpoints/retinaface_mnet025_quick.pt",
     "quick"),
    ("retinaface-mobilenet0.25.quick-no-landmarks", "retinaface-mobilenet0.25",
     "detection/checkpoints/retinaface_mnet025_quick_no_landmarks.pt", "quick-no-landmarks"),
    ("pfld-0.25x.quick", "pfld-0.25x", "landmarks/checkpoints/pfld-quick.pt", "quick"),
    ("pfld-0.25x.quick-plain", "pfld-0.25x", "landmarks/checkpoints/pfld-quick-plain.pt", "quick (plain L2)"),
    ("pfld-0.25x.quick-as-written", "pfld-0.25x", "landmarks/checkpoints/pfld-quick-as-written.pt",
     "quick (eq. 2 as written)"),
    *((f"synthface-cnn.quick-{loss}", "synthface-cnn", f"recognition/checkpoints/quick-{loss}.pt", f"quick, {loss}")
      for loss in ("softmax", "triplet", "sphereface", "normface", "cosface", "arcface")),
)


def list_models(task: str | None = None) -> list[str]:
    """Names of every model preset (of ``task`` if given), as ``facelearn models`` lists them."""
    return [p.name for p in PRESETS if task is None or p.task == task]


def list_weights(model: str | None = None) -> list[str]:
    """Names of every registered set of weights (for ``model`` if given): shipped checkpoints and releases."""
    from facelearn.releases import RELEASES

    names = [(n, m) for n, m, _, _ in SHIPPED] + [(w.name, w.model) for w in RELEASES]
    return [n for n, m in names if model is None or m == model]


def get_weights(name: str) -> Weights:
    """The :class:`Weights` called ``name``; a shipped file's preprocessing and metrics come from the file."""
    from facelearn.engine.checkpoint import load_checkpoint
    from facelearn.releases import RELEASES

    for w in RELEASES:
        if w.name == name:
            return w
    for n, model, file, recipe in SHIPPED:
        if n == name:
            w = Weights(n, model, preset(model).task, IMAGENET, file=file, recipe=recipe)
            state = load_checkpoint(w.path())
            meta = expect(w.path(), state, model=model)
            # the figures stored beside the weights: ``metrics`` (detection), ``extra`` (recognition), or the
            # checkpoint's other plain values (landmarks: test NME, flip, data, …)
            metrics = dict(state.get("metrics") or state.get("extra") or
                           {k: v for k, v in state.items() if k not in ("facelearn", "state_dict", "recipe")})
            return dataclasses.replace(w, preprocess=_from_dict(Preprocess, meta["preprocess"]), metrics=metrics,
                                       measured_on=str(metrics.get("data") or metrics.get("val") or ""))
    raise ValueError(f"unknown weights {name!r}; known: {', '.join(list_weights())}")


def get_model(name: str, weights: str | os.PathLike | Weights | None = None, *, sha256: str | None = None) -> nn.Module:
    """The model preset ``name``; with ``weights`` loaded (eval mode), else freshly initialised.

    weights: a registry name (:func:`list_weights`), a file (a facelearn checkpoint or a reference release,
    recognised by its contents) or a :class:`Weights`; a download is verified against its SHA-256 (``sha256``
    where the publisher gives none). A file of another task or architecture raises a one-line
    :class:`DataError`. Feed the model ``weights.transforms()(images)`` (uint8 RGB → its input).
    """
    spec = preset(name)
    if weights is None:
        return spec.build()
    if isinstance(weights, str) and weights in list_weights():
        weights = get_weights(weights)
    if isinstance(weights, Weights):
        if weights.model != name:
            raise DataError(f"weights {weights.name!r} are for {weights.model}, not {name}")
        path = weights.path() or download(weights, sha256)
    else:
        path = Path(weights)
    state = _read(path)
    if "facelearn" not in state:
        from facelearn.releases import load_release

        return load_release(name, state, path).eval()
    model = _rebuild(expect(path, state, model=name))
    _load_weights(model, state, path)
    return model.eval()


def load(path: str | os.PathLike, task: str | None = None) -> nn.Module:
    """Rebuild the model a facelearn checkpoint holds (exported or Trainer), with no other argument; a
    reference release (:mod:`facelearn.releases`) loads into the first preset it fits.

    task: if given, a checkpoint of another task is refused with a one-line :class:`DataError`. Eval mode.
    """
    state = _read(Path(path))
    if "facelearn" not in state:  # a reference implementation's release, recognised by its layout
        from facelearn.releases import identify, load_release

        names = [n for n in identify(state) if task is None or preset(n).task == task]
        if names:
            return load_release(names[0], state, path).eval()
    model = _rebuild(expect(path, state, task=task))
    _load_weights(model, state, Path(path))
    return model.eval()


def metadata(model: nn.Module, name: str, *, prefix: str = "") -> dict[str, Any]:
    """The ``facelearn`` block of a checkpoint holding ``model`` (preset ``name``): version, task, model name,
    config (the model's frozen dataclass, if it has one), preprocessing, and the ``prefix`` of the model's
    keys in a Trainer checkpoint's ``model`` state (e.g. ``pfld.`` when the trainer holds PFLD and its
    auxiliary net)."""
    import facelearn

    task = preset(name).task
    cfg = getattr(model, "config", None)
    pre = getattr(cfg, "input", None) or TASK_PREPROCESS.get(task, Preprocess())
    if pre.size is not None:  # crops: the size this preset reads (64 × 64 for the loss chapters' CNN)
        pre = dataclasses.replace(pre, size=tuple(preset(name).input_size[1:]))
    return {"version": facelearn.__version__, "task": task, "model": name,
            "config": dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None,
            "preprocess": dataclasses.asdict(pre), "prefix": prefix}


def save(model: nn.Module, path: str | os.PathLike, name: str, *, half: bool = False, **info: Any) -> Path:
    """Write an inference checkpoint: the weights (``half``: floating tensors as fp16, to stay small), the
    :func:`metadata` block and ``info`` (plain values: recipe, metrics, …). Read back with :func:`load`."""
    from facelearn.engine.checkpoint import save_checkpoint

    weights = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu())
               for k, v in model.state_dict().items()}
    return save_checkpoint({"facelearn": metadata(model, name), "state_dict": weights, **info}, path)


def expect(path: str | os.PathLike, state: dict[str, Any], *, task: str | None = None,
           model: str | None = None) -> dict[str, Any]:
    """The ``facelearn`` block of the checkpoint ``state`` read from ``path``, checked against the ``task``
    and/or ``model`` the caller expects; otherwise one :class:`DataError` line naming the file, what it holds
    and what was expected."""
    meta = state.get("facelearn")
    wanted = model or (f"a {task} model" if task else "a facelearn model")
    if not isinstance(meta, dict) or "model" not in meta:
        from facelearn.releases import describe

        held = describe(state) or f"no facelearn model (keys: {', '.join(map(str, list(state)[:6]))})"
        raise DataError.at(path, None, f"holds {held}; expected {wanted}")
    held = f"a {meta.get('task')} model ({meta['model']})"
    if (task and meta.get("task") != task) or (model and not _same_architecture(meta, model)):
        raise DataError.at(path, None, f"holds {held}; expected {wanted}")
    return meta


def download(weights: Weights, sha256: str | None = None) -> Path:
    """The file of a downloadable :class:`Weights`, fetched once into ``runtime.cache_dir()/weights`` and
    verified against its SHA-256 (the registry's, else ``sha256``): no hash, no download."""
    import pooch

    from facelearn import runtime

    digest = weights.sha256 or sha256
    if not weights.url:
        raise DataError(f"weights {weights.name!r} have no download location")
    if not weights.url.split("?")[0].endswith((".pth", ".pt", ".tar")):
        raise DataError(f"weights {weights.name!r} are published in a shared folder: download it by hand from "
                        f"{weights.url} and pass the file, get_model({weights.model!r}, weights=PATH)")
    if not digest:
        raise DataError(f"weights {weights.name!r}: the publisher gives no SHA-256; pass sha256= (the hash of the "
                        f"file you trust, e.g. from `sha256sum`) — nothing is loaded unverified")
    return Path(pooch.retrieve(weights.url, known_hash=f"sha256:{digest}", path=runtime.cache_dir() / "weights",
                               fname=f"{weights.name}{Path(weights.url.split('?')[0]).suffix or '.pth'}"))


def _read(path: Path) -> dict[str, Any]:
    from facelearn.engine.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _same_architecture(meta: dict[str, Any], model: str) -> bool:
    """A checkpoint of preset ``meta['model']`` fits preset ``model`` if the names match or both build the same
    architecture (a changed input convention does not change the architecture)."""
    if meta["model"] == model:
        return True
    if meta["model"] not in list_models():
        return False
    with torch.device("meta"):
        a, b = preset(meta["model"]).build(), preset(model).build()
    return [(k, v.shape) for k, v in a.state_dict().items()] == [(k, v.shape) for k, v in b.state_dict().items()]


def _rebuild(meta: dict[str, Any]) -> nn.Module:
    """The (untrained) model a checkpoint's ``facelearn`` block describes."""
    if meta["model"] not in list_models():
        raise DataError(f"unknown model {meta['model']!r} (written by facelearn {meta.get('version')})")
    spec = preset(meta["model"])
    if meta.get("config") is None:
        return spec.build()
    with torch.device("meta"):
        template = spec.build()
    return type(template)(_from_dict(type(template.config), meta["config"]))


def _load_weights(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    meta = state["facelearn"]
    if "state_dict" in state:
        weights = state["state_dict"]
    else:  # a Trainer checkpoint: the model's keys under ``prefix`` of the trained module's state
        prefix = meta.get("prefix", "")
        weights = {k[len(prefix):]: v for k, v in state.get("model", {}).items() if k.startswith(prefix)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise DataError.at(path, None, f"weights do not fit {meta['model']} ({str(err).splitlines()[0]})") from None


def _from_dict(cls: type, d: dict[str, Any]) -> Any:
    """A frozen dataclass ``cls`` from its ``dataclasses.asdict`` form: nested dataclasses rebuilt from their
    fields' defaults, lists back to tuples."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in d:
            continue
        value = d[f.name]
        default = f.default if f.default is not dataclasses.MISSING else None
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            value = _from_dict(type(default), value)
        elif isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[f.name] = value
    return cls(**kwargs)
