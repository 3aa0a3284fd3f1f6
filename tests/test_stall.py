"""The stall guard (``piumr.stall``): a training whose cross-entropy stays at chance says so once, 200 steps
after warm-up (or at its last step); ``--on-stall stop`` ends it with exit 4; a learning run is not flagged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from piumr.config import PRESETS, with_overrides
from piumr.errors import TrainingStalled
from piumr import stall
from piumr.stall import StallGuard, stall_after
from piumr.train import train

# lr 1e-12: the weights do not move, so the cross-entropy stays where the random head puts it (>= ln K on average)
STUCK = {"optim.epochs": 1, "max_steps_per_epoch": 3, "optim.lr": 1e-12, "data.num_workers": 0}


@pytest.fixture(autouse=True)
def _short_runs_are_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' runs are a few steps long: judge them (a user's run of fewer than 50 steps is not judged)."""
    monkeypatch.setattr(stall, "STALL_MIN_STEPS", 1)


def test_check_step(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stall_after(3) == 3 and stall_after(10_000) == 200 and stall_after(0) is None
    assert stall_after(10_000, warmup_steps=50) == 250 and stall_after(120, warmup_steps=50) == 120
    monkeypatch.setattr(stall, "STALL_MIN_STEPS", 50)
    assert stall_after(49) is None and stall_after(50) == 50
    assert StallGuard(21, None, "short", lambda line: None).update(40, 3.1) is False


def test_guard_fires_once_at_its_step_and_only_at_chance() -> None:
    said: list[str] = []
    g = StallGuard(21, 5, "run-x", said.append)
    flat = [math.log(21)] * 10
    assert [g.update(s, v) for s, v in enumerate(flat, start=1)] == [False] * 4 + [True] + [False] * 5
    assert g.stalled and len(said) == 1 and "run-x" in said[0] and "3.045" in said[0] and "0.97 ln K" in said[0]
    learning = StallGuard(21, 5, "run-y", said.append)
    assert not any(learning.update(s, 3.0 - 0.4 * s) for s in range(1, 11))
    assert learning.checked and not learning.stalled and len(said) == 1
    with pytest.raises(ValueError, match="--on-stall must be warn or stop"):
        StallGuard(21, 5, "r", said.append, on_stall="retry")  # type: ignore[arg-type]


def test_stop_raises_a_run_error() -> None:
    g = StallGuard(7, 1, "run-z", lambda line: None, on_stall="stop")
    with pytest.raises(TrainingStalled, match="run-z: training stalled at chance.*--on-stall stop"):
        g.update(1, 2.5)


def test_a_frozen_training_warns_and_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = train(with_overrides(PRESETS["tiny"], STUCK), tmp_path / "run", progress=False)
    err = capsys.readouterr().err
    assert "training stalled at chance" in err and "after 3 steps" in err
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    stalls = [r for r in rows if r["type"] == "stall"]
    assert len(stalls) == 1 and stalls[0]["step"] == 3 and stalls[0]["ce"] >= stalls[0]["threshold"]
    assert res.stalled is True
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stalled"] is True


def test_on_stall_stop_exits_4(tmp_path: Path) -> None:
    from piumr_cli.main import app

    r = CliRunner().invoke(app, ["train", "--preset", "tiny", "--data", "synth", "--out", str(tmp_path / "run"),
                                 "--epochs", "1", "--max-steps-per-epoch", "3", "--lr", "1e-12", "--workers", "0",
                                 "--device", "cpu", "--quiet", "--on-stall", "stop"])
    assert r.exit_code == 4, r.output
    assert "training stalled at chance" in r.output and "--on-stall stop" in r.output
    bad = CliRunner().invoke(app, ["train", "--preset", "tiny", "--on-stall", "maybe"])
    assert bad.exit_code == 2 and "--on-stall must be warn or stop, got 'maybe'" in bad.output


def test_the_suite_trainer_records_a_stall(capsys: pytest.CaptureFixture[str]) -> None:
    from piumr.data.synth.shift import ShiftSizes, build_train
    from piumr.shift.train import arm_config, suite_config, train_and_score

    toy = ShiftSizes(train_persons=3, test_persons_per_fold=2, folds=2, clips_per_person=21, frames=4, size=32)

    cfg = with_overrides(arm_config(suite_config(toy, epochs=1, batch=8), "baseline", 0), {"optim.lr": 1e-12})
    res = train_and_score(cfg, build_train(toy), name="toy baseline seed 0")
    assert res["stalled"] is True
    assert "toy baseline seed 0: training stalled at chance" in capsys.readouterr().err
    with pytest.raises(TrainingStalled):
        train_and_score(cfg, build_train(toy), on_stall="stop")


def test_the_suite_report_counts_stalls(tmp_path: Path) -> None:
    from piumr.shift.report import stalled_runs

    for name, stalled in (("baseline", False), ("aa", True), ("control-size", None)):
        (tmp_path / "runs" / name).mkdir(parents=True)
        row = {"seen": {"action": [1]}} | ({} if stalled is None else {"stalled": stalled})
        (tmp_path / "runs" / name / "seed3.json").write_text(json.dumps(row))
    assert stalled_runs(tmp_path) == ["aa/seed3"]
