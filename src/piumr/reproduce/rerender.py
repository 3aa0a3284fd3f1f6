"""Re-render committed results from their JSON, without their runs (no training, no checkpoint).

For each experiment folder (``<out>/<experiment>/``) this rewrites what the current writers produce from
what the folder stores:

- ``table.json`` / ``table.tex`` (and the ``aggregate`` of ``rows/*.json``): on synthetic data the paper's
  MA-52 values move to separate rows (``writers.paper_apart``); arms on a non-X3D backbone are not called
  PIUmr (``specs.arm_label``);
- ``per_participant.png``: from the rows' per-person accuracies, with the chance line and the banner;
- ``fig5.json``: the finding (``verdicts.fig5_finding``); ``fig5_similarity.png`` needs the embeddings, which
  are not stored, so it is redrawn only by ``piumr reproduce fig5``;
- ``fig6.json`` / ``fig6_landscape.png``: the surface statistics and the finding (``verdicts.fig6_finding``).

Command line::

    python -m piumr.reproduce.rerender artifacts/reproduce/synth-smoke-xsub/table2 [more folders]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from piumr.files import write_json_atomic
from piumr.reproduce import figures as F
from piumr.reproduce import specs
from piumr.reproduce.runs import SYNTH_BANNER
from piumr.reproduce.verdicts import fig5_finding, fig6_finding, landscape_stats
from piumr.reproduce.writers import ResultTable, paper_apart, table_from_json, write_table
from piumr.source import is_synth_tag, resolve_source

__all__ = ["rerender", "main"]


def _read(p: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(p.read_text())
    return out


def _rows(exp: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: _read(p) for p in sorted((exp / "rows").glob("*.json"))}


def _synthetic(table: dict[str, Any], rows: dict[str, dict[str, Any]]) -> bool:
    """Whether the runs behind a table used synthetic data: their configs say so; without rows, the banner."""
    roots = {r["config"]["data"]["root"] for row in rows.values() for r in row["seeds"] if "config" in r}
    if roots:
        return all(resolve_source(r).kind == "synth" for r in roots)
    return str(table.get("title", "")).startswith(f"[{SYNTH_BANNER}]")


def _table(exp: Path, rows: dict[str, dict[str, Any]]) -> tuple[list[Path], ResultTable, bool]:
    raw = _read(exp / "table.json")
    synthetic = _synthetic(raw, rows)
    table = table_from_json(raw, specs.LOWER_IS_BETTER)
    table = replace(table, rows=tuple(replace(r, label=specs.arm_label(r.label)) for r in table.rows))
    if synthetic:
        table = paper_apart(table)
    files = write_table(table, exp)
    by_key = {r.key: r for r in table.rows if not r.reported}
    for key, row in rows.items():
        tr = by_key.get(key)
        if tr is None:
            continue
        row["label"] = tr.label
        row["aggregate"] = {c: {"mean": cell.mean, "std": cell.std, "n": cell.n, "paper": cell.paper,
                                "diff": cell.diff} for c, cell in tr.cells.items()}
        write_json_atomic(exp / "rows" / f"{key}.json", row)
        files.append(exp / "rows" / f"{key}.json")
    return files, table, synthetic


def _participants(exp: Path, table: ResultTable, rows: dict[str, dict[str, Any]], synthetic: bool) -> list[Path]:
    per: dict[str, list[float]] = {}
    config: dict[str, Any] | None = None
    for r in table.rows:
        for res in rows.get(r.key, {}).get("seeds", []):
            if res.get("participants"):
                per.setdefault(r.label.split(" (")[0], []).extend(res["participants"]["per_participant"].values())
                config = config or res.get("config")
    if not per:
        return []
    chance = specs.chance_percent(config) if config is not None else None
    return F.participant_figure(per, exp / "per_participant", SYNTH_BANNER if synthetic else None, chance)


def _fig5(exp: Path) -> list[Path]:
    data = _read(exp / "fig5.json")
    by_seed = data.get("similarity_by_seed") or {str(data["seed"]): data["similarity"]}
    data["similarity_by_seed"], data["seeds"] = by_seed, [int(s) for s in by_seed]
    data["finding"] = fig5_finding({int(s): v for s, v in by_seed.items()})
    write_json_atomic(exp / "fig5.json", data)
    return [exp / "fig5.json"]


def _fig6(exp: Path, synthetic: bool) -> list[Path]:
    data = _read(exp / "fig6.json")
    land = data["landscape"]
    models = [k for k, v in land.items() if isinstance(v, dict)]
    for k in models:
        land[k].update(landscape_stats(land[k]["loss"]))
    by_seed = data.get("landscape_by_seed") or {str(data["seed"]): {k: landscape_stats(land[k]["loss"]) for k in models}}
    data["landscape_by_seed"], data["seeds"] = by_seed, [int(s) for s in by_seed]
    data["finding"] = fig6_finding({int(s): v for s, v in by_seed.items()})
    surfaces = {k: (np.asarray(land[k]["coords"]), np.asarray(land[k]["loss"])) for k in models}
    note = F.figure_note(SYNTH_BANNER if synthetic else None, data["finding"])
    files = F.landscape_figure(surfaces, exp / "fig6_landscape", note, seed=int(data["seed"]), seeds=len(by_seed))
    write_json_atomic(exp / "fig6.json", data)
    return [*files, exp / "fig6.json"]


def rerender(exp: Path, *, synthetic: bool | None = None) -> list[Path]:
    """Rewrite the files of experiment folder ``exp`` that its JSON determines (module docstring); returns them.

    ``synthetic``: whether the data were synthetic, for folders whose JSON does not say (figures); by
    default read from the runs' configs or the table's banner, else from the output root's name
    (``runs.data_tag``: ``synth`` or ``synth-<preset>``)."""
    if not exp.is_dir():
        raise FileNotFoundError(f"{exp}: no such experiment folder")
    rows = _rows(exp)
    files: list[Path] = []
    tag = exp.resolve().parent.name
    synth = synthetic if synthetic is not None else is_synth_tag(tag)
    if (exp / "table.json").is_file():
        tfiles, table, synth = _table(exp, rows)
        files += tfiles
        if (exp / "per_participant.png").is_file():
            files += _participants(exp, table, rows, synth)
    if (exp / "fig5.json").is_file():
        files += _fig5(exp)
    if (exp / "fig6.json").is_file():
        files += _fig6(exp, synth)
    if not files:
        raise FileNotFoundError(f"{exp}: holds no table.json, fig5.json or fig6.json")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m piumr.reproduce.rerender", description=__doc__.splitlines()[0])
    ap.add_argument("folders", type=Path, nargs="+", help="experiment folders (<out>/<experiment>)")
    args = ap.parse_args(argv)
    for exp in args.folders:
        try:
            files = rerender(exp)
        except (FileNotFoundError, KeyError, ValueError) as e:
            print(f"error: {exp}: {e.args[0] if isinstance(e, KeyError) else e}", file=sys.stderr)
            return 2
        for f in files:
            print(f)
        if (exp / "fig5.json").is_file():
            print(f"{exp / 'fig5_similarity.png'}: not redrawn (needs the runs' embeddings: piumr reproduce fig5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
