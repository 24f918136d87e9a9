"""RetinaFace speed (book chapter "Training and evaluating RetinaFace"): ``detect`` latency on one 640×480
image with one thread; the ``quick`` recipe's test-time protocol (pyramid, mirror, box voting) on a
320×240 image as a multiple of one pass on it (25× the pixels of one pass; with the untrained weights used
here nearly every anchor passes the 0.02 evaluation threshold, the worst case for NMS and voting); and one
training step (forward, loss with matching and OHEM, backward, update) at
batch 8 × 640×640; the forward pass alone, with the preprocessing outside it (``model.preprocess`` done once,
as a data loader does) against the former forward that normalised its [0, 1] input itself (kept below as
:func:`forward_normalising_inside`), as a ratio. Prints the model, the device and the thread count; not a test.

    python benchmarks/retinaface_speed.py [--model retinaface-mobilenet0.25] [--repeats 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facelearn import runtime
from facelearn.detection import retinaface
from facelearn.detection.loss import MultiTaskLoss
from facelearn.detection.postprocess import detect
from facelearn.detection.training import train_config
from facelearn.models import count_parameters


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, dev: torch.device) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="retinaface-mobilenet0.25", choices=sorted(retinaface.PRESETS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default=None)
    parser.add_argument("--train-threads", type=int, default=None, help="threads for the training step "
                                                                          "(default: torch's default)")
    args = parser.parse_args()
    dev = runtime.device(args.device)
    runtime.seed_everything(0)
    model = retinaface.build(args.model).to(dev)
    print(f"model {args.model}: {count_parameters(model):,} parameters; device {dev}; torch {torch.__version__}")

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    lat = timed(lambda: detect(model, image, score_threshold=0.5, scale=1.0), args.repeats, dev)
    print(f"detect 640x480, {torch.get_num_threads()} thread: median {statistics.median(lat) * 1e3:.1f} ms "
          f"(min {min(lat) * 1e3:.1f}, {args.repeats} runs)")
    small, protocol = image[:240, :320], train_config("quick").test_time
    one = statistics.median(timed(lambda: detect(model, small, score_threshold=0.02, scale=1.0), args.repeats, dev))
    full = statistics.median(timed(lambda: detect(model, small, score_threshold=0.02, **protocol), args.repeats, dev))
    print(f"detect 320x240, quick test-time protocol {protocol}: median {full * 1e3:.1f} ms = "
          f"{full / one:.1f}x one pass ({one * 1e3:.1f} ms)")

    torch.set_num_threads(args.train_threads or default_threads)
    model.train()
    criterion = MultiTaskLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    images = torch.rand(8, 3, 640, 640, device=dev)
    anchors = model.anchors((640, 640), device=dev)
    g = torch.Generator().manual_seed(0)
    boxes, points, has = [], [], []
    for _ in range(8):  # 10 faces of 16–200 px per image
        xy = torch.rand(10, 2, generator=g) * 400
        wh = 16 + torch.rand(10, 1, generator=g) * 184
        b = torch.cat([xy, xy + wh], dim=1)
        boxes.append(b.to(dev))
        points.append((b[:, None, :2] + wh[:, None] * torch.rand(10, 5, 2, generator=g)).to(dev))
        has.append(torch.ones(10, dtype=torch.bool, device=dev))

    def step() -> None:
        loss, _ = criterion(model(model.preprocess(images)), anchors, boxes, points, has)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    steps = timed(step, max(3, args.repeats // 3), dev)
    print(f"training step, batch 8 x 640x640, {torch.get_num_threads()} threads: median "
          f"{statistics.median(steps):.2f} s (min {min(steps):.2f} s)")
    ref = timed(lambda: model(model.preprocess(images)), max(3, args.repeats // 3), dev)
    print(f"  of which a forward pass alone: median {statistics.median(ref):.2f} s "
          f"(ratio step / forward {statistics.median(steps) / statistics.median(ref):.1f})")

    # the library's OHEM (topk) against the former one (two full argsorts), alternating round by round
    with torch.no_grad():
        outputs = {k: v.detach() for k, v in model(model.preprocess(images)).items()}
    rounds = max(3, args.repeats // 3)
    loss_only = _alternate(lambda: criterion(outputs, anchors, boxes, points, has), 3 * rounds, dev)
    whole = _alternate(step, rounds, dev)
    print(f"former OHEM (two argsorts) vs the library's (topk), min of alternating rounds, "
          f"{torch.get_num_threads()} threads, device {dev}:")
    for what, (new, old) in (("loss alone (matching, encoding, OHEM)", loss_only), ("training step", whole)):
        print(f"  {what:<40} former {old * 1e3:9.1f} ms   library {new * 1e3:9.1f} ms   "
              f"library / former {new / old:.3f}")
    preprocessing_outside(model, dev, args.repeats, default_threads)


def forward_normalising_inside(model: retinaface.RetinaFace, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The former ``RetinaFace.forward``: [0, 1] RGB in, the ImageNet mean and standard deviation applied
    inside it (two fresh full-size tensors per call), then the network."""
    mean = images.new_tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
    std = images.new_tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)
    return model((images - mean) / std)


def preprocessing_outside(model: retinaface.RetinaFace, dev: torch.device, repeats: int, threads: int) -> None:
    """Inference forward passes, the former (normalising inside) and the library's (preprocessed input), min of
    alternating rounds, at one thread and at torch's default, for one 640×480 image and a batch of 8 × 640²."""
    model.eval()
    print(f"forward with preprocessing outside vs the former in-forward normalisation ({model.config.backbone}, "
          f"device {dev}), min of {max(3, repeats)} alternating rounds:")
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        for shape in ((1, 3, 480, 640), (8, 3, 640, 640)):
            images = torch.rand(*shape, generator=torch.Generator().manual_seed(0)).to(dev)
            with torch.no_grad():
                x = model.preprocess(images)
                assert all(torch.equal(a, b) for a, b in zip(model(x).values(),
                                                               forward_normalising_inside(model, images).values()))
                best = [float("inf"), float("inf")]
                for _ in range(max(3, repeats)):
                    for i, fn in enumerate((lambda: model(x), lambda: forward_normalising_inside(model, images))):
                        _sync(dev)
                        t = time.perf_counter()
                        fn()
                        _sync(dev)
                        best[i] = min(best[i], time.perf_counter() - t)
            print(f"  batch {shape[0]} x {shape[2]}x{shape[3]}, {n_threads} thread(s): "
                  f"former {best[1] * 1e3:8.1f} ms   library {best[0] * 1e3:8.1f} ms   "
                  f"library / former {best[0] / best[1]:.3f}")


def ohem_by_two_sorts(cls_loss: torch.Tensor, labels: torch.Tensor, ratio: float | None,
                      min_negatives: int = 0) -> torch.Tensor:
    """The former ``ohem_mask``: each anchor's rank among its image's negatives from two full argsorts."""
    pos, neg = labels == 1, labels == 0
    if ratio is None:
        return pos | neg
    k = torch.minimum(torch.clamp(torch.ceil(pos.sum(1) * ratio).long(), min=min_negatives), neg.sum(1))
    rank = cls_loss.detach().masked_fill(~neg, float("-inf")).argsort(1, descending=True).argsort(1)
    return pos | (neg & (rank < k[:, None]))


def _alternate(fn, rounds: int, dev: torch.device) -> tuple[float, float]:
    """Fastest of ``rounds`` runs of ``fn`` with the library's OHEM and with the former one patched into the
    loss module, the two alternating: (library seconds, former seconds)."""
    from facelearn.detection import loss as loss_module

    library = loss_module.ohem_mask
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for i, impl in enumerate((library, ohem_by_two_sorts)):
            loss_module.ohem_mask = impl
            try:
                _sync(dev)
                t = time.perf_counter()
                fn()
                _sync(dev)
                best[i] = min(best[i], time.perf_counter() - t)
            finally:
                loss_module.ohem_mask = library
    return best[0], best[1]


if __name__ == "__main__":
    main()
