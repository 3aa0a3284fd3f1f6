"""One place that turns the errors users cause into one line on stderr and a non-zero exit; the consoles;
the note that a long CPU run prints before it starts."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from piumr.config import ModelConfig
from piumr.errors import CheckpointError, DatasetError, DeviceError, Interrupted, RunError, VideoError

#: width of tables when the output is not a terminal (piped or redirected) and COLUMNS is unset
PIPE_WIDTH = 200


def console(stderr: bool = False) -> Console:
    """A rich console whose lines are never wrapped (paths stay whole when piped); tables get the
    terminal's width, or ``PIPE_WIDTH`` columns when the output is not a terminal."""
    c = Console(stderr=stderr, soft_wrap=True)
    if not c.is_terminal and "COLUMNS" not in os.environ:
        c.width = PIPE_WIDTH
    return c


err = console(stderr=True)


@contextmanager
def user_errors() -> Iterator[None]:
    """Bad paths, data, checkpoints, presets, options or run folders, and what the system refuses (a full or
    read-only disk, no permission: ``OSError``, named by its file) -> ``error: ...`` and exit 2; a GPU out
    of memory -> a hint and exit 3; a training run stopped by a fault (``RunError``: divergence, a failed
    write, a vanished run folder) -> exit 4; work stopped by a signal after saving (``Interrupted``) -> exit
    128 + signal (130 SIGINT, 143 SIGTERM); anything else propagates with its traceback (a bug)."""
    try:
        yield
    except Interrupted as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(128 + e.signum) from None
    except RunError as e:
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
        raise typer.Exit(4) from None
    except (CheckpointError, DatasetError, DeviceError, VideoError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        if isinstance(e, FileNotFoundError) and e.filename is not None:
            msg = os_error_line(e)
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)  # a path or hint may hold [...]
        raise typer.Exit(2) from None
    except OSError as e:  # the machine refused: a full or read-only disk, no permission, a file for a folder
        err.print(f"[bold red]error:[/] {escape(os_error_line(e))}", highlight=False)
        raise typer.Exit(2) from None
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            err.print("[bold red]error:[/] the GPU ran out of memory; try a smaller --batch-size")
            raise typer.Exit(3) from None
        raise


#: what to do about an operating-system error, by errno
_HINTS = {errno.ENOSPC: "the disk is full; free space or choose another folder, then run again",
          errno.EDQUOT: "the disk quota is used up; free space or choose another folder, then run again",
          errno.EROFS: "a read-only file system; choose a writable folder",
          errno.EACCES: "no permission; choose a folder you can write to",
          errno.EPERM: "not permitted; choose a folder you can write to",
          errno.ENOTDIR: "a file is in the way where a folder is needed",
          errno.EEXIST: "something else is already in its place",
          errno.EISDIR: "a folder is in the way where a file is needed",
          errno.ELOOP: "a symbolic-link loop"}


def os_error_line(e: OSError) -> str:
    """One line for an operating-system error: the file(s), what the system said and what to do."""
    files = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    said = e.strerror or str(e) or type(e).__name__
    hint = _HINTS.get(e.errno or 0)
    text = f"{files}: {said}" if files else said
    return f"{text} ({hint})" if hint else text


def warn_cpu_time(what: str, cfg: ModelConfig, clips: int, train: bool, threads: int, device: str,
                  memory: float | None = None) -> None:
    """On CPU, say how long ``clips`` clips of ``cfg`` will take before starting (when over ~2 s), and the
    ``memory`` (bytes) they hold when given."""
    if device != "cpu":
        return
    from piumr.bench import estimate_cpu_seconds

    secs = estimate_cpu_seconds(cfg, clips, train=train, threads=threads)
    if secs < 2:
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = (f"; this machine is busy (load {load:.1f} on {cores} CPUs): expect ~{secs * load / cores:.0f} s"
            if load > cores else "")
    mib = (memory or 0) / 2**20
    held = "" if memory is None else f", holding {mib:.0f} MiB of activations" if mib < 1024 else \
        f", holding {mib / 1024:.1f} GiB of activations"
    err.print(f"note: {what} on CPU ({cfg.backbone}, {cfg.frames}x{cfg.crop}, {threads} "
              f"thread(s)): about {secs:.0f} s on an idle machine (estimate){held}{busy}", highlight=False)


def activation_bytes(cfg: ModelConfig, clips: int) -> float:
    """ESTIMATED bytes a training forward pass of ``clips`` clips through ``cfg`` keeps for its backward pass:
    the tensors autograd saves, counted on the meta device for one and two clips (no memory, no arithmetic;
    parameters and TFAM left out) and extrapolated linearly. On CPU the time of such a pass grows faster than
    its FLOPs once these reach gigabytes (``tiny`` at 4096 clips: 4.8 GiB, ten times the FLOP estimate)."""
    import torch

    from piumr.model import PIUmrNet

    plain = cfg.model_copy(update={"tfam": cfg.tfam.model_copy(update={"enabled": False}), "pretrained": None})
    with torch.device("meta"):
        net = PIUmrNet(plain).train()
    params = {id(p) for p in net.parameters()}
    saved = [0, 0]
    for i, n in enumerate((1, 2)):
        def pack(t: torch.Tensor, i: int = i) -> torch.Tensor:
            if id(t) not in params:
                saved[i] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            net(torch.empty(n, 3, cfg.frames, cfg.crop, cfg.crop, device="meta"))
    per_clip = saved[1] - saved[0]
    return float(saved[0] + per_clip * (clips - 1))
