"""The demo states its own resolution: ``paired.person_resolution`` (bootstrap clustered by person x seed) in
``paired.json`` and in what ``piumr reproduce demo`` prints; the demo runs on task v2 (preset ``demo``)."""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from piumr.reproduce.paired import person_resolution
from piumr.reproduce.runner import ExperimentOutput, print_result


def _row(key: str, per_seed: dict[int, dict[str, float]]) -> dict[str, object]:
    return {"row": key, "seeds": [{"seed": s, "metrics": {"action_top1": float(np.mean(list(p.values())))},
                                   "participants": {"per_participant": p}} for s, p in per_seed.items()]}


def _write(tmp: Path, a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> Path:
    (tmp / "rows").mkdir(parents=True, exist_ok=True)
    (tmp / "rows" / "a.json").write_text(json.dumps(_row("a", a)))
    (tmp / "rows" / "d.json").write_text(json.dumps(_row("d", b)))
    return tmp


def test_resolution_of_a_constant_gain_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = {s: {f"{p:04d}": float(rng.uniform(20, 60)) for p in range(8)} for s in (0, 1)}
    b = {s: {p: v + 10.0 for p, v in per.items()} for s, per in a.items()}
    r = person_resolution(_write(tmp_path, a, b), "a", "d", reps=300)
    assert r["diff"] == pytest.approx(10.0) and r["lo"] == pytest.approx(10.0) and r["hi"] == pytest.approx(10.0)
    assert r["seeds"] == [0, 1] and r["persons_per_seed"] == [8, 8] and r["half_width"] == pytest.approx(0.0)


def test_resolution_widens_with_person_noise_and_shrinks_with_persons(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)

    def arms(persons: int) -> tuple[dict[int, dict[str, float]], dict[int, dict[str, float]]]:
        a = {s: {f"{p:04d}": 40.0 for p in range(persons)} for s in (0, 1)}
        b = {s: {p: 40.0 + float(rng.normal(0, 10)) for p in per} for s, per in a.items()}
        return a, b

    few = person_resolution(_write(tmp_path / "few", *arms(8)), "a", "d", reps=1000)
    many = person_resolution(_write(tmp_path / "many", *arms(200)), "a", "d", reps=1000)
    assert few["lo"] < few["diff"] < few["hi"] and few["half_width"] > 2.0
    assert many["half_width"] < few["half_width"] / 2  # 25x the persons: about 1/5 of the half-width
    assert few["mde"] == pytest.approx(2.8016 * few["se"], rel=1e-3)  # (z_0.975 + z_0.8) x SE


def test_resolution_refuses_rows_scored_on_other_persons(tmp_path: Path) -> None:
    a = {0: {"0001": 50.0, "0002": 40.0}}
    with pytest.raises(ValueError, match="different persons"):
        person_resolution(_write(tmp_path, a, {0: {"0001": 50.0, "0003": 40.0}}), "a", "d")


def test_the_demo_prints_its_resolution(tmp_path: Path) -> None:
    a = {s: {f"{p:04d}": 30.0 + p for p in range(8)} for s in (0, 1)}
    b = {s: {p: v + (3.0 if int(p) % 2 else -1.0) for p, v in per.items()} for s, per in a.items()}
    res = person_resolution(_write(tmp_path, a, b), "a", "d", reps=300)
    diff = {"a_mean": 40.0, "b_mean": 41.0, "mean": 1.0, "lo": -5.0, "hi": 7.0}
    out = ExperimentOutput("demo", tmp_path, [], None,
                           {"paired": {"a": "a", "b": "d", "seeds": [0, 1], "diffs": {"action_top1": diff},
                                       "resolution": res}})
    buf = io.StringIO()
    print_result(out, Console(file=buf, width=400))
    text = buf.getvalue()
    assert "resolution: d - a unseen-person Top-1 +1.0 points" in text
    assert f"+-{res['half_width']:.1f} points" in text and "2 seeds x 8 held-out persons" in text
    assert "2 seeds barely sample it (the t interval over seeds above: +-6.0)" in text


def test_the_demo_command_uses_task_v2() -> None:
    from cli.reproduce import demo

    assert inspect.signature(demo).parameters["preset"].default == "demo"


def test_committed_demo_is_the_current_demo() -> None:
    """The committed demo (artifacts/reproduce/demo) names the runs the current code keys for `piumr reproduce demo`
    (preset demo, seeds 0 1), every row scores >= 3x chance (1/21) on unseen persons, and paired.json holds the
    resolution it printed."""
    from piumr.reproduce.runner import experiment_spec, jobs_for, make_settings

    out = Path("artifacts/reproduce/demo")
    root = Path(__file__).resolve().parents[1]
    s = make_settings(data="synth", preset="demo", split="cross-subject", seeds=(0, 1), out=out)
    keyed = {j.run_dir.as_posix() for j in jobs_for(s, experiment_spec(s, "demo"))}
    rows = [json.loads(f.read_text()) for f in sorted((root / out / "demo" / "rows").glob("*.json"))]
    assert [r["row"] for r in rows] == ["a", "b", "c", "d"]
    assert {Path(d).as_posix() for r in rows for d in r["run_dirs"]} == keyed
    for r in rows:
        assert [x["seed"] for x in r["seeds"]] == [0, 1]
        assert r["aggregate"]["action_top1"]["mean"] >= 3 * 100 / 21, r["row"]
        assert all(x["config"]["data"]["synth_task"] == 2 for x in r["seeds"])
    res = json.loads((root / out / "demo" / "paired.json").read_text())["resolution"]
    assert res["seeds"] == [0, 1] and res["lo"] <= res["diff"] <= res["hi"]
