"""``piumr plot``: several training runs' curves overlaid in one figure and a table of their final metrics
(``piumr.plots.compare_runs``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .errors import console, user_errors
from .options import ARTIFACTS

_out = console()


def plot(
    runs: Annotated[list[Path], typer.Argument(help="training run folders (each holds a log.jsonl)")],
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="folder for compare.png, final_metrics.csv and final_metrics.md (default "
                      "artifacts/plots/<time>)")] = None,
) -> None:
    """Overlay runs' curves (training loss, validation Top-1 and F1_mean, learning rate per epoch) and tabulate
    their final metrics. Exit status: 0 written; 2 a path that is not a run folder (no log.jsonl), a log
    without a finished epoch, or an --out that cannot be written or holds a file plot did not write."""
    from piumr.plots import COMPARE, FINAL_CSV, FINAL_MD, TABLE_HEADER, compare_runs, table_cells

    with user_errors():
        dest = out_dir or ARTIFACTS / "plots" / time.strftime("%Y%m%d-%H%M%S")
        res = compare_runs(runs, dest)
    table = Table(title=f"{len(res.rows)} run(s): last epoch, last validation (percent), best F1_mean")
    for h in TABLE_HEADER:
        table.add_column(h, justify="left" if h == "run" else "right")
    for row in res.rows:
        cells = table_cells(row)
        table.add_row(*(cells[h] for h in TABLE_HEADER))
    _out.print(table)
    _out.print(f"wrote {dest / COMPARE}, {dest / FINAL_CSV} and {dest / FINAL_MD}", highlight=False)
