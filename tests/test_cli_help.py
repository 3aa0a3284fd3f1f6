"""The CLI's help and its first second: choices from the code's lists, whole flag names and words, errors
about paths and names before torch is imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import typer
from typer.testing import CliRunner

from piumr.backbones import BACKBONES
from piumr.config import PRESETS, ListSplit, Split
from piumr_cli.main import app

runner = CliRunner()


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(words after ``piumr``, command) for every leaf command (typer's own click)."""
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _commands(sub, (*path, name))
    else:
        yield path, cmd


COMMANDS = list(_commands(typer.main.get_command(app)))


def _help(path: tuple[str, ...]) -> str:
    res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    return res.output


def test_every_command_is_walked() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"train", "evaluate", "predict", "info", "reproduce demo", "reproduce table1", "bench train"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p))
def test_help_shows_whole_flags_and_words(path: tuple[str, ...]) -> None:
    """Every flag name appears whole, no switch carries a ``<bool>`` placeholder, and no word of any option's
    help is split across lines at 80 columns (what a pipe gets)."""
    text = _help(path)
    cmd = dict(COMMANDS)[path]
    assert "<bool>" not in text
    words = set(text.split())
    for param in cmd.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        for flag in [*param.opts, *param.secondary_opts]:
            assert flag in words, f"{flag} is not shown whole in `piumr {' '.join(path)} --help`"
        for word in (param.help or "").split():
            assert word in words, f"{word!r} of {param.opts[0]} is split in `piumr {' '.join(path)} --help`"


def _option_line(text: str, flag: str) -> str:
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(flag + " "))
    return line.split()[1]


def test_choices_come_from_the_code() -> None:
    """Presets, backbones and splits shown are exactly the config's own lists."""
    train = _help(("train",))
    assert _option_line(train, "--preset") == f"<{'|'.join(PRESETS)}>"
    assert _option_line(train, "--backbone") == f"<{'|'.join(BACKBONES)}>"
    assert _option_line(train, "--split") == f"<{'|'.join(get_args(Split))}>"
    assert _option_line(_help(("evaluate",)), "--split") == f"<{'|'.join(get_args(ListSplit))}>"
    assert _option_line(_help(("reproduce", "table2")), "--preset") == f"<{'|'.join(PRESETS)}>"
    assert "small" in PRESETS and "x3d_mini" in BACKBONES


def test_a_backbone_outside_the_list_is_refused() -> None:
    res = runner.invoke(app, ["train", "--backbone", "resnet9000", "--data", "synth"])
    assert res.exit_code == 2 and "resnet9000" in res.output


ERRORS = [
    (["train", "--data", "/nonexistent/ma52"], "--data /nonexistent/ma52: data root does not exist"),
    (["train", "--preset", "huge"], "unknown preset 'huge'"),
    (["train", "--data", "synth", "--pretrained", "/nonexistent/x3d.pyth"], "--pretrained /nonexistent/x3d.pyth"),
    (["evaluate", "--checkpoint", "/nonexistent/best.safetensors"], "no such checkpoint"),
    (["predict", "--checkpoint", "/nonexistent/best.safetensors", "a.mp4"], "no such checkpoint"),
    (["prepare", "--data", "/nonexistent/ma52", "--out", "/tmp/never"], "--data /nonexistent/ma52"),
    (["info", "--preset", "huge"], "unknown preset 'huge'"),
    (["bench", "loader", "--data", "/nonexistent/ma52"], "--data /nonexistent/ma52"),
    (["reproduce", "table2", "--data", "/nonexistent/ma52"], "--data /nonexistent/ma52"),
    (["reproduce", "table2"], "--data is required to run"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_path_and_option_errors_come_before_torch(argv: list[str], message: str, tmp_path: Path) -> None:
    """The error is one line, exit 2, and torch was never imported (what makes it come in well under 1 s;
    measured with ``time piumr train --data /nonexistent``, README)."""
    code = ("import sys\nfrom piumr_cli.main import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', code)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert message in res.stderr, res.stderr
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    assert res.stdout.split() == ["torch", "not", "imported", "2"], res.stdout + res.stderr


def test_plan_without_data_assumes_ma52(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["reproduce", "table1", "--plan"])
    assert res.exit_code == 0, res.output
    assert "MA-52 (assumed)" in res.output and "GPU h" in res.output
    assert not (tmp_path / "artifacts").exists()


def test_plan_estimates_on_the_data_given() -> None:
    """--data synth: the estimate uses the synthetic set's sizes (computed, not generated), far below MA-52's."""
    from piumr.config import with_overrides
    from piumr.data.splits import synth_params
    from piumr.data.synth import split_counts
    from piumr.reproduce.planning import MA52_TRAIN_CLIPS, MA52_VAL_CLIPS, data_sizes, estimate_gpu_hours

    synth = with_overrides(PRESETS["paper"], {"data.root": "synth"})
    ma52 = with_overrides(PRESETS["paper"], {"data.root": "/nonexistent/MA-52"})
    s, m = data_sizes(synth.data), data_sizes(ma52.data)
    counts = split_counts(**synth_params(synth.data))
    assert (s.train, s.val) == (counts["train"], counts["val"]) and s.what == "synthetic data"
    assert (m.train, m.val) == (MA52_TRAIN_CLIPS, MA52_VAL_CLIPS)
    assert estimate_gpu_hours(synth, s) < estimate_gpu_hours(ma52, m) / 5
    assert estimate_gpu_hours(ma52) == estimate_gpu_hours(ma52, m)  # MA-52 is the default


def test_split_counts_match_a_generated_dataset(tmp_path: Path) -> None:
    from piumr.data.synth import generate, split_counts

    params = {"persons": 5, "clips_per_person": 6, "classes_per_body": 1, "frames": 4, "size": 32, "seed": 3}
    info = generate(tmp_path / "d", workers=1, progress=False, **params)
    assert split_counts(**params) == info.counts


def test_every_command_that_computes_takes_threads() -> None:
    without = {" ".join(p) for p, cmd in COMMANDS
               if not any("--threads" in getattr(q, "opts", []) for q in cmd.params)}
    assert without == {"version", "plot"}  # plot draws from log files: no model, no intra-op threads


def test_cpu_time_estimate_is_anchored_and_scales() -> None:
    """The anchor's FLOPs are what ``forward_flops`` counts for X3D-M; the estimate scales with clips, threads
    and backward, and the paper preset's info pass (2 clips) is over the 2 s that triggers the note."""
    from piumr.bench import estimate_cpu_seconds, forward_flops

    paper, tiny = PRESETS["paper"].model, PRESETS["tiny"].model
    assert forward_flops(paper) == pytest.approx(9.46e9, rel=1e-3)
    one = estimate_cpu_seconds(paper, 2, train=True, threads=1)
    assert one == pytest.approx(3.25 * 2 / 4 * 2, rel=1e-3)  # core-seconds per clip of the anchor x 2 clips
    assert estimate_cpu_seconds(paper, 4, train=True, threads=2) == pytest.approx(one)
    assert estimate_cpu_seconds(paper, 2, train=False, threads=1) == pytest.approx(one / 3)
    assert estimate_cpu_seconds(tiny, 2, train=True, threads=1) < 0.01


def test_long_cpu_runs_say_how_long_first(monkeypatch: pytest.MonkeyPatch) -> None:
    import piumr.bench

    monkeypatch.setattr(piumr.bench, "estimate_cpu_seconds", lambda *a, **k: 120.0)
    res = runner.invoke(app, ["info", "--preset", "tiny"])
    assert res.exit_code == 0, res.output
    note = res.output.index("note: one forward/backward pass of 2 clip(s) on CPU")
    assert "about 120 s on an idle machine (estimate)" in res.output
    assert note < res.output.index("forward+backward")  # said before the pass ran
