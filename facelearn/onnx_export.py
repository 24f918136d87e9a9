"""ONNX export of the book's networks and ``facelearn export onnx`` (book: "How to run it", and chapter "A face
recognition system").

A graph is traced from an example input with the batch axis dynamic; the detector's height and width are
dynamic too, so one file serves every image size (its anchors are computed outside the graph, as in
``detect``). The graph is the network's ``forward``: it reads the preprocessed input, and the preprocessing
(``model.preprocess``, the weights' :class:`~facelearn.weights.Preprocess`) stays outside it, as data in the
file's metadata (``preprocess``), so a graph of released weights reads what those weights read (BGR minus a
mean for biubug6's detector) and the conversion is written in one place. The mesh decoder's Chebyshev
convolutions multiply by a sparse Laplacian, for which ONNX has no operator: the export uses the same matrix
dense (V × V), which gives the same products. Each file records its task and the input it expects in its
metadata. For inference, :class:`OnnxRuntimeModel` runs a detector's enlarged pyramid passes through a small
graph of its own too (resize, then the metadata's preprocessing): the largest pass is resized by ONNX Runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facelearn import cli_types
from facelearn.cli import subparser
from facelearn.errors import DataError
from facelearn.weights import Preprocess

#: What each exported graph reads, stored in the file's metadata (``input``; ``preprocess`` gives the numbers).
INPUTS = {
    "detection": "image (N, 3, H, W) float, any H and W, after the metadata's preprocess",
    "recognition": "aligned crops (N, 3, S, S) float, after the metadata's preprocess",
    "landmarks": "face crops (N, 3, 112, 112) float, after the metadata's preprocess",
    "mesh": "shape and texture codes (N, code_dim) float",
}


def load_for_export(path: str | os.PathLike) -> tuple[str, nn.Module, torch.Tensor]:
    """(task, network in eval mode, example input — preprocessed as the network reads it) for the checkpoint at
    ``path``."""
    from facelearn.pipeline import checkpoint_task, load_model
    from facelearn.detection.mesh.decoder import load_decoder

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    task = checkpoint_task(path)
    if task == "mesh":
        decoder = load_decoder(path)
        return task, decoder, torch.zeros(1, decoder.config.code_dim)
    model, size = load_model(task, path)
    return task, model, model.preprocess(example_input(size))


def _output_names(task: str, model: nn.Module, example: torch.Tensor) -> list[str]:
    with torch.no_grad():
        out = model(example)
    if isinstance(out, dict):
        return list(out)
    return {"recognition": ["embedding"], "landmarks": ["landmarks", "features"], "mesh": ["mesh"]}[task]


def export_onnx(model: nn.Module, task: str, example: torch.Tensor, path: str | os.PathLike, *,
                opset: int = 17, source: str = "") -> Path:
    """Write ``model`` as an ONNX graph traced on ``example``: batch axis dynamic, and H, W for the detector.

    task: a key of :data:`INPUTS`; the mesh decoder's sparse Laplacian is exported dense. → the file written.
    """
    import copy

    try:
        import onnx
    except ImportError:
        raise DataError("ONNX export needs the onnx package: pip install onnx onnxruntime") from None
    if task not in INPUTS:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(INPUTS)}")
    if task == "mesh":
        model = copy.deepcopy(model)
        model.laplacian = model.laplacian.to_dense()
    model = model.eval()
    names = _output_names(task, model, example)
    axes = {0: "batch", 2: "height", 3: "width"} if task == "detection" else {0: "batch"}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=names, opset_version=opset,
                          dynamic_axes={"input": axes, **{n: {0: "batch"} for n in names}}, dynamo=False)
    graph = onnx.load(str(path))
    from facelearn import __version__

    record = getattr(getattr(model, "config", model), "input", None)  # recognition backbones hold it themselves
    preprocess = json.dumps(dataclasses.asdict(record)) if record is not None else ""
    for key, value in {"task": task, "input": INPUTS[task], "preprocess": preprocess, "facelearn": __version__,
                       "source": source}.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


def inference_session(path: str | os.PathLike | bytes, threads: int | None = None):  # noqa: ANN201  (ORT's type)
    """An ONNX Runtime CPU session of the graph at ``path`` (or a serialised graph's bytes), set up for inference
    beside PyTorch.

    Every graph optimisation (``ORT_ENABLE_ALL``: batch norms folded into the convolutions, activations fused,
    and the convolutions in the blocked NCHWc layout of the CPU's vector width — what makes the graph faster
    than eager PyTorch); ``threads`` intra-op threads (default: as many as PyTorch uses,
    ``torch.get_num_threads()``), one inter-op thread (the graph runs node by node); and the worker threads
    sleep between parallel sections instead of spinning, because the work around each run (resizing,
    decoding in PyTorch, NMS) runs on the same cores.
    """
    try:
        import onnxruntime as ort
    except ImportError:
        raise DataError("running ONNX graphs needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = torch.get_num_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options,
                                providers=["CPUExecutionProvider"])


def run_onnx(path: str | os.PathLike, x: np.ndarray | torch.Tensor) -> list[np.ndarray]:
    """Run an exported graph with ONNX Runtime on the CPU (:func:`inference_session`) → its outputs, in the
    graph's order."""
    session = inference_session(path)
    x = x.numpy() if isinstance(x, torch.Tensor) else x
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})


class OnnxRuntimeModel(nn.Module):
    """A network whose forward pass ONNX Runtime runs from its exported graph: the same input and outputs (a dict
    for a detector, (landmarks, features) for PFLD, a tensor otherwise) as the PyTorch ``model`` it stands in
    for, so ``detect``, ``embed`` and ``landmarks_in_boxes`` take it unchanged. What lies outside the graph (the
    preprocessing, the detector's anchors, the config) is the PyTorch model's, except that a detector's enlarged
    pyramid passes are resized and preprocessed by ONNX Runtime too (:meth:`enlarged_input`; ``enlarge=False``:
    by PyTorch, as for the other passes). threads: ONNX Runtime's intra-op threads (:func:`inference_session`;
    default PyTorch's)."""

    def __init__(self, model: nn.Module, path: str | os.PathLike, threads: int | None = None, *,
                 enlarge: bool = True) -> None:
        super().__init__()
        self.eager = model.eval()
        self.session = inference_session(path, threads)
        self.names = [o.name for o in self.session.get_outputs()]
        record = getattr(getattr(model, "config", None), "input", None)
        self._enlarge = _enlarge_session(record, threads) if enlarge and "cls" in self.names and \
            isinstance(record, Preprocess) else None

    def forward(self, x: torch.Tensor):  # noqa: ANN201  (the stand-in model's output type)
        """x: the preprocessed input, a CPU float32 tensor (passed to ONNX Runtime without a copy) → the graph's
        outputs as tensors sharing ONNX Runtime's arrays."""
        x = np.ascontiguousarray(x.detach().cpu().float().numpy())
        outputs = [torch.from_numpy(o) for o in self.session.run(None, {"input": x})]
        if len(outputs) == 1:
            return outputs[0]
        return dict(zip(self.names, outputs)) if "cls" in self.names else tuple(outputs)

    def train(self, mode: bool = True) -> "OnnxRuntimeModel":
        """Set this module's flag alone: the graph is the network in eval mode whatever the flag says, and the
        PyTorch model (whose preprocessing and anchors are used) stays in eval mode, so nothing walks its
        modules (``detect`` switches its model to eval and back on every image)."""
        self.training = mode
        return self

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """The PyTorch model's preprocessing (outside the graph, as the graph's ``preprocess`` metadata says)."""
        return self.eager.preprocess(images)

    def enlarged_input(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
        """A detector's input for ``image`` (3, H, W) RGB in [0, 1] enlarged to ``size`` (h ≥ H, w ≥ W): bilinear
        with half-pixel centres, as ``F.interpolate(..., mode="bilinear", align_corners=False)``, then the
        preprocessing, both run by ONNX Runtime (:func:`_enlarge_session`; within 1e-6 of PyTorch's, not bit for
        bit) → (1, 3, h, w) float32; None for a network that is no detector or whose preprocessing is no
        :class:`~facelearn.weights.Preprocess` (the caller resizes and preprocesses itself)."""
        if self._enlarge is None:
            return None
        x = np.ascontiguousarray(image.detach().cpu().float().numpy()[None])
        sizes = np.array([1, 3, *size], dtype=np.int64)
        return torch.from_numpy(self._enlarge.run(None, {"image": x, "sizes": sizes})[0])

    def anchors(self, *args, **kwargs) -> torch.Tensor:
        """The detector's anchors (computed outside the graph, as for the PyTorch model)."""
        return self.eager.anchors(*args, **kwargs)

    @property
    def config(self):  # noqa: ANN201
        return self.eager.config


def _enlarge_session(record: Preprocess, threads: int | None):  # noqa: ANN202  (onnxruntime's type)
    """An ONNX Runtime session (:func:`inference_session`'s options) of a small graph: ``image`` (1, 3, H, W) RGB
    in [0, 1] and ``sizes`` (1, 3, h, w) int64 → ``input``: the image resized bilinearly (``Resize``, linear, half
    pixel, no antialiasing: for enlarging only) and put through ``record`` as
    :meth:`~facelearn.weights.Preprocess.from_unit` does it (channel order, scale, mean, std, in that order);
    None without the onnx package (a graph file read by onnxruntime alone: PyTorch resizes)."""
    try:
        from onnx import TensorProto, helper
    except ImportError:
        return None

    nodes, last = [helper.make_node("Resize", ["image", "", "", "sizes"], ["resized"], mode="linear",
                                    coordinate_transformation_mode="half_pixel")], "resized"
    constants = []

    def step(op: str, name: str, values: list, dtype: int = TensorProto.FLOAT, dims: tuple = (1, 3, 1, 1)) -> None:
        nonlocal last
        constants.append(helper.make_tensor(name, dtype, list(dims), values))
        nodes.append(helper.make_node(op, [last, name], [f"{name}_out"], **({"axis": 1} if op == "Gather" else {})))
        last = f"{name}_out"

    if record.channels == "BGR":
        step("Gather", "order", [2, 1, 0], TensorProto.INT64, (3,))
    if record.divisor != 255.0:
        step("Mul", "scale", [255.0 / record.divisor], dims=())
    if any(record.mean):
        step("Sub", "mean", list(record.mean))
    if any(v != 1.0 for v in record.std):
        step("Div", "std", list(record.std))
    nodes.append(helper.make_node("Identity", [last], ["input"]))
    inputs = [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, None, None]),
              helper.make_tensor_value_info("sizes", TensorProto.INT64, [4])]
    output = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, None, None])
    graph = helper.make_graph(nodes, "enlarge", inputs, [output], constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return inference_session(model.SerializeToString(), threads)


def example_input(size: int | None) -> torch.Tensor:
    """A fixed random (1, 3, S, S) image in [0, 1] for a network of square ``size`` crops, or (1, 3, 256, 320)
    for a detector."""
    return torch.rand(1, 3, size or 256, size or 320, generator=torch.Generator().manual_seed(0))


def with_runtime(model: nn.Module, task: str, size: int | None, runtime: str, threads: int | None = None) -> nn.Module:
    """``model`` itself for ``runtime="torch"``; for ``"onnxruntime"`` an :class:`OnnxRuntimeModel` of its graph
    (exported to a temporary file, read once by ONNX Runtime, with ``threads`` intra-op threads; default
    PyTorch's). size: as :func:`example_input`."""
    import tempfile

    if runtime == "torch":
        return model
    if runtime != "onnxruntime":
        raise ValueError(f"unknown runtime {runtime!r}; one of torch, onnxruntime")
    with tempfile.TemporaryDirectory() as folder:
        example = model.preprocess(example_input(size))
        return OnnxRuntimeModel(model, export_onnx(model, task, example, Path(folder) / f"{task}.onnx"), threads)


def largest_difference(model: nn.Module, path: str | os.PathLike, x: torch.Tensor) -> float:
    """max |PyTorch − ONNX Runtime| over every output of ``model`` and the graph at ``path`` on input ``x``."""
    with torch.no_grad():
        out = model(x)
    eager = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]
    return max(float(np.abs(e.numpy() - o).max()) for e, o in zip(eager, run_onnx(path, x)))


def _cmd_onnx(args: argparse.Namespace) -> int:
    task, model, example = load_for_export(args.checkpoint)
    path = export_onnx(model, task, example, args.out, opset=args.opset, source=Path(args.checkpoint).name)
    message = f"wrote {path} ({task}, {path.stat().st_size / 1e6:.2f} MB; input: {INPUTS[task]})"
    if args.check:
        x = example if task != "detection" else \
            model.preprocess(torch.rand(1, 3, 200, 296, generator=torch.Generator().manual_seed(1)))
        message += f"; ONNX Runtime vs PyTorch: max difference {largest_difference(model, path, x):.2e}"
    print(message)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``onnx`` under ``facelearn export``."""
    p = subparser(subparsers, "onnx",
                  "export a detector, recognition backbone, PFLD or mesh decoder checkpoint to ONNX (the detector "
                  "with dynamic height and width)",
                  "facelearn export onnx --checkpoint facelearn/detection/checkpoints/retinaface_mnet025_quick.pt "
                  "--out retinaface.onnx --check", _cmd_onnx)
    p.add_argument("--checkpoint", required=True, help="a facelearn checkpoint of any task")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--opset", type=cli_types.positive_int, default=17, help="ONNX opset version")
    p.add_argument("--check", action="store_true",
                   help="run the graph with ONNX Runtime and print its largest difference from PyTorch")
