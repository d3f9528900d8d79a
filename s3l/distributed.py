"""The one launcher every multi-process command shares (pretrain, finetune, cluster, decode).

``--nproc N`` (N > 1) re-executes the same command line under ``torch.distributed.run`` (torchrun's own
entry point), with ``--nproc`` removed, so a run started by s3l and one started by hand with
``torchrun --nproc-per-node N -m s3l ...`` (or a multi-node rendezvous) take exactly the same code path.
Inside a worker, :func:`init` joins the process group: NCCL on CUDA, gloo on CPU. With one process there is
no process group and every collective below is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3l.errors import S3LError


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: str  # "cpu" or "cuda:N"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def in_worker() -> bool:
    """True inside a process started by torch.distributed.run."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


ERRORS_ENV = "S3L_WORKER_ERRORS"  # directory where workers started by maybe_relaunch leave their one-line errors


def maybe_relaunch(nproc: int, argv: list[str] | None = None) -> None:
    """If ``nproc > 1`` and this is not already a worker, run ``argv`` under torch.distributed.run and exit.

    Workers leave a user error in a file instead of printing it (every process usually hits the same one);
    this process prints each distinct message once, and torchrun's own failure log is silenced."""
    if nproc < 1:
        raise S3LError(f"--nproc must be at least 1, got {nproc}")
    if nproc == 1 or in_worker():
        return
    import logging
    import tempfile

    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException

    args = _strip_nproc(list(sys.argv[1:] if argv is None else argv))
    torch_args = ["--standalone", f"--nproc-per-node={nproc}", "-m", "s3l", *args]
    for name in ["torch.distributed.elastic", *logging.root.manager.loggerDict]:  # loggers with their own level
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))  # torchrun's banner
    with tempfile.TemporaryDirectory(prefix="s3l-errors-") as errors:
        os.environ[ERRORS_ENV] = errors
        try:
            torchrun.main(torch_args)
        except SystemExit as e:
            sys.exit(e.code)
        except SignalException as e:  # Ctrl-C / SIGTERM: passed on to the workers, which said what they kept
            sys.exit(128 + int(e.sigval))
        except Exception as e:  # ChildFailedError
            messages = [p.read_text(encoding="utf-8").strip() for p in sorted(Path(errors).glob("rank*.txt"))]
            if messages:
                raise S3LError("\n".join(f"error: {m}" if i else m
                                          for i, m in enumerate(dict.fromkeys(messages)))) from None
            raise S3LError(f"a worker process failed: {_failure(e)}") from None
        finally:
            os.environ.pop(ERRORS_ENV, None)
    sys.exit(0)


def _failure(e: Exception) -> str:
    """One line for a worker that died without an s3l error (a crash or a signal)."""
    failures = getattr(e, "failures", None) or {}
    for rank, f in sorted(failures.items()):
        how = f"signal {f.signal_name()}" if f.exitcode < 0 else f"exit code {f.exitcode}"
        return f"rank {rank} ended with {how} (its output is above)"
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def report_error(message: str) -> bool:
    """In a worker of :func:`maybe_relaunch`: leave ``message`` for the launcher to print; False elsewhere."""
    errors = os.environ.get(ERRORS_ENV)
    if not (errors and in_worker()):
        return False
    try:
        Path(errors, f"rank{int(os.environ['RANK']):05d}.txt").write_text(message + "\n", encoding="utf-8")
    except OSError:
        return False
    return True


def _strip_nproc(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    return out


def init(device: str = "auto") -> DistInfo:
    """Join the process group if started by torchrun; pick the device (``auto``: CUDA if present)."""
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", 0))
    world = int(os.environ.get("WORLD_SIZE", 1))
    local = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise S3LError("--device cuda requested but no CUDA device is available")
        device = f"cuda:{local}" if device == "cuda" else device
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise S3LError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if world > 1 and not dist.is_initialized():
        import faulthandler

        faulthandler.enable()  # a native crash in a worker prints every thread's Python stack
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistInfo]:
    """:func:`init` ... :func:`shutdown` around a command. On success every process first waits for the others
    (no process tears the group down under a peer's last collective); on an error it leaves at once (a barrier
    would wait for peers that are stuck in another collective)."""
    info = init(device)
    try:
        yield info
    except BaseException:
        shutdown()
        raise
    shutdown(wait=True)


def shutdown(wait: bool = False) -> None:
    """Leave the process group (``wait``: after a barrier), then collect garbage, so that the backend's native
    threads are joined now, while the interpreter is whole."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
        gc.collect()  # a reference cycle must not keep the group (and its worker threads) alive until exit


def exit_process(code: int | str | None) -> None:
    """End a torchrun worker without interpreter finalization (``os._exit``), after flushing its output.

    A native thread that touches a Python object while the interpreter is being torn down (gloo's work
    threads releasing a finished collective's tensors, autograd worker threads) takes the GIL, is ended by
    ``PyThread_exit_thread`` and unwinds through a ``noexcept`` frame: ``terminate called without an active
    exception``, SIGABRT, and torchrun reports the whole command failed although every output was written
    (pytorch/pytorch#190489). Every s3l command has closed its files when it returns, so a worker skips the
    teardown; outside torchrun this is ``sys.exit``.
    """
    if not in_worker():
        sys.exit(code)
    status = code if isinstance(code, int) else (0 if code is None else 1)
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: str = "cpu") -> list[float]:
    """Sum a list of floats over all processes (identity with one process)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_tensor_(t: Any) -> Any:
    """Sum a tensor in place over all processes and return it (identity with one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every process (identity with one process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def shard(n: int, rank: int, world: int) -> range:
    """Contiguous slice of ``range(n)`` for one process (sizes differ by at most one)."""
    start = n * rank // world
    return range(start, n * (rank + 1) // world)


def set_cpu_threads(threads: int, info: DistInfo) -> None:
    """``threads > 0``: that many intra-op threads; else, for several CPU processes on one machine, an equal
    share of the cores each (torch's default would give every process all of them)."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    elif info.device == "cpu" and info.distributed:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", 1))))
