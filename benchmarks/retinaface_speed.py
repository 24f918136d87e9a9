"""RetinaFace speed (book chapter "Training and evaluating RetinaFace"): ``detect`` latency on one 640×480
image with one thread; the ``quick`` recipe's test-time protocol (pyramid, mirror, box voting) on a
320×240 image as a multiple of one pass on it (25× the pixels of one pass; with the untrained weights used
here nearly every anchor passes the 0.02 evaluation threshold, the worst case for NMS and voting); one
training step (forward, loss with matching and OHEM, backward, SGD update) at batch 8 × 640×640, the
library's against the step as it was (:func:`former_step`: the forward that normalised its input itself,
:func:`former_loss` with :func:`former_match` and OHEM by two argsorts, targets gathered for every anchor and
selected by boolean masks, logs read on the host; and the former SSH, FPN and head forwards:
:func:`former_modules`), after checking that both give the same loss and the same gradients, in alternating
rounds at one thread and at torch's default, with the split of each step into forward, loss, backward and
update, and the library's step with the Trainer's switches (``channels_last`` weights and images, bf16
autocast, both; with ``--compile`` also the forward compiled by ``torch.compile``, the compilation timed
apart), each with its first loss's deviation from the default's; the
loss alone, the two side by side; the forward pass alone, with the preprocessing outside it
(``model.preprocess`` done once, as a data loader does) against the former forward that normalised its
[0, 1] input itself (:func:`forward_normalising_inside`), as a ratio. Prints the model, the batch, the
device and the thread count; not a test.

    python benchmarks/retinaface_speed.py [--model retinaface-mobilenet0.25] [--repeats 10] [--device cpu]
        [--train-threads N] [--only-training] [--compile] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
import types

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou

from facelearn import runtime
from facelearn.detection import retinaface
from facelearn.detection.box_coding import cxcywh_to_xyxy, encode_boxes, encode_landmarks
from facelearn.detection.loss import LossConfig, MultiTaskLoss
from facelearn.detection.matching import IGNORE, NEGATIVE, POSITIVE, Matching, gather_targets, pad_boxes
from facelearn.detection.postprocess import detect
from facelearn.detection.training import train_config
from facelearn.models import count_parameters


#: the training step's clock: wall time, or with ``--clock cpu`` the process's CPU time (all its threads), which
#: a shared machine's other processes barely change
CLOCK = [time.perf_counter]


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
                                                                          "besides 1 (default: torch's default)")
    parser.add_argument("--only-training", action="store_true", help="time the training step alone")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time training steps by wall time or by the process's CPU time (cpu: for a loaded "
                             "machine; with one thread it is the step's time, unaffected by other processes)")
    parser.add_argument("--compile", action="store_true", help="add training-step rows with the forward compiled by "
                                                               "torch.compile (minutes of compilation)")
    args = parser.parse_args()
    dev = runtime.device(args.device)
    if args.clock == "cpu":
        if dev.type != "cpu":
            parser.error("--clock cpu times CPU steps only; use --device cpu")
        CLOCK[0] = time.process_time
    runtime.seed_everything(0)
    model = retinaface.build(args.model).to(dev)
    print(f"model {args.model}: {count_parameters(model):,} parameters; device {dev}; torch {torch.__version__}")

    default_threads = torch.get_num_threads()
    train_threads = args.train_threads or default_threads
    if not args.only_training:
        detect_latency(model, dev, args.repeats)
    training_step_as_it_was(model, dev, max(3, args.repeats // 3), sorted({1, train_threads}), args.compile)
    if not args.only_training:
        preprocessing_outside(model, dev, args.repeats, default_threads)


def detect_latency(model: retinaface.RetinaFace, dev: torch.device, repeats: int) -> None:
    """``detect`` on one 640×480 image with one thread; the quick test-time protocol as a multiple of one pass."""
    torch.set_num_threads(1)
    image = (np.random.default_rng(0).random((480, 640, 3)) * 255).astype(np.uint8)
    lat = timed(lambda: detect(model, image, score_threshold=0.5, scale=1.0), repeats, dev)
    print(f"detect 640x480, {torch.get_num_threads()} thread: median {statistics.median(lat) * 1e3:.1f} ms "
          f"(min {min(lat) * 1e3:.1f}, {repeats} runs)")
    small, protocol = image[:240, :320], train_config("quick").test_time
    one = statistics.median(timed(lambda: detect(model, small, score_threshold=0.02, scale=1.0), repeats, dev))
    full = statistics.median(timed(lambda: detect(model, small, score_threshold=0.02, **protocol), repeats, dev))
    print(f"detect 320x240, quick test-time protocol {protocol}: median {full * 1e3:.1f} ms = "
          f"{full / one:.1f}x one pass ({one * 1e3:.1f} ms)")


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


def former_match(anchors: torch.Tensor, boxes: torch.Tensor, valid: torch.Tensor, *, positive_iou: float = 0.5,
                 negative_iou: float = 0.3, min_best_iou: float = 0.0) -> Matching:
    """The former ``matching.match``: torchvision's ``box_iou`` of the valid faces written into the (B, M, A)
    table through a boolean mask, labels set by boolean masks, each face's best anchor from an ``argmax`` and a
    ``max``, the forced positives indexed by ``nonzero``; ``valid.any()`` read on the host twice."""
    b, m = valid.shape
    a = anchors.shape[0]
    iou = torch.full((b, m, a), -1.0, device=anchors.device, dtype=anchors.dtype)
    if valid.any():
        iou[valid] = box_iou(boxes[valid].to(anchors.dtype), cxcywh_to_xyxy(anchors))
    best_iou, matched = iou.max(dim=1)
    labels = torch.full((b, a), IGNORE, dtype=torch.int64, device=anchors.device)
    labels[best_iou < negative_iou] = NEGATIVE
    labels[best_iou >= positive_iou] = POSITIVE
    if valid.any():
        best_anchor = iou.argmax(dim=2)
        best_of_face = iou.max(dim=2).values
        bi, fi = (valid & (best_of_face >= min_best_iou)).nonzero(as_tuple=True)
        ai = best_anchor[bi, fi]
        labels[bi, ai] = POSITIVE
        matched[bi, ai] = fi
        best_iou[bi, ai] = iou[bi, fi, ai]
    if m and not valid.any():
        matched.zero_()
    return Matching(labels, matched, best_iou.clamp(min=0))


def former_loss(outputs: dict[str, torch.Tensor], anchors: torch.Tensor, boxes: list[torch.Tensor],
                landmarks: list[torch.Tensor], has_landmarks: list[torch.Tensor],
                cfg: LossConfig = LossConfig()) -> tuple[torch.Tensor, dict[str, float]]:
    """The former ``MultiTaskLoss`` (without the dense branch): :func:`former_match`, OHEM by
    :func:`ohem_by_two_sorts`, every anchor's box and landmark targets gathered ((B, A, 4), (B, A, 5, 2)) and
    the positives picked by boolean masks, ``pos.any()`` and ``with_pts.any()`` read on the host, and the logs
    read to Python floats."""
    logits = outputs["cls"].float()
    anchors = anchors.to(logits.device, torch.float32)
    gt, valid = pad_boxes([b.to(logits.device, torch.float32) for b in boxes])
    m = former_match(anchors, gt, valid, positive_iou=cfg.positive_iou, negative_iou=cfg.negative_iou,
                     min_best_iou=cfg.min_best_iou)
    pos = m.labels == POSITIVE
    target = pos.long()
    ce = F.cross_entropy(logits.reshape(-1, 2), target.reshape(-1), reduction="none").view_as(target).float()
    used = ohem_by_two_sorts(ce, m.labels, cfg.neg_pos_ratio, cfg.min_negatives)
    n_pos = pos.sum().clamp(min=1).float()
    loss_cls = (ce * used).sum() / n_pos
    anchors_b = anchors.expand(len(boxes), -1, -1)
    if pos.any():
        box_t = encode_boxes(gather_targets(gt, m.matched)[pos], anchors_b[pos], cfg.variances)
        loss_box = F.smooth_l1_loss(outputs["box"].float()[pos], box_t, reduction="sum") / n_pos
    else:
        loss_box = outputs["box"].sum() * 0.0
    loss_pts = outputs["landmarks"].sum() * 0.0
    pts = torch.zeros(len(landmarks), gt.shape[1], 5, 2, device=logits.device)
    has = torch.zeros(len(landmarks), gt.shape[1], dtype=torch.bool, device=logits.device)
    for i, (p, h) in enumerate(zip(landmarks, has_landmarks)):
        pts[i, : len(p)] = p.to(logits.device, torch.float32).reshape(-1, 5, 2)
        has[i, : len(h)] = h.to(logits.device).bool()
    with_pts = pos & gather_targets(has, m.matched)
    if with_pts.any():
        pts_t = encode_landmarks(gather_targets(pts, m.matched)[with_pts], anchors_b[with_pts], cfg.variances)
        loss_pts = F.smooth_l1_loss(outputs["landmarks"].float()[with_pts], pts_t,
                                    reduction="sum") / with_pts.sum().float()
    loss = loss_cls + cfg.box_weight * loss_box + cfg.landmark_weight * loss_pts
    b = max(len(boxes), 1)
    return loss, {"cls": float(loss_cls.detach()), "box": float(loss_box.detach()),
                  "landmarks": float(loss_pts.detach()), "positives": float(pos.sum()) / b,
                  "negatives": float((used & ~pos).sum()) / b}


def random_faces(n_images: int, dev: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Boxes, landmarks and landmark flags of 10 faces of 16–200 px per 640² image, as lists per image."""
    g = torch.Generator().manual_seed(0)
    boxes, points, has = [], [], []
    for _ in range(n_images):
        xy = torch.rand(10, 2, generator=g) * 400
        wh = 16 + torch.rand(10, 1, generator=g) * 184
        b = torch.cat([xy, xy + wh], dim=1)
        boxes.append(b.to(dev))
        points.append((b[:, None, :2] + wh[:, None] * torch.rand(10, 5, 2, generator=g)).to(dev))
        has.append(torch.ones(10, dtype=torch.bool, device=dev))
    return boxes, points, has


PHASES = ("forward", "loss", "backward", "update")


def former_ssh_forward(self, x: torch.Tensor) -> torch.Tensor:
    """The former ``SSH.forward``: the ReLU on the concatenated branches written into a new tensor."""
    b3 = self.conv3(x)
    t = self.conv5_1(x)
    return F.relu(torch.cat([b3, self.conv5_2(t), self.conv7_3(self.conv7_2(t))], dim=1))


def former_fpn_forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """The former ``FPN.forward``: each top-down sum a new tensor."""
    lat = [conv(f) for conv, f in zip(self.lateral, features)]
    outs = [lat[-1]]
    for i in range(len(lat) - 2, -1, -1):
        up = F.interpolate(outs[0], size=lat[i].shape[-2:], mode="nearest")
        outs.insert(0, self.merge[i](lat[i] + up))
    if self.p6 is not None:
        outs.append(self.p6(features[-1]))
    return outs


def former_head_forward(self, features: list[torch.Tensor]) -> torch.Tensor:
    """The former ``TaskHead.forward``: each level's predictions copied to (B, H·W·k, values), then copied again
    by the concatenation."""
    outs = []
    for conv, f in zip(self.convs, features):
        y = conv(f).permute(0, 2, 3, 1)
        outs.append(y.reshape(y.shape[0], -1, self.values))
    return torch.cat(outs, dim=1)


def former_modules(model: retinaface.RetinaFace) -> retinaface.RetinaFace:
    """A copy of ``model`` (same weights) whose SSH, FPN and heads run their former forwards."""
    from facelearn.detection.fpn import FPN
    from facelearn.detection.heads import TaskHead
    from facelearn.detection.ssh import SSH

    net = copy.deepcopy(model)
    for module in net.modules():
        for cls, fn in ((SSH, former_ssh_forward), (FPN, former_fpn_forward), (TaskHead, former_head_forward)):
            if isinstance(module, cls):
                module.forward = types.MethodType(fn, module)
    return net


def training_step_as_it_was(model: retinaface.RetinaFace, dev: torch.device, rounds: int, threads: list[int],
                            compile_rows: bool = False) -> None:
    """The training step as it was against the library's, on one batch of 8 × 640² with 10 faces per image:
    same loss and same gradients first, then, per thread count, the fastest of ``rounds`` alternating rounds of
    whole steps (former; library; library with the Trainer's switches: ``channels_last``, bf16 autocast, both,
    and with ``compile_rows`` the forward compiled by ``torch.compile``, alone and with ``channels_last``,
    compilation timed apart), of each step's phases, and of the loss alone. Each switch's first loss is printed
    with its deviation from the default's (same weights, same batch)."""
    model.train()
    batch, size = 8, 640
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(dev)
    anchors = model.anchors((size, size), device=dev)
    boxes, points, has = random_faces(batch, dev)
    criterion = MultiTaskLoss()
    former_net = former_modules(model)
    images_cl = images.contiguous(memory_format=torch.channels_last)

    def switched(channels_last: bool = False, bf16: bool = False, compiled: bool = False):
        """(model, forward, loss) of the library's step with the Trainer's switches (a copy of the weights)."""
        net = copy.deepcopy(model)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        if compiled:
            net.compile()
        x = images_cl if channels_last else images

        def forward() -> dict[str, torch.Tensor]:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                return net(net.preprocess(x))
        return net, forward, lambda out: criterion(out, anchors, boxes, points, has)

    def former(net=former_net) -> tuple[torch.Tensor, dict[str, float]]:
        return former_loss(forward_normalising_inside(net, images), anchors, boxes, points, has)

    def library(net=model, x=images) -> tuple[torch.Tensor, dict]:
        return criterion(net(net.preprocess(x)), anchors, boxes, points, has)

    same_loss_and_gradients((former_net, former), (model, library))
    steps = {"former": (former_net, lambda: forward_normalising_inside(former_net, images),
                        lambda out: former_loss(out, anchors, boxes, points, has)),
             "library": (model, lambda: model(model.preprocess(images)),
                         lambda out: criterion(out, anchors, boxes, points, has)),
             "library, channels_last": switched(channels_last=True),
             "library, bf16 autocast": switched(bf16=True),
             "library, bf16 + channels_last": switched(channels_last=True, bf16=True)}
    if compile_rows:
        steps["library, compile"] = switched(compiled=True)
        steps["library, channels_last + compile"] = switched(channels_last=True, compiled=True)
        steps["library, bf16 + channels_last + compile"] = switched(channels_last=True, bf16=True, compiled=True)
    optimizers = {id(m): torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for m, _, _ in steps.values()}

    reference = None
    for name, (net, forward, loss_fn) in steps.items():  # first losses, before any update (same weights)
        if name == "former":
            continue
        t = time.perf_counter()
        with torch.no_grad():
            loss = float(loss_fn(forward())[0])
        seconds = time.perf_counter() - t
        if reference is None:
            reference = loss
        note = f"; first call {seconds:.1f} s (compilation)" if "compile" in name else ""
        print(f"  {name:<40} first loss {loss:.7f} (relative deviation from the default's "
              f"{abs(loss - reference) / abs(reference):.1e}){note}")

    def step(net, forward, loss_fn, split: bool) -> list[float]:
        """One step; with ``split`` the seconds of each phase (waiting for the device between them), else the
        whole step's seconds alone."""
        _sync(dev)
        marks = [CLOCK[0]()]

        def mark() -> None:
            if split:
                _sync(dev)
                marks.append(CLOCK[0]())
        outputs = forward()
        mark()
        loss, _ = loss_fn(outputs)
        mark()
        optimizers[id(net)].zero_grad(set_to_none=True)
        loss.backward()
        mark()
        optimizers[id(net)].step()
        _sync(dev)
        marks.append(CLOCK[0]())
        return [b - a for a, b in zip(marks, marks[1:])]

    with torch.no_grad():
        outputs = {k: v.detach() for k, v in model(model.preprocess(images)).items()}
    losses = {"former": lambda: former_loss(outputs, anchors, boxes, points, has),
              "library": lambda: criterion(outputs, anchors, boxes, points, has)}
    print(f"training step, {model.config.backbone} ({model.config.anchors} anchors, {len(anchors)}), batch {batch} x "
          f"{size}x{size}, 10 faces per image, SGD; the step as it was vs the library's, min of {rounds} alternating "
          f"rounds, device {dev}, {'process CPU time' if CLOCK[0] is time.process_time else 'wall time'}:")
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        t = time.perf_counter()
        for name, v in steps.items():  # a compiled forward compiles its backward on the first step
            if "compile" in name:
                step(*v, split=False)
        if compile_rows:
            print(f"  {n_threads} thread(s): compiled backward passes and recompilations "
                  f"{time.perf_counter() - t:.1f} s")
        whole = alternate({k: (lambda v=v: step(*v, split=False)) for k, v in steps.items()}, rounds, dev)
        split = alternate({k: (lambda v=v: step(*v, split=True)) for k, v in steps.items() if k in losses},
                          rounds, dev)
        alone = alternate(losses, 3 * rounds, dev)
        former_s = whole["former"][0]
        print(f"  {n_threads} thread(s): step former {former_s:.3f} s")
        for name, (seconds,) in whole.items():
            if name != "former":
                print(f"    {name:<40} {seconds:.3f} s   former / this {former_s / seconds:.3f}x")
        for name, phases in split.items():
            total = sum(phases)
            print(f"    {name:<8} " + "   ".join(f"{p} {t * 1e3:7.1f} ms ({t / total:4.0%})"
                                                  for p, t in zip(PHASES, phases)))
        print(f"    loss alone (matching, encoding, OHEM, forward and logs): former {alone['former'][0] * 1e3:.1f} ms"
              f"   library {alone['library'][0] * 1e3:.1f} ms   former / library "
              f"{alone['former'][0] / alone['library'][0]:.3f}x")


def same_loss_and_gradients(*runs) -> None:
    """Raise unless the step as it was and the library's, ``runs`` = ((model, fn), (model, fn)) on models with
    the same weights, give the same loss (to float32 rounding of the box and landmark sums, which the library
    takes over every anchor) and logs, and gradients equal bit for bit."""
    results = []
    for model, fn in runs:
        model.zero_grad(set_to_none=True)
        loss, logs = fn()
        loss.backward()
        results.append((float(loss.detach()), {k: float(v) for k, v in logs.items()},
                        [p.grad.clone() for p in model.parameters()]))
        model.zero_grad(set_to_none=True)
    (loss_a, logs_a, grads_a), (loss_b, logs_b, grads_b) = results
    if not all(torch.equal(a, b) for a, b in zip(grads_a, grads_b)):
        raise AssertionError("the former step and the library's give different gradients")
    if logs_a.keys() != logs_b.keys() or any(abs(logs_a[k] - logs_b[k]) > 1e-6 * abs(logs_a[k]) for k in logs_a) \
            or abs(loss_a - loss_b) > 1e-6 * abs(loss_a):
        raise AssertionError(f"different losses: former {loss_a} {logs_a}, library {loss_b} {logs_b}")
    print(f"same step: loss former {loss_a:.9g}, library {loss_b:.9g}; logs {logs_b}; gradients equal bit for bit")


def alternate(fns: dict, rounds: int, dev: torch.device) -> dict[str, list[float]]:
    """Each function once as a warm-up, then ``rounds`` rounds running them in turn: per function, the fastest
    round (its value, elementwise for a list of phase times; a function returning no list is timed here)."""
    best: dict[str, list[float]] = {}

    def run(fn) -> list[float]:
        _sync(dev)
        t = CLOCK[0]()
        out = fn()
        _sync(dev)
        return out if isinstance(out, list) else [CLOCK[0]() - t]
    for fn in fns.values():
        run(fn)
    for _ in range(rounds):
        for name, fn in fns.items():
            got = run(fn)
            best[name] = [min(a, b) for a, b in zip(best[name], got)] if name in best else got
    return best


if __name__ == "__main__":
    main()
