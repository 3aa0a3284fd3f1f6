"""One place that turns the errors users cause into one line on stderr and a non-zero exit; the consoles."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from piumr.errors import CheckpointError, DatasetError, DeviceError, VideoError

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
    """Bad paths, data, checkpoints, presets or options -> ``error: ...`` and exit 2; a GPU out of
    memory -> a hint and exit 3; anything else propagates with its traceback (a bug)."""
    try:
        yield
    except (CheckpointError, DatasetError, DeviceError, VideoError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        err.print(f"[bold red]error:[/] {msg}", highlight=False)
        raise typer.Exit(2) from None
    except RuntimeError as e:
        if "out of memory" in str(e).lower():
            err.print("[bold red]error:[/] the GPU ran out of memory; try a smaller --batch-size")
            raise typer.Exit(3) from None
        raise
