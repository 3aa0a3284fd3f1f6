"""How ``piumr predict`` shows one result: a JSON line (``--json``), a table, or an error line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from .errors import console, err

if TYPE_CHECKING:
    from piumr.predict import ClipFailure, ClipPrediction, TrainedOn

stdout = console()
#: the ``TrainedOn`` whose caption was shown last (held, so its identity is not reused): one caption per run
_captioned: list[TrainedOn] = []


def show_prediction(res: ClipPrediction | ClipFailure, as_json: bool, seen: TrainedOn) -> None:
    """One JSON object per line on stdout (``--json``), else a table; the first table of a run (of one
    ``seen``) has a caption naming the classes the checkpoint was trained on, the others not; a failure as an
    ``error`` line (on stderr without ``--json``)."""
    from piumr.predict import ClipFailure

    if as_json:
        typer.echo(json.dumps(res.to_json(), allow_nan=False))
        return
    if isinstance(res, ClipFailure):
        err.print(f"[bold red]error:[/] {res.reason}", highlight=False)
        return
    words = seen.names  # MA-52: action / body; a manifest: label / group
    level = "group" if words.group_word == "group" else f"{words.group_word} group"
    first = not (_captioned and _captioned[0] is seen)
    _captioned[:] = [seen]
    t = Table(title=f"{res.path.name}: {level} {res.body_name} ({res.body_prob:.2f})",
              caption=f"checkpoint {seen.describe()}" if first else None)
    for c in ("rank", "label", words.label_word if words.label_word != "label" else "name", "prob"):
        t.add_column(c)
    for r, (i, name, p) in enumerate(res.top, 1):
        t.add_row(str(r), str(i), name, f"{p:.3f}")
    stdout.print(t)
