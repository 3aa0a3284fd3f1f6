"""Options shared by several commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="intra-op CPU threads (default: OMP_NUM_THREADS if set, else the physical cores left after the data "
         "loader workers; never more than that)")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto (default: cuda if available)")]
