"""``piumr.source.resolve_source``: the one place that decides which kind of data a ``--data`` value names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from piumr.source import DataSource, is_synth_tag, resolve_source

REPO = Path(__file__).resolve().parents[1]


def test_synth() -> None:
    src = resolve_source("synth")
    assert (src.kind, src.synthetic, src.config_root, src.tag) == ("synth", True, "synth", "synth")


def test_manifest_file_and_missing_manifest(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,label\n")
    assert resolve_source(tmp_path / "m.csv").kind == "manifest"
    assert resolve_source(tmp_path / "gone.CSV").kind == "manifest"  # reading it names the file
    (tmp_path / "dir.csv").mkdir()
    assert resolve_source(tmp_path / "dir.csv").kind == "ma52"  # a folder is a folder, whatever its name


def test_folders(tmp_path: Path) -> None:
    gen, cache, ma52 = tmp_path / "gen", tmp_path / "cache", tmp_path / "ma52"
    for d in (gen, cache, ma52):
        d.mkdir()
    (gen / "synth_meta.json").write_text("{}")
    (cache / "piumr_manifest.json").write_text("{}")
    kinds = {d.name: resolve_source(d) for d in (gen, cache, ma52)}
    assert {k: s.kind for k, s in kinds.items()} == {"gen": "generated", "cache": "cache", "ma52": "ma52"}
    assert kinds["gen"].synthetic and not kinds["cache"].synthetic
    assert kinds["ma52"].tag == "ma52" and kinds["ma52"].config_root == str(ma52)


def test_missing(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    assert resolve_source(tmp_path / "nothing").kind == "missing"
    assert resolve_source(tmp_path / "notes.txt").kind == "missing"


def test_home_is_expanded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "data").mkdir()
    src = resolve_source("~/data")
    assert src == DataSource("~/data", "ma52", tmp_path / "data") and src.config_root == str(tmp_path / "data")


def test_synth_tags() -> None:
    assert is_synth_tag("synth") and is_synth_tag("synth-tiny")
    assert not is_synth_tag("MA-52") and not is_synth_tag("synthetic")


def test_no_other_module_decides_the_kind() -> None:
    """The data kind is decided only in ``source.py``: no ``== SYNTH`` / ``!= SYNTH`` / manifest-suffix test
    elsewhere in src/ or cli/."""
    pattern = re.compile(r"[!=]= SYNTH\b|is_manifest|(?<!kind )[!=]= \"synth\"|suffix(\.lower\(\))? [!=]= \"\.csv\"")
    hits = [f"{p.relative_to(REPO)}:{i}" for root in (REPO / "src", REPO / "cli") for p in sorted(root.rglob("*.py"))
            if p.name != "source.py" for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, f"data kind decided outside piumr/source.py: {hits}"


def test_the_command_line_refuses_a_file_that_is_no_manifest(tmp_path: Path) -> None:
    from piumr_cli.options import check_data

    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "m.csv").write_text("path,label\n")
    with pytest.raises(FileNotFoundError, match=r"^--data .*notes\.txt: not a folder nor a manifest \.csv"):
        check_data(str(tmp_path / "notes.txt"))
    for fine in ("synth", str(tmp_path), str(tmp_path / "m.csv")):
        check_data(fine)
