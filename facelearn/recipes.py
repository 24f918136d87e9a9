"""Every task's training recipes in one place, and ``facelearn recipes`` (book: "How to run it", "The
facelearn API").

Each task module keeps its named presets in a ``RECIPES`` dict of :class:`facelearn.engine.recipe.Recipe`
subclasses (:data:`TASKS` says where); :func:`get_recipe` reads one, :func:`list_recipes` names them,
:func:`train` runs one with its task's ``train`` and :func:`differences` shows what the presets of a task
change (``quick`` against ``full`` and ``paper``).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
from typing import Any

from facelearn.engine.recipe import Recipe, TrainResult

#: task → the module holding its ``RECIPES`` and its ``train(recipe, data, …)``.
TASKS = {"detection": "facelearn.detection.training", "recognition": "facelearn.recognition.training",
         "landmarks": "facelearn.landmarks.recipe"}


def _module(task: str):  # noqa: ANN202
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[task])


def recipes(task: str) -> dict[str, Recipe]:
    """The named presets of ``task`` (its module's ``RECIPES``)."""
    return _module(task).RECIPES


def list_recipes(task: str | None = None) -> list[str]:
    """``task/name`` of every preset (of ``task`` alone, as plain names, if given)."""
    if task is not None:
        return list(recipes(task))
    return [f"{t}/{n}" for t in TASKS for n in recipes(t)]


def get_recipe(task: str, name: str, **changes: Any) -> Recipe:
    """The preset ``name`` of ``task`` with ``changes`` applied (e.g. ``get_recipe("landmarks", "quick",
    epochs=2)``); an unknown name is a ``ValueError`` listing the known ones."""
    from facelearn.engine.recipe import lookup

    return lookup(recipes(task), name, **changes)


def train(recipe: Recipe, data: Any, **options: Any) -> TrainResult:
    """Run ``recipe`` with its task's ``train``: ``data`` is a WIDER FACE folder (detection), a Dataset of
    (image, label) (recognition) or a WFLW folder (landmarks); ``options``: ``checkpoint``, ``device``,
    ``seed``, ``progress``, ``callbacks`` (and recognition's ``n_classes``)."""
    return _module(recipe.task).train(recipe, data, **options)


def _plain(value: Any) -> Any:
    """A recipe field as JSON: dataclasses as dicts, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _flat(recipe: Recipe) -> dict[str, Any]:
    """The recipe's fields with nested dataclasses spelled out (``loss.neg_pos_ratio``)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(recipe):
        value = getattr(recipe, f.name)
        if dataclasses.is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in _flat(value).items()})
        else:
            out[f.name] = _plain(value)
    return out


def differences(task: str) -> dict[str, dict[str, Any]]:
    """field → {preset: value} for every field that is not the same in all of ``task``'s presets."""
    flat = {n: _flat(r) for n, r in recipes(task).items()}
    names = [k for k in next(iter(flat.values())) if k not in ("name", "note")]
    return {k: {n: f[k] for n, f in flat.items()} for k in names if len({json.dumps(f[k]) for f in flat.values()}) > 1}


def _cmd_recipes(args: argparse.Namespace) -> int:
    tasks = [args.task] if args.task else list(TASKS)
    if args.json:
        print(json.dumps({t: {"presets": {n: _flat(r) for n, r in recipes(t).items()}, "differences": differences(t)}
                          for t in tasks}, indent=1))
        return 0
    for t in tasks:
        diff = differences(t)
        names = list(recipes(t))
        print(f"{t}: {', '.join(names)} ({type(recipes(t)[names[0]]).__name__}; the fields that differ)")
        width = max(map(len, diff), default=0)
        cols = [max([len(n), *(len(str(v[n])) for v in diff.values())]) for n in names]
        print((f"  {'':<{width}}  " + "  ".join(f"{n:<{c}}" for n, c in zip(names, cols))).rstrip())
        for field, values in diff.items():
            print((f"  {field:<{width}}  " + "  ".join(f"{str(values[n]):<{c}}" for n, c in zip(names, cols))).rstrip())
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``recipes`` at the top level."""
    from facelearn.cli import common, subparser

    p = subparser(subparsers, "recipes", "every task's training presets and the fields in which they differ "
                  "(quick: a CPU run on SynthFace; full and paper: the real data sets on a GPU)",
                  "facelearn recipes --task detection\n  facelearn recipes --json", _cmd_recipes)
    p.add_argument("--task", choices=list(TASKS), help="one task only")
    common(p, json="print every preset's fields and the differences as JSON")
