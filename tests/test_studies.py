"""The study scripts under studies/ (their results live in artifacts/): each answers --help, the ones that only
read committed results rewrite them byte for byte, and the queue skips arms whose result is there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
MECH = REPO / "artifacts" / "mechanisms"
SCRIPTS = sorted(STUDIES.rglob("*.py"))


def _run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env=env)


def test_artifacts_hold_no_script() -> None:
    assert not sorted(p.relative_to(REPO) for p in (REPO / "artifacts").rglob("*.py"))
    assert {p.relative_to(STUDIES).as_posix() for p in SCRIPTS} >= {
        "mechanisms/arms.py", "mechanisms/girl_probe.py", "mechanisms/tfam_probe.py", "mechanisms/paired.py",
        "mechanisms/summarise.py", "mechanisms/tables.py", "shift_suite/style_pilot.py",
        "shift_suite/appearance_variants.py", "shift_suite/recipe_variants.py"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(STUDIES).as_posix())
def test_every_study_answers_help(script: Path) -> None:
    res = _run(script, "--help")
    assert res.returncode == 0 and res.stdout.startswith("usage: "), res.stderr


@pytest.fixture
def mech_copy(tmp_path: Path) -> Path:
    """The committed mechanism results (batch folders, probe JSON) in a folder of their own."""
    for d in ("batch1", "batch2", "batch3"):
        shutil.copytree(MECH / d, tmp_path / d)
    shutil.copy(MECH / "tfam_probe.json", tmp_path)
    return tmp_path


def test_summarise_and_paired_rewrite_the_committed_json(mech_copy: Path) -> None:
    for script, made in (("summarise.py", "summary.json"), ("paired.py", "paired.json")):
        res = _run(STUDIES / "mechanisms" / script, "--results", mech_copy)
        assert res.returncode == 0, res.stderr
        assert (mech_copy / made).read_bytes() == (MECH / made).read_bytes(), made


def test_tables_print_a_row_per_arm_and_run(mech_copy: Path) -> None:
    shutil.copy(MECH / "summary.json", mech_copy)
    res = _run(STUDIES / "mechanisms" / "tables.py", "--results", mech_copy)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ") and not line.startswith("| arm")
            and not line.startswith("| run")]
    runs = json.loads((MECH / "tfam_probe.json").read_text())
    assert len(rows) == len(json.loads((MECH / "summary.json").read_text())) + len(runs)
    assert "| CE only (GIRL off) | before (pairs in groups, batch-mean λ) | cross-subject |" in res.stdout


def test_queue_runs_only_the_arms_without_a_result(tmp_path: Path) -> None:
    """queue.sh hands each list line to arms.py unless artifacts/mechanisms/BATCH holds its result."""
    calls, fake = tmp_path / "calls.txt", tmp_path / "py"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    listed = tmp_path / "list.txt"
    listed.write_text('ce cross-subject 0 {"girl.enabled":false}\nnew official 7 {"girl.groups":4}\n\n')
    assert (MECH / "batch1" / "ce_cross-subject_s0.json").is_file()
    res = subprocess.run(["bash", str(STUDIES / "mechanisms" / "queue.sh"), str(tmp_path), "batch1", str(listed)],
                         capture_output=True, text=True, timeout=60, env={**os.environ, "PY": str(fake)})
    assert res.returncode == 0, res.stderr
    (line,) = calls.read_text().splitlines()
    assert line == f'{STUDIES / "mechanisms" / "arms.py"} batch1 new official 7 {{"girl.groups":4}}'


@pytest.mark.parametrize(("script", "args", "says"), [
    ("style_pilot.py", ["ctrl:nope", "0"], "unknown ctrl:nope"),
    ("recipe_variants.py", ["lr9", "0"], "unknown lr9: choose from lr1e-3, ep16, lr5e-4, base"),
    ("appearance_variants.py", ["nocolour", "0"], "invalid choice: 'nocolour'"),
])
def test_shift_pilots_refuse_unknown_variants(script: str, args: list[str], says: str) -> None:
    res = _run(STUDIES / "shift_suite" / script, *args)
    assert res.returncode == 2 and says in res.stderr and "Traceback" not in res.stderr, res.stderr
