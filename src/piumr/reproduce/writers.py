"""Result tables as JSON, LaTeX (booktabs) and terminal text.

Conventions, as in the paper: **bold** = best, underline = second best, per
column. Unlike the paper, the marks are computed over the *measured* rows only
(the rows this project trained); rows copied from the paper are *reported*,
set in grey italics and never marked, so a measured number is never ranked
against a number nobody here reproduced. Ranks use the displayed (2-decimal)
means: equal displayed values share a mark.

Each measured cell shows our value (``mean ± std`` when several seeds: sample
standard deviation, ``ddof=1``; a single seed shows no ``±``) followed by the
paper's value and our difference ``(ours - paper)`` in small grey type, but only where the data are the
paper's: on other data (synthetic) ``paper_apart`` moves the paper's values into separate reported rows
labelled with the paper's dataset, and no difference is printed. ``table_from_json`` reads a written table
back (re-rendering committed results without their runs).

LaTeX needs ``\\usepackage{booktabs,xcolor,amssymb,graphicx}``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from rich.markup import escape
from rich.table import Table as RichTable

from piumr.files import write_json_atomic, write_text_atomic

__all__ = ["Cell", "TableRow", "ResultTable", "Mark", "compute_marks", "table_to_json", "table_to_latex",
           "table_to_rich", "write_table", "fmt", "paper_apart", "table_from_json", "has_diffs"]

Mark = Literal["best", "second"]
_SWITCH_TEX = {"on": r"\checkmark", "off": r"$\times$"}


def fmt(x: float, digits: int = 2) -> str:
    """Fixed-point with ``digits`` decimals (``-0.00`` printed as ``0.00``)."""
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


@dataclass(frozen=True)
class Cell:
    """One table cell: a value per seed (``values``) and, optionally, the paper's value."""

    values: tuple[float, ...]
    paper: float | None = None

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a cell needs at least one value")

    @property
    def n(self) -> int:
        """Number of seeds."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (``ddof=1``); ``None`` for one seed."""
        if len(self.values) < 2:
            return None
        m = self.mean
        return math.sqrt(math.fsum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    @property
    def diff(self) -> float | None:
        """``mean - paper``, or ``None`` when the paper gives no value."""
        return None if self.paper is None else self.mean - self.paper

    def text(self) -> str:
        """``12.34`` or ``12.34 ± 0.56`` (plain text)."""
        s = self.std
        return fmt(self.mean) if s is None else f"{fmt(self.mean)} ± {fmt(s)}"


@dataclass(frozen=True)
class TableRow:
    """A row: measured (``reported=False``, one value per seed) or copied from the paper (``reported=True``)."""

    key: str
    label: str
    cells: dict[str, Cell]
    reported: bool = False
    citation: str = ""
    switches: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class ResultTable:
    """A table: ``columns`` are metric keys, ``names`` their display names."""

    name: str
    title: str
    columns: tuple[str, ...]
    names: dict[str, str]
    rows: tuple[TableRow, ...]
    switch_columns: tuple[str, ...] = ()
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    lower_is_better: frozenset[str] = frozenset()
    #: findings a reader must not miss (e.g. a collapsed run): JSON "warnings", LaTeX lines under the tabular,
    #: console lines under the table; only written when there are any
    warnings: tuple[str, ...] = field(default_factory=tuple)


def has_diffs(table: ResultTable) -> bool:
    """Whether a measured cell of ``table`` carries the paper's value (so prints ``ours - paper``)."""
    return any(c.paper is not None for r in table.rows if not r.reported for c in r.cells.values())


def paper_apart(table: ResultTable, dataset: str = "MA-52") -> ResultTable:
    """``table`` for data that are not the paper's: no measured cell keeps the paper's value (no ``ours -
    paper`` anywhere); each measured row that had paper values gets a separate reported row after the measured
    ones (key ``"<key> (paper, <dataset>)"``, label ``"paper, <dataset>: <label>"``, same switches), and every
    reported row's citation names ``dataset``."""
    reported, measured, apart = [], [], []
    for r in table.rows:
        if r.reported and r.key.endswith(f" (paper, {dataset})"):  # made by an earlier call: kept last
            apart.append(r)
            continue
        if r.reported:
            reported.append(r if dataset in r.citation else replace(r, citation=f"{r.citation}; on {dataset}"))
            continue
        measured.append(replace(r, cells={c: Cell(cell.values) for c, cell in r.cells.items()}))
        paper = {c: Cell((cell.paper,)) for c, cell in r.cells.items() if cell.paper is not None}
        if paper:
            apart.append(TableRow(f"{r.key} (paper, {dataset})", f"paper, {dataset}: {r.label}", paper, reported=True,
                                  citation=f"paper {table.source}, on {dataset}, not this data", switches=r.switches))
    return replace(table, rows=(*reported, *measured, *apart))


def table_from_json(d: dict[str, Any], lower_is_better: frozenset[str] = frozenset()) -> ResultTable:
    """The ``ResultTable`` a ``table_to_json`` dict was written from (marks are recomputed, not read)."""
    switch_columns = tuple(d["switch_columns"])
    rows = tuple(
        TableRow(r["key"], r["label"], {c: Cell(tuple(v["values"]), v["paper"]) for c, v in r["cells"].items()},
                 r["reported"], r["citation"], tuple(r["switches"][s] for s in switch_columns) if r["switches"] else (),
                 tuple(r["seeds"]))
        for r in d["rows"])
    return ResultTable(d["name"], d["title"], tuple(c["key"] for c in d["columns"]),
                       {c["key"]: c["name"] for c in d["columns"]}, rows, switch_columns, d["source"],
                       tuple(d["notes"]), lower_is_better, tuple(d.get("warnings", ())))


def compute_marks(table: ResultTable) -> dict[tuple[str, str], Mark]:
    """``{(row key, column): "best" | "second"}`` over measured rows only (see module docstring)."""
    marks: dict[tuple[str, str], Mark] = {}
    for col in table.columns:
        shown = [(r.key, round(r.cells[col].mean, 2)) for r in table.rows if not r.reported and col in r.cells]
        distinct = sorted({v for _, v in shown}, reverse=col not in table.lower_is_better)
        for key, v in shown:
            if v == distinct[0]:
                marks[(key, col)] = "best"
            elif len(distinct) > 1 and v == distinct[1]:
                marks[(key, col)] = "second"
    return marks


def _num(x: float | None) -> float | None:
    return None if x is None else float(x)


def table_to_json(table: ResultTable) -> dict[str, Any]:
    """A JSON-serialisable dict of the table, marks included."""
    marks = compute_marks(table)
    rows = []
    for r in table.rows:
        cells = {}
        for col, c in r.cells.items():
            cells[col] = {"mean": c.mean, "std": _num(c.std), "n": c.n, "values": list(c.values),
                          "paper": _num(c.paper), "diff": _num(c.diff), "mark": marks.get((r.key, col))}
        rows.append({"key": r.key, "label": r.label, "reported": r.reported, "citation": r.citation,
                     "switches": dict(zip(table.switch_columns, r.switches, strict=True)) if r.switches else {},
                     "seeds": list(r.seeds), "cells": cells})
    return {
        "name": table.name, "title": table.title, "source": table.source,
        "columns": [{"key": k, "name": table.names.get(k, k)} for k in table.columns],
        "switch_columns": list(table.switch_columns),
        "rows": rows,
        "marking": "bold = best, underline = second best, over measured rows only (reported rows are never marked)",
        "cell_format": "mean over seeds, sample std (ddof=1) when n > 1; paper = the paper's value; diff = mean - paper",
        "notes": list(table.notes),
        **({"warnings": list(table.warnings)} if table.warnings else {}),
    }


def _tex_escape(s: str) -> str:
    out = s
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("±", r"$\pm$")):
        out = out.replace(a, b)
    return out


def _tex_name(name: str) -> str:
    """Display name -> LaTeX (``F1_macro`` -> ``F1$_{macro}$``)."""
    parts = name.split("_", 1)
    if len(parts) == 2 and parts[1].isalpha():
        return f"{_tex_escape(parts[0])}$_{{{parts[1]}}}$"
    return _tex_escape(name)


def _signed(x: float) -> str:
    s = fmt(x)
    return f"$-${s[1:]}" if s.startswith("-") else f"$+${s}"


def _tex_cell(cell: Cell | None, mark: Mark | None, reported: bool) -> str:
    if cell is None:
        return "--"
    s = cell.std
    body = fmt(cell.mean) if s is None else f"{fmt(cell.mean)}$\\pm${fmt(s)}"
    if reported:
        return f"\\textcolor{{gray}}{{\\textit{{{body}}}}}"
    if mark == "best":
        body = f"\\textbf{{{body}}}"
    elif mark == "second":
        body = f"\\underline{{{body}}}"
    d = cell.diff
    if cell.paper is not None and d is not None:
        body += f" {{\\scriptsize\\textcolor{{gray}}{{{fmt(cell.paper)} ({_signed(d)})}}}}"
    return body


def table_to_latex(table: ResultTable) -> str:
    """booktabs LaTeX of ``table`` (a complete ``table`` environment)."""
    marks = compute_marks(table)
    has_source = any(r.reported for r in table.rows) or not table.switch_columns
    head = ["Setting" if table.switch_columns else "Method"]
    if has_source:
        head.append("Source")
    head += list(table.switch_columns) + [_tex_name(table.names.get(c, c)) for c in table.columns]
    align = "l" + ("l" if has_source else "") + "c" * len(table.switch_columns) + "r" * len(table.columns)
    lines = [
        f"% generated by `piumr reproduce {table.name}`; do not edit by hand",
        "% needs \\usepackage{booktabs,xcolor,amssymb,graphicx}",
        "% cell: ours (mean $\\pm$ sample std over seeds when n > 1)"
        + (", then in small grey: paper (ours - paper)" if has_diffs(table) else ""),
        "% bold = best, underline = second best, over measured rows only; grey italics = reported by the paper",
        "\\begin{table}[t]",
        "\\centering",
        f"\\caption{{{_tex_escape(table.title)}}}",
        f"\\label{{tab:reproduce-{table.name}}}",
        "\\resizebox{\\linewidth}{!}{%",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(head) + " \\\\",
        "\\midrule",
    ]
    prev_reported: bool | None = None
    for r in table.rows:
        if prev_reported is not None and prev_reported != r.reported:
            lines.append("\\midrule")
        prev_reported = r.reported
        first = _tex_escape(r.key if table.switch_columns else r.label)
        if r.reported:
            first = f"\\textcolor{{gray}}{{\\textit{{{first}}}}}"
        cells = [first]
        if has_source:
            if r.reported:
                cells.append(f"\\textcolor{{gray}}{{\\textit{{reported: {_tex_escape(r.citation)}}}}}")
            else:
                n = len(r.seeds)
                cells.append(f"measured ({n} seed{'s' if n != 1 else ''})")
        cells += [_SWITCH_TEX.get(s, _tex_escape(s)) for s in r.switches]
        cells += [_tex_cell(r.cells.get(c), marks.get((r.key, c)), r.reported) for c in table.columns]
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}"]
    lines += [f"\\par\\footnotesize\\textbf{{Warning:}} {_tex_escape(w)}" for w in table.warnings]
    lines += ["\\end{table}", ""]
    return "\n".join(lines)


def table_to_rich(table: ResultTable) -> RichTable:
    """A rich table for the terminal: bold = best, underline = second, dim italics = reported;
    under each measured value, dim: the paper's value (ours - paper)."""
    marks = compute_marks(table)
    has_reported = any(r.reported for r in table.rows)
    t = RichTable(title=escape(table.title), caption="bold best, underline second (measured rows only)"
                  + ("; dim second line: paper (ours - paper)" if has_diffs(table) else "")
                  + ("; dim italics: reported by the paper" if has_reported else "")
                  + "".join(f"\n[bold red]warning:[/] {escape(w)}" for w in table.warnings))
    t.add_column("row")
    if has_reported:
        t.add_column("source")
    for s in table.switch_columns:
        t.add_column(escape(s), justify="center")
    for c in table.columns:
        t.add_column(escape(table.names.get(c, c)).replace("_", " "), justify="right")
    for r in table.rows:
        cells = []
        for c in table.columns:
            cell = r.cells.get(c)
            if cell is None:
                cells.append("-")
                continue
            mark = marks.get((r.key, c))
            style = "dim italic" if r.reported else {"best": "bold", "second": "underline"}.get(mark or "", "")
            txt = f"[{style}]{escape(cell.text())}[/]" if style else escape(cell.text())
            d = cell.diff
            if not r.reported and cell.paper is not None and d is not None:
                txt += f"\n[dim]{fmt(cell.paper)} ({'+' if d >= 0 else ''}{fmt(d)})[/]"
            cells.append(txt)
        label = escape(r.key if table.switch_columns else r.label.split(" (")[0])  # full labels: JSON / LaTeX
        first = [f"[dim italic]{label}[/]" if r.reported else label]
        if has_reported:
            first.append("[dim italic]reported[/]" if r.reported else f"measured x{len(r.seeds)}")
        t.add_row(*first, *[escape(s) for s in r.switches], *cells)
    return t


def write_table(table: ResultTable, out_dir: Path, stem: str = "table") -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.tex`` into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pj, pt = out_dir / f"{stem}.json", out_dir / f"{stem}.tex"
    write_json_atomic(pj, table_to_json(table))
    write_text_atomic(pt, table_to_latex(table))
    return [pj, pt]


def cells_from_values(per_seed: Sequence[dict[str, float]], columns: Sequence[str],
                      paper: dict[str, float] | None) -> dict[str, Cell]:
    """Cells for ``columns`` from one metrics dict per seed (columns missing from a seed are left out)."""
    out: dict[str, Cell] = {}
    for col in columns:
        vals = tuple(float(m[col]) for m in per_seed if col in m)
        if vals:
            out[col] = Cell(vals, None if paper is None else paper.get(col))
    return out
