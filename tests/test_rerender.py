"""piumr.reproduce.rerender: committed tables and figures rewritten from their JSON, without runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from piumr.config import get_preset
from piumr.reproduce import specs
from piumr.reproduce.rerender import main, rerender
from piumr.reproduce.writers import Cell, ResultTable, TableRow, table_to_json

ROOT = Path(__file__).resolve().parents[1]


def _experiment(tmp: Path, root: str, label: str = "PIUmr (X3D + TFAM + GIRL)") -> Path:
    """An experiment folder as ``piumr reproduce`` wrote it before paper_apart: cells carry the paper's value."""
    exp = tmp / "out" / "table2"
    cfg: dict[str, Any] = get_preset("smoke").model_dump()
    cfg["data"]["root"] = root
    rows = (TableRow("x3d", "X3D baseline (TFAM off, GIRL off)", {"f1_mean": Cell((50.0, 52.0), 67.11)}, seeds=(0, 1)),
            TableRow("piumr", label, {"f1_mean": Cell((51.0, 55.0), 68.11)}, seeds=(0, 1)))
    table = ResultTable("table2", "Ablation", ("f1_mean",), {"f1_mean": "F1_mean"}, rows, source="Table 2")
    exp.mkdir(parents=True)
    (exp / "table.json").write_text(json.dumps(table_to_json(table)))
    (exp / "rows").mkdir()
    for r in rows:
        seeds = [{"seed": s, "config": cfg, "metrics": {"f1_mean": v},
                  "participants": {"per_participant": {"0001": v, "0002": v - 10}}}
                 for s, v in zip(r.seeds, r.cells["f1_mean"].values, strict=True)]
        (exp / "rows" / f"{r.key}.json").write_text(json.dumps({"row": r.key, "label": r.label, "seeds": seeds}))
    (exp / "per_participant.png").write_bytes(b"")
    return exp


def test_synthetic_tables_lose_the_difference_to_the_paper(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "synth")
    files = rerender(exp)
    tex = (exp / "table.tex").read_text()
    assert "ours - paper" not in tex and "scriptsize" not in tex
    assert "piumr (paper, MA-52)" in {r["key"] for r in json.loads((exp / "table.json").read_text())["rows"]}
    assert "paper, MA-52: PIUmr (X3D + TFAM + GIRL)" in tex and "on MA-52, not this data" in tex
    row = json.loads((exp / "rows" / "piumr.json").read_text())
    assert row["aggregate"]["f1_mean"]["diff"] is None and row["aggregate"]["f1_mean"]["paper"] is None
    assert exp / "per_participant.png" in files and (exp / "per_participant.png").stat().st_size > 1000
    assert rerender(exp) == files and (exp / "table.tex").read_text() == tex  # idempotent


def test_real_data_keeps_the_paper_and_the_difference(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, str(tmp_path / "MA-52"))
    rerender(exp)
    tex = (exp / "table.tex").read_text()
    assert "(ours - paper)" in tex and "68.11 ($-$15.11)" in tex and "MA-52)" not in tex


def test_no_arm_on_another_backbone_is_called_piumr(tmp_path: Path) -> None:
    exp = _experiment(tmp_path, "synth", label="PIUmr (swin3d_tiny + TFAM + GIRL)")
    rerender(exp)
    labels = [r["label"] for r in json.loads((exp / "table.json").read_text())["rows"]]
    assert "swin3d_tiny + TFAM + GIRL" in labels and not any(lab.startswith("PIUmr (swin") for lab in labels)
    assert json.loads((exp / "rows" / "piumr.json").read_text())["label"] == "swin3d_tiny + TFAM + GIRL"
    assert specs.arm_label("PIUmr (X3D + TFAM + GIRL)") == "PIUmr (X3D + TFAM + GIRL)"


def test_fig6_is_redrawn_with_its_finding(tmp_path: Path) -> None:
    exp = tmp_path / "synth-smoke" / "fig6"
    exp.mkdir(parents=True)
    coords = [-1.0, 0.0, 1.0]
    land = {"X3D baseline": {"coords": coords, "loss": (np.arange(9.0) + 1).reshape(3, 3).tolist()},
            "PIUmr": {"coords": coords, "loss": (np.arange(9.0) + 2).reshape(3, 3).tolist()}, "clips": 4}
    (exp / "fig6.json").write_text(json.dumps({"seed": 0, "landscape": land}))
    rerender(exp)
    data = json.loads((exp / "fig6.json").read_text())
    assert data["seeds"] == [0] and "no verdict (1 seed" in data["finding"]
    assert data["landscape"]["PIUmr"]["median_rise"] == pytest.approx(0.0)
    assert (exp / "fig6_landscape.png").stat().st_size > 1000


def test_bad_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such experiment folder" in err and "Traceback" not in err


def test_committed_synthetic_tables_print_no_difference_to_the_paper() -> None:
    """The committed LaTeX tables on synthetic data compare nothing with the paper's MA-52 numbers."""
    texs = sorted((ROOT / "artifacts").glob("**/table.tex"))
    assert texs
    for p in texs:
        text = p.read_text()
        if "Synthetic MA-52-format data" in text:
            assert "ours - paper" not in text and "scriptsize" not in text, p
