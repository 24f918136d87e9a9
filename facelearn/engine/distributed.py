"""Training on several processes with ``torchrun`` (book chapter "Millions of identities").

``torchrun --nproc_per_node N …`` starts N copies of a program and tells each, through the environment
(``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), who it is and where to meet.
:func:`setup` reads that environment and joins the process group (NCCL between GPUs, gloo on CPUs); the
rest of facelearn asks :func:`world_size`, :func:`rank` and :func:`is_main` and needs no other wiring.
A program started without ``torchrun`` is a world of one and every function here is a no-op.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
from datetime import timedelta
from typing import Iterator, Sequence

import torch
import torch.distributed as dist

#: Seconds a collective waits for the other processes before giving up (``$FACELEARN_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 600.0


class RankFailure(RuntimeError):
    """Another process of the job stopped (crashed, was killed or timed out) during a collective."""


def launched() -> bool:
    """Whether this process was started by ``torchrun`` as one of several (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def initialised() -> bool:
    """Whether a process group exists."""
    return dist.is_available() and dist.is_initialized()


def setup(timeout_s: float | None = None) -> bool:
    """Join the process group described by torchrun's environment, once; returns whether there is one.

    Backend NCCL when CUDA is available (each process on ``cuda:LOCAL_RANK``), gloo otherwise. Collectives
    give up after ``timeout_s`` (default ``$FACELEARN_DIST_TIMEOUT`` or :data:`DEFAULT_TIMEOUT_S`) so that a
    dead process ends the others with :class:`RankFailure` rather than a hang. The group is destroyed at exit.
    """
    if initialised():
        return True
    if not launched():
        return False
    timeout_s = timeout_s or float(os.environ.get("FACELEARN_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    atexit.register(cleanup)
    return True


def cleanup() -> None:
    """Leave the process group (``destroy_process_group``) if there is one."""
    if initialised():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of processes in the job (1 without a process group)."""
    return dist.get_world_size() if initialised() else 1


def rank() -> int:
    """This process's rank, 0 … world_size − 1 (0 without a process group)."""
    return dist.get_rank() if initialised() else 0


def is_main() -> bool:
    """Whether this process is rank 0, the one that writes files, logs and progress bars."""
    return rank() == 0


def barrier() -> None:
    """Wait until every process gets here (no-op in a world of one)."""
    if initialised():
        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first and on the other ranks after it finished (e.g. exporting a data set
    that every process then reads): the others wait at a barrier, then find the files written."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


_PEER_LOST = ("gloo/transport", "Connection closed by peer", "Connection reset by peer", "NCCL error",
              "Timed out", "timed out", "Socket Timeout")


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` (raised inside a collective) means that another process is gone or did not answer."""
    if not initialised() or isinstance(err, RankFailure):
        return False
    return isinstance(err, dist.DistError) or any(text in str(err) for text in _PEER_LOST)


def failure(err: BaseException, step: int) -> RankFailure:
    """The one-line :class:`RankFailure` for a collective that failed at iteration ``step``."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return RankFailure(f"rank {rank()} of {world_size()}: another process stopped or timed out at iteration "
                       f"{step}; the job cannot continue ({first[:160]})")


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run ``facelearn ARGV`` under ``torchrun --standalone --nproc_per_node NPROC`` and return its exit
    status: the ``--nproc`` convenience of ``facelearn train``, for one machine."""
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "facelearn.cli", *argv]
    return subprocess.call(command)


def strip_nproc(argv: Sequence[str]) -> tuple[int | None, list[str]]:
    """(N, the arguments without it) for ``--nproc N`` / ``--nproc=N`` in ``argv``; (None, argv) without it."""
    out, nproc, it = [], None, iter(argv)
    for arg in it:
        if arg == "--nproc":
            value = next(it, None)
            if value is None:
                raise ValueError("--nproc needs a number of processes")
            nproc = _positive(value)
        elif arg.startswith("--nproc="):
            nproc = _positive(arg.split("=", 1)[1])
        else:
            out.append(arg)
    return nproc, out


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"--nproc expects a positive whole number of processes, got {value!r}")
    return int(value)
