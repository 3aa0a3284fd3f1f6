"""One place that turns the errors users cause into one line on stderr and a non-zero exit; the consoles;
the note that a long CPU run prints before it starts."""

from __future__ import annotations

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
    """Bad paths, data, checkpoints, presets, options or run folders -> ``error: ...`` and exit 2; a GPU out
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
        err.print(f"[bold red]error:[/] {escape(msg)}", highlight=False)  # a path or hint may hold [...]
        raise typer.Exit(2) from None
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            err.print("[bold red]error:[/] the GPU ran out of memory; try a smaller --batch-size")
            raise typer.Exit(3) from None
        raise


def warn_cpu_time(what: str, cfg: ModelConfig, clips: int, train: bool, threads: int, device: str) -> None:
    """On CPU, say how long ``clips`` clips of ``cfg`` will take before starting (when over ~2 s)."""
    if device != "cpu":
        return
    from piumr.bench import estimate_cpu_seconds

    secs = estimate_cpu_seconds(cfg, clips, train=train, threads=threads)
    if secs < 2:
        return
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = (f"; this machine is busy (load {load:.1f} on {cores} CPUs): expect ~{secs * load / cores:.0f} s"
            if load > cores else "")
    err.print(f"note: {what} on CPU ({cfg.backbone}, {cfg.frames}x{cfg.crop}, {threads} "
              f"thread(s)): about {secs:.0f} s on an idle machine (estimate){busy}", highlight=False)
