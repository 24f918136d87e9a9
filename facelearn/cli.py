"""The ``facelearn`` command (book: "How to run it").

Subcommands delegate to the library. Each task package contributes its own subcommands through a
``register(subparsers)`` function listed in :data:`PLUGINS`; this file only wires them together, and
defines once the options every subcommand spells the same way (:data:`COMMON`, added with :func:`common`).

    facelearn info                      versions, device, profile, folders
    facelearn models [--json]           every model preset with its parameter count
    facelearn recipes [--json]          every task's training presets and how they differ
    facelearn synth …                   write SynthFace data sets in the real formats
    facelearn fetch NAME… | data        download real data sets (verified) / list what is present
    facelearn train …                   train a model from a preset
    facelearn eval …                    official metrics (WIDER FACE, verification, landmarks)
    facelearn detect IMAGE …            run a face detector
    facelearn embed|landmarks IMAGES …  embeddings or landmarks of faces (crops, or photographs with --detect)
    facelearn export onnx …             a checkpoint as an ONNX graph
    facelearn grade NOTEBOOK…           run a student notebook's self-checks and print its score
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from facelearn import __version__, cli_types
from facelearn.errors import DataError, TrainingStopped

#: (group, module): ``module.register(subparsers)`` adds its subcommands under ``facelearn <group>``;
#: group ``""`` adds top-level commands. Task packages append their line here.
PLUGINS: list[tuple[str, str]] = [
    ("", "facelearn.models"),
    ("", "facelearn.recipes"),
    ("train", "facelearn.recognition.commands"),
    ("eval", "facelearn.recognition.commands"),
    ("train", "facelearn.landmarks.commands"),
    ("eval", "facelearn.landmarks.commands"),
    ("eval", "facelearn.detection.eval_commands"),
    ("eval", "facelearn.real_photos"),
    ("train", "facelearn.detection.commands"),
    ("train", "facelearn.detection.mesh.commands"),
    ("", "facelearn.detection.commands"),
    ("synth", "facelearn.data.synthface.commands"),
    ("", "facelearn.data.commands"),
    ("", "facelearn.commands"),
    ("", "facelearn.teaching.grade"),
    ("export", "facelearn.onnx_export"),
]

GROUPS = {
    "synth": "write SynthFace data sets in the real data sets' formats",
    "train": "train a model from a preset",
    "eval": "score predictions or a model with a benchmark's protocol",
    "export": "write a checkpoint in another format (ONNX)",
}


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


class _BadOption(Exception):
    """An option that its parser type refused; already reported on stderr."""


class _Parser(argparse.ArgumentParser):
    """Reports a bad option in one line, exit status 2 (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise _BadOption(message)


def _cmd_info(args: argparse.Namespace) -> int:
    from facelearn import runtime

    report = runtime.info()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every plugin's subcommands."""
    parser = _Parser(
        prog="facelearn",
        description="facelearn: train and evaluate RetinaFace, ArcFace-style losses and PFLD.",
        epilog="example:\n  facelearn info\n  facelearn models --json",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"facelearn {__version__}")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    top.required = True

    info = top.add_parser(
        "info",
        help="versions, device, profile and folders",
        description="Print versions, the chosen device, the profile and facelearn's folders.",
        epilog="example:\n  facelearn info --json",
        formatter_class=_Formatter,
    )
    common(info, "json")
    info.set_defaults(func=_cmd_info)

    groups: dict[str, argparse._SubParsersAction] = {"": top}
    for group, module in PLUGINS:
        if group not in groups:
            sub = top.add_parser(group, help=GROUPS[group], description=GROUPS[group], formatter_class=_Formatter)
            groups[group] = sub.add_subparsers(dest=f"{group}_command", metavar="WHAT")
            if group == "train":
                sub.add_argument("--nproc", type=int, metavar="N", help="train on N processes of this machine "
                                 "(runs torchrun --standalone --nproc_per_node N); or start under torchrun yourself")
            groups[group].required = True
        importlib.import_module(module).register(groups[group])
    return parser


def subparser(subparsers: argparse._SubParsersAction, name: str, help: str, example: str,
              func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Add one subcommand with facelearn's help format: ``help`` as description, ``example`` as epilog."""
    p = subparsers.add_parser(name, help=help, description=help, epilog="example:\n  " + example,
                              formatter_class=_Formatter)
    p.set_defaults(func=func)
    return p


#: The options shared by the subcommands, each defined here once: name → ``add_argument`` keywords. ``--preset``
#: takes its choices from the task's recipes (:mod:`facelearn.recipes`); ``--resume`` and ``--fresh`` are how
#: every ``train`` subcommand keeps and continues its Trainer state (:func:`resume_path`).
COMMON: dict[str, dict[str, Any]] = {
    "device": {"type": cli_types.device_name, "help": "cpu, cuda, cuda:N or mps (default: the best available)"},
    "seed": {"type": cli_types.non_negative_int, "default": 0, "help": "random seed"},
    "json": {"action": "store_true", "help": "print JSON"},
    "quiet": {"action": "store_true", "help": "no progress bar"},
    "preset": {"default": "quick", "help": "training recipe (see `facelearn recipes`)"},
    "resume": {"metavar": "CHECKPOINT", "help": "Trainer checkpoint: written after every epoch and resumed from "
                                                "when it exists"},
    "fresh": {"action": "store_true", "help": "delete the --resume checkpoint first and start over"},
    "amp": {"choices": ("auto", "off", "bf16"),
            "help": "mixed precision (default: the recipe's, auto): auto, fp16/bf16 autocast on a GPU and fp32 "
                    "elsewhere; off, fp32; bf16, bfloat16 autocast on any device, a CPU with AVX-512 included "
                    "(faster; the losses change in the third or fourth digit)"},
    "channels_last": {"action": "store_true",
                      "help": "store image batches and convolution weights channels-last (faster convolutions on "
                              "most devices; the losses change in the last digits)"},
    "compile": {"action": "store_true", "help": "run the model's forward through torch.compile (the first steps "
                                                "compile, for minutes on a CPU)"},
}

#: the ``train`` options of the Trainer's speed switches (:func:`trainer_switches` turns them into recipe fields)
SPEED = ("amp", "channels_last", "compile")


def common(parser: argparse.ArgumentParser, *names: str, task: str | None = None, **helps: str) -> None:
    """Add the :data:`COMMON` options ``names`` and the keys of ``helps`` (their help replaced by the given
    text) to ``parser``; ``--preset`` needs ``task``, whose recipe names become its choices."""
    for name in (*names, *helps):
        kwargs = dict(COMMON[name])
        if name in helps:
            kwargs["help"] = helps[name]
        if name == "preset":
            from facelearn.recipes import list_recipes

            kwargs["choices"] = list_recipes(task)
        parser.add_argument(f"--{name.replace('_', '-')}", **kwargs)


def trainer_switches(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields (``amp``, ``channels_last``, ``compile``) that the :data:`SPEED` options of a
    ``train`` subcommand change; empty when none is given, so the recipe's own values stay."""
    changes: dict[str, Any] = {}
    if args.amp is not None:
        changes["amp"] = {"auto": True, "off": False, "bf16": "bf16"}[args.amp]
    changes.update({name: True for name in ("channels_last", "compile") if getattr(args, name)})
    return changes


def resume_path(args: argparse.Namespace) -> Path | None:
    """The ``--resume`` checkpoint of a ``train`` subcommand (None when not given); with ``--fresh`` the file
    is deleted first, by the main process."""
    from facelearn.engine import distributed

    if args.resume is None:
        return None
    path = Path(args.resume)
    with distributed.main_first():
        if args.fresh and path.exists() and distributed.is_main():
            path.unlink()
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facelearn`` command; exits non-zero with a one-line reason on bad input
    (2 for a bad option or bad data, 1 when training stopped)."""
    try:
        return _main(argv)
    except _BadOption:
        return 2


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] != ["train"]:
        return _run(build_parser().parse_args(argv))
    from facelearn.engine import distributed  # training: on one process, or on several under torchrun

    try:
        nproc, argv = distributed.strip_nproc(argv)
    except ValueError as err:
        print(f"facelearn train: error: {err}", file=sys.stderr)
        return 2
    if nproc is not None and nproc > 1 and not distributed.launched():
        return distributed.launch(nproc, argv)
    args = build_parser().parse_args(argv)
    try:
        distributed.setup()
        return _run(args)
    except distributed.RankFailure as err:
        print(f"facelearn train: error: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args) or 0)
    except (DataError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as err:
        print(f"facelearn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingStopped as err:
        print(f"facelearn {args.command}: training stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facelearn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
