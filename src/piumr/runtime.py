"""Where and how a run executes: device choice, CPU threads, torch.distributed, seeding.

Thread rule (``configure_threads``): a process gets ``cores`` PHYSICAL cores
(``/proc/cpuinfo``, capped by the CPUs this process may run on). Each
DataLoader worker runs one intra-op thread (``piumr.data.dataset.worker_init``),
so the main process gets ``max(1, cores - workers)`` intra-op threads and
``workers + threads <= cores`` whenever ``workers < cores``. An explicit
``--threads`` (or ``OMP_NUM_THREADS`` when no ``--threads`` is given) asks for
fewer or more; it is capped by the same rule, never raised above it.

Child processes (loader workers, ``prepare`` workers, parallel reproduce trainings) call
``die_with_parent`` first: the kernel kills them when the process that started them dies, even by
kill -9, so no worker outlives an interrupted command.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from piumr.errors import DeviceError

__all__ = ["DistInfo", "pick_device", "setup_distributed", "seed_everything", "physical_cores", "cpu_identity",
           "thread_budget", "configure_threads", "die_with_parent", "Stop", "stop_on_signals", "pid_alive", "end_pool"]

_DEVICE_HELP = "use cpu, cuda, cuda:N or auto"


def pick_device(device: str | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; otherwise the named device, checked.

    Raises ``DeviceError`` (one line naming the value) for a string that is not a
    device, a device type piumr does not run on, or a GPU that is not there.
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise DeviceError(f"--device {device!r}: not a device ({_DEVICE_HELP})") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device!r}: no CUDA GPU is available here (use --device cpu)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise DeviceError(f"--device {device!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise DeviceError(f"--device {device!r}: MPS is not available here (use --device cpu)")
        return dev
    raise DeviceError(f"--device {device!r}: device type {dev.type!r} is not supported ({_DEVICE_HELP})")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) run."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0


def setup_distributed(device: str | None) -> DistInfo:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1); else rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = pick_device(device)
    if world <= 1:
        return DistInfo(0, 1, dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank()
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return DistInfo(rank, dist.get_world_size(), dev)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _allowed_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_identity(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, str]:
    """What a CPU result depends on besides the code: the CPU model (``cpuinfo``'s "model name", else
    ``platform.processor()``) and the kernel set torch picked for it (``avx512``, ``avx2``, ...). A seeded run of
    this chaotic recipe gives other numbers under another kernel set (docs/results.md)."""
    import platform

    fields: dict[str, str] = {}
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:  # a bare "AMD EPYC" names no generation: family 25 = Zen 3/4
        model += f" (family {fields['cpu family']}, model {fields['model']})"
    return {"model": model,
            "torch_capability": str(torch.backends.cpu.get_cpu_capability())}


def physical_cores(cpuinfo: Path = Path("/proc/cpuinfo")) -> int:
    """Physical cores this process can use: distinct (physical id, core id) pairs in ``cpuinfo``,
    capped by the CPUs in its affinity mask; the logical CPU count where ``cpuinfo`` is unreadable."""
    allowed = _allowed_cpus()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return allowed
    cores: set[tuple[str, str]] = set()
    phys = core = ""
    for line in [*text.splitlines(), ""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not key:
            if core:
                cores.add((phys, core))
            phys = core = ""
    return max(1, min(len(cores), allowed)) if cores else allowed


def thread_budget(threads: int | None, workers: int, cores: int, omp: str | None = None) -> int:
    """Intra-op threads for the main process (the rule in the module docstring).

    ``threads``: the ``--threads`` value or None; ``omp``: ``OMP_NUM_THREADS``
    or None. Raises ``ValueError`` naming the flag or variable for a value < 1.
    """
    if workers < 0:
        raise ValueError(f"data loader workers must be >= 0, got {workers}")
    budget = max(1, cores - workers)
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        return min(threads, budget)
    if omp is not None and omp.strip():
        try:
            n = int(omp)
        except ValueError:
            raise ValueError(f"OMP_NUM_THREADS={omp!r} is not a whole number") from None
        if n < 1:
            raise ValueError(f"OMP_NUM_THREADS must be >= 1, got {n}")
        return min(n, budget)
    return budget


def configure_threads(threads: int | None, workers: int) -> int:
    """Set torch's intra-op threads for a process that also runs ``workers`` DataLoader workers.

    Defaults to the physical cores left after the workers, respects
    ``OMP_NUM_THREADS`` when set, and never oversubscribes (see the module
    docstring). Returns the number of threads set.
    """
    n = thread_budget(threads, workers, physical_cores(), os.environ.get("OMP_NUM_THREADS"))
    torch.set_num_threads(n)
    return n


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_forked_from: int | None = None  # in a forked child: the pid of the process that forked it


def _remember_parent() -> None:
    global _forked_from
    _forked_from = os.getpid()


os.register_at_fork(before=_remember_parent)


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (Linux ``PR_SET_PDEATHSIG``).

    ``parent`` is the pid of the process that started this one (default: the process this one was forked
    from, else the current parent): if it is already gone (it died between the start and this call), this
    process exits at once. A no-op where ``prctl`` does not exist.
    """
    expected = parent if parent is not None else (_forked_from if _forked_from is not None else os.getppid())
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    prctl = getattr(libc, "prctl", None)
    if prctl is None:
        return
    if prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != expected:
        os._exit(1)


class Stop(BaseException):
    """SIGINT or SIGTERM arrived during ``stop_on_signals`` (a BaseException: no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], None]]:
    """Turn SIGINT and SIGTERM into ``Stop`` while the body runs (main thread only; elsewhere a no-op). Yields
    ``check``: it raises ``Stop`` again when a signal arrived whose ``Stop`` was swallowed on the way (raised
    inside a ``__del__``, e.g. a video reader's, Python would print "Exception ignored" and go on: such a
    ``Stop`` is kept off stderr here); call it between units of work."""
    hit: list[int] = []

    def check() -> None:
        if hit:
            raise Stop(hit[0])

    if threading.current_thread() is not threading.main_thread():
        yield check
        return

    def stop(signum: int, _frame: object) -> None:
        hit.append(signum)
        raise Stop(signum)

    def unraisable(info: "sys.UnraisableHookArgs") -> None:  # a Stop lost in a __del__: ``check`` raises it again
        if not isinstance(info.exc_value, Stop):
            old_hook(info)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield check
    finally:
        sys.unraisablehook = old_hook
        for sig, handler in old.items():
            signal.signal(sig, handler)


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def end_pool(pool: ProcessPoolExecutor) -> None:
    """End a process pool now: queued work is cancelled and the running workers are terminated and joined
    (``shutdown`` alone would wait for every task already handed to a worker)."""
    procs = list(pool._processes.values()) if pool._processes else []
    manager = getattr(pool, "_executor_manager_thread", None)  # a threading.Thread (typeshed types it otherwise)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join()
    # let the pool's manager thread see its dead workers and close its wake-up pipe now: left running, it raced
    # the interpreter's exit hook, which then wrote to the closing pipe and printed "Exception ignored ... Traceback"
    # beside the one-line stop message (seen once in a test of prepare stopped by SIGTERM)
    if isinstance(manager, threading.Thread):
        manager.join(timeout=10)
