"""The person-gap demo (``piumr reproduce person-gap``, README command 1): its analysis on run files of known
accuracy, an end-to-end run of the suite's trainer at toy size, its command's plan and errors, and that its third
arm is still the suite's best domain-generalisation baseline on its factor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from piumr.data.synth.shift import ShiftSizes
from piumr.shift.arms import ARM_SPECS
from piumr.shift.gap import GAP_ARMS, GAP_FACTOR, analyse_gap, gap_lines, gap_settings, write_gap_report
from piumr.shift.suite import run_suite

REPO = Path(__file__).resolve().parents[1]
TOY = ShiftSizes(train_persons=3, test_persons_per_fold=2, folds=2, clips_per_person=21, frames=4, size=32)


def _write(out: Path, arm: str, seed: int, seen: list[int], unseen: list[int], persons: list[int]) -> None:
    folder = out / "runs" / arm
    folder.mkdir(parents=True, exist_ok=True)
    run = {"arm": arm, "seed": seed, "seen": {"action": seen, "person": [100] * len(seen)},
           "unseen/tempo": {"action": unseen, "person": persons}, "cpu": {"model": "test CPU"}}
    (folder / f"seed{seed}.json").write_text(json.dumps(run))


def test_known_accuracies_give_their_gap_difference_and_direction(tmp_path: Path) -> None:
    persons = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5] * 2
    for seed, extra in ((0, 0), (1, 1), (2, 0)):
        # baseline: seen 90 %, unseen 30 % (+ 5 % on seed 1); "piumr": unseen +40 points; "mixstyle": the baseline
        base = [1] * 6 + [0] * 14
        if extra:
            base[-1] = 1
        _write(tmp_path, "baseline", seed, [1] * 9 + [0], base, persons)
        _write(tmp_path, "piumr", seed, [1] * 9 + [0], [1] * 8 + base[8:], persons)
        _write(tmp_path, "mixstyle", seed, [1] * 9 + [0], base, persons)
    res = analyse_gap(tmp_path, "tempo", ("baseline", "piumr", "mixstyle"), reps=200)
    rows = res["rows"]
    assert rows["baseline"]["seen"]["value"] == pytest.approx(90.0)
    assert rows["baseline"]["unseen"]["value"] == pytest.approx(100 * (18 + 1) / 60, abs=0.01)
    assert rows["baseline"]["gap"]["value"] == pytest.approx(90.0 - 100 * 19 / 60, abs=0.01)
    assert rows["baseline"]["gap"]["direction"] == "unseen persons lower"
    assert rows["piumr"]["diff"]["value"] == pytest.approx(10.0, abs=0.01)  # clips 6 and 7 turn right: 2 of 20
    assert rows["piumr"]["diff"]["direction"].startswith("better")
    assert rows["mixstyle"]["diff"]["value"] == 0.0 and rows["mixstyle"]["diff"]["direction"].startswith("not resolved")
    # the another-CPU interval of a mean is wider than its t interval (sqrt(2) x)
    u = rows["baseline"]["unseen"]
    assert u["another_cpu"][1] - u["another_cpu"][0] == pytest.approx(2 ** 0.5 * (u["t_ci"][1] - u["t_ci"][0]), rel=1e-2)
    assert res["checks"] == {"baseline_gap_at_least_10": True, "every_row_at_least_3x_chance": True}
    assert res["held_out_persons"] == 5 and res["cpus"] == ["test CPU"]
    assert any("better than X3D" in line for line in gap_lines(res))
    with pytest.raises(ValueError, match="no tempo runs of coral"):
        analyse_gap(tmp_path, "tempo", ("baseline", "coral"))


def test_a_row_at_chance_fails_its_check(tmp_path: Path) -> None:
    for seed in (0, 1):
        _write(tmp_path, "baseline", seed, [1, 0], [1, 0, 0, 0], [1, 1, 2, 2])
        _write(tmp_path, "piumr", seed, [1, 0], [0, 0, 0, 0], [1, 1, 2, 2])
    res = analyse_gap(tmp_path, "tempo", ("baseline", "piumr"), reps=100)
    assert res["checks"] == {"baseline_gap_at_least_10": True, "every_row_at_least_3x_chance": False}
    assert any("3x chance: NO" in line for line in gap_lines(res))


def test_the_demo_trains_through_the_suite_and_writes_its_report(tmp_path: Path) -> None:
    s = gap_settings("tempo", (0, 1), ("baseline", "piumr"), sizes=TOY, epochs=1, batch=8)
    assert len(run_suite(s, tmp_path)) == 4
    run = json.loads((tmp_path / "runs" / "piumr" / "seed1.json").read_text())
    assert [k for k in run if k.startswith("unseen/")] == ["unseen/tempo"]  # scores its factor only
    res = write_gap_report(tmp_path, command="test", factor="tempo", arms=("baseline", "piumr"), reps=100)
    for name in ("gap.json", "gap.md", "gap.tex", "gap.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "gap.json").read_text())
    assert saved["rows"]["piumr"]["diff"] == res["rows"]["piumr"]["diff"] and saved["seeds"] == [0, 1]
    assert "CPU:" in (tmp_path / "gap.md").read_text()


def test_plan_and_bad_flags(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["reproduce", "person-gap", "--plan", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0 and "9 of 9 trainings" in r.output and not (tmp_path / "o").exists()
    for argv, word in ((["--factor", "speed"], "--factor speed"), (["--arms", "baseline"], "--arms baseline"),
                       (["--arms", "baseline,aa"], "--arms baseline,aa"), (["--seeds", "x"], "--seeds")):
        r = runner.invoke(app, ["reproduce", "person-gap", *argv, "--out", str(tmp_path / "o")])
        assert r.exit_code != 0 and word in r.output, r.output


def test_the_third_arm_is_the_suites_best_baseline_on_the_factor() -> None:
    # the demo shows the baseline of the committed suite's leaderboard with the highest unseen Top-1 on its factor
    summary = json.loads((REPO / "artifacts" / "shift-suite" / "summary.json").read_text(encoding="utf-8"))
    methods = summary["factors"][GAP_FACTOR]["methods"]
    dg = [m for m in methods if ARM_SPECS[m].kind == "baseline-method"]
    assert GAP_ARMS[:2] == ("baseline", "piumr") and len(dg) == 5
    assert GAP_ARMS[2] == max(dg, key=lambda m: methods[m]["unseen"])


def test_another_cpu_study_says_which_values_land_inside(tmp_path: Path) -> None:
    import subprocess
    import sys

    def gap(unseen: float, diff: float) -> dict[str, object]:
        iv = {"ci": [unseen - 2, unseen + 2], "another_cpu": [unseen - 5, unseen + 5]}
        dv = {"ci": [diff - 1, diff + 1], "another_cpu": [diff - 3, diff + 3]}
        return {"meta": {"machine": "m"}, "factor": "tempo", "seeds": [0, 1],
                "rows": {"baseline": {"label": "X3D", "unseen": {"value": unseen, **iv}},
                         "piumr": {"label": "PIUmr", "unseen": {"value": unseen, **iv}, "diff": {"value": diff, **dv}}}}

    (tmp_path / "a.json").write_text(json.dumps(gap(40.0, 1.0)))
    (tmp_path / "b.json").write_text(json.dumps(gap(44.0, 5.0)))
    res = subprocess.run([sys.executable, str(REPO / "studies" / "shift_suite" / "gap_another_cpu.py"),
                          str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(tmp_path / "c.json")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {r["arm"]: r for r in json.loads((tmp_path / "c.json").read_text())["rows"]}
    assert rows["baseline"]["unseen_inside"] and not rows["baseline"]["unseen_inside_ci"]  # 44 in [35, 45], not [38, 42]
    assert not rows["piumr"]["diff_inside"]  # +5 outside [-2, +4]
