"""piumr.reproduce: specs, paper numbers, writers (golden files), skip/resume, seed aggregation, figures, CLI.

Everything except the one ``slow`` test uses synthetic result dicts and mocked
training. Regenerate the golden files with ``PIUMR_UPDATE_GOLDEN=1 pytest tests/test_reproduce.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from piumr.config import PRESETS, TrainConfig, get_preset, with_overrides
from piumr.metrics import EvalResult
from piumr.reproduce import figures, paper, specs
from piumr.reproduce.planning import estimate_gpu_hours, plan
from piumr.reproduce.runner import (
    RESULT_FILE,
    Settings,
    build_table,
    ensure_run,
    expand_names,
    jobs_for,
    make_settings,
    run_experiment,
)
from piumr.reproduce.writers import Cell, ResultTable, TableRow, compute_marks, table_to_json, table_to_latex
from piumr.train import TrainResult

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PIUMR_UPDATE_GOLDEN") == "1"
KEYS = ("body_top1", "action_top1", "action_top5", "body_f1_macro", "body_f1_micro", "action_f1_macro",
        "action_f1_micro", "f1_mean")


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"golden file {path} missing (PIUMR_UPDATE_GOLDEN=1 writes it)"
    assert text == path.read_text(), f"{name} differs from its golden file"


def _metrics(base: float) -> dict[str, float]:
    """Synthetic official metrics: distinct, plausible values around ``base``."""
    return {k: base + i for i, k in enumerate(KEYS)}


def _result(seed: int, base: float, participants: dict[str, float] | None = None) -> dict[str, Any]:
    p = None
    if participants is not None:
        accs = sorted(participants.values())
        p = {"per_participant": participants, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
             "worst_acc": accs[0], "worst10_acc": accs[0], "worst_id": "x", "num_participants": len(accs)}
    return {"seed": seed, "metrics": _metrics(base), "participants": p}


# ----------------------------------------------------------------------------------------------
# paper numbers
# ----------------------------------------------------------------------------------------------
def _all_reported() -> list[paper.ReportedRow]:
    return [*paper.TABLE1_REPORTED, paper.TABLE1_PIUMR, *paper.TABLE2.values(), *paper.TABLE3.values()]


def test_paper_f1_mean_is_the_mean_of_the_four_f1() -> None:
    for row in _all_reported():
        v = row.values
        four = (v["body_f1_macro"] + v["body_f1_micro"] + v["action_f1_macro"] + v["action_f1_micro"]) / 4
        assert abs(four - v["f1_mean"]) <= 0.006, row


def test_paper_table1_top1_equals_micro_f1() -> None:
    for row in [*paper.TABLE1_REPORTED, paper.TABLE1_PIUMR]:
        assert row.values["body_top1"] == row.values["body_f1_micro"], row.name
        assert row.values["action_top1"] == row.values["action_f1_micro"], row.name
        assert len(row.values) == 8 and row.citation


def test_paper_column_mapping_of_tables_2_and_3() -> None:
    # Table 2 row d is PIUmr's Table 1 row under the corrected column order; macro < micro everywhere
    for k in paper.ABLATION_COLUMNS:
        assert paper.TABLE2["d"].values[k] == paper.TABLE1_PIUMR.values[k]
        assert paper.TABLE3["e"].values[k] == paper.TABLE2["d"].values[k]
        assert paper.TABLE3["a"].values[k] == paper.TABLE2["c"].values[k]
    for row in [*paper.TABLE2.values(), *paper.TABLE3.values()]:
        assert row.values["body_f1_macro"] < row.values["body_f1_micro"]
        assert row.values["action_f1_macro"] < row.values["action_f1_micro"]


# ----------------------------------------------------------------------------------------------
# specs
# ----------------------------------------------------------------------------------------------
def test_experiment_names_and_aliases() -> None:
    assert specs.get_experiment("table3") is specs.EXPERIMENTS["ablation-tfam"]
    with pytest.raises(ValueError, match="unknown experiment 'table9'"):
        specs.get_experiment("table9")
    assert expand_names(["all"]) == list(specs.ALL_ORDER)
    assert expand_names(["table3", "ablation-tfam", "fig5"]) == ["ablation-tfam", "fig5"]


def test_rows_build_the_intended_switches() -> None:
    base = get_preset("tiny")
    t2 = {r.key: specs.build_config(base, r, 0) for r in specs.EXPERIMENTS["table2"].rows}
    assert (t2["a"].model.tfam.enabled, t2["a"].girl.enabled) == (False, False)
    assert (t2["b"].model.tfam.enabled, t2["b"].girl.enabled) == (True, False)
    assert (t2["c"].model.tfam.enabled, t2["c"].girl.enabled) == (False, True)
    assert (t2["d"].model.tfam.enabled, t2["d"].girl.enabled) == (True, True)
    t3 = {r.key: specs.build_config(base, r, 0).model.tfam for r in specs.EXPERIMENTS["ablation-tfam"].rows}
    assert not t3["a"].enabled
    assert (t3["b"].frequency, t3["b"].temporal) == (True, False)
    assert (t3["c"].frequency, t3["c"].temporal) == (False, True)
    assert (t3["d"].frequency, t3["d"].temporal, t3["d"].fusion) == (True, True, "mean")
    assert (t3["e"].frequency, t3["e"].temporal, t3["e"].fusion) == (True, True, "consistency")
    assert all(specs.build_config(base, r, 0).girl.enabled for r in specs.EXPERIMENTS["ablation-tfam"].rows)
    ps = [specs.build_config(base, r, 0) for r in specs.EXPERIMENTS["person-shift"].rows]
    assert all(c.data.split == "cross-subject" for c in ps)


def test_identical_models_share_one_run(tmp_path: Path) -> None:
    s = Settings(root=tmp_path, base=get_preset("tiny"))
    dirs = {name: {j.row.key: j.run_dir for j in jobs_for(s, specs.EXPERIMENTS[name])}
            for name in ("table1", "table2", "ablation-tfam", "fig4", "fig6")}
    assert dirs["ablation-tfam"]["a"] == dirs["table2"]["c"]  # paper: Table 3 row a == Table 2 row c
    assert dirs["ablation-tfam"]["e"] == dirs["table2"]["d"] == dirs["table1"]["piumr"] == dirs["fig6"]["piumr"]
    assert dirs["table1"]["x3d"] == dirs["table2"]["a"] == dirs["fig4"]["x3d"]
    assert len({d for v in dirs.values() for d in v.values()}) == 7


def test_seeds_share_the_config_key_but_not_the_folder(tmp_path: Path) -> None:
    s = Settings(root=tmp_path, base=get_preset("tiny"), seeds=(0, 1))
    jobs = jobs_for(s, specs.EXPERIMENTS["table2"])
    assert len(jobs) == 8 and len({j.run_dir for j in jobs}) == 8
    a0, a1 = (j for j in jobs if j.row.key == "a")
    assert a0.run_dir.parent == a1.run_dir.parent
    assert (a0.cfg.seed, a1.cfg.seed, a1.cfg.girl.seed) == (0, 1, 1)
    # Fig. 4 draws one seed; Fig. 5 and 6 take every seed (their verdicts need several)
    assert {j.seed for j in jobs_for(s, specs.EXPERIMENTS["fig4"])} == {0}
    assert {j.seed for j in jobs_for(s, specs.EXPERIMENTS["fig5"])} == {0, 1}
    assert {j.seed for j in jobs_for(s, specs.EXPERIMENTS["fig6"])} == {0, 1}


def test_committed_run_keys_stay_valid() -> None:
    """Every run folder that the committed results name (artifacts/reproduce/*/<experiment>/rows/*.json) is
    the one the current code keys the same (experiment, row, seed) to, except the runs listed in STALE.json
    (made under earlier defaults of TFAM/GIRL), which the current code never keys (they would be retrained)."""
    from piumr.recipe import RECIPE_VERSION
    from piumr.reproduce.runner import experiment_spec, make_settings

    root = Path(__file__).resolve().parents[1]
    named: dict[str, set[str]] = {}
    for f in (root / "artifacts" / "reproduce" / "synth-smoke-xsub").glob("*/rows/*.json"):
        d = json.loads(f.read_text())
        named.setdefault(d["experiment"], set()).update(Path(r).as_posix() for r in d["run_dirs"])
    assert len(named) >= 5 and sum(map(len, named.values())) >= 40
    s = make_settings(data="synth", preset="smoke", split="cross-subject", seeds=(0, 1, 2), table1_with=("swin3d_t",),
                      out=Path("artifacts/reproduce/synth-smoke-xsub"))
    stale_file = json.loads((root / "artifacts/reproduce/synth-smoke-xsub/STALE.json").read_text())
    if stale_file.get("recipe_version", 1) != RECIPE_VERSION:
        # made under an earlier recipe (piumr.recipe.RECIPE_VERSION is in every run key): the current code keys
        # none of these runs, so a rerun retrains every one and never serves a cached result of the old recipe
        for name, dirs in named.items():
            assert not dirs & {j.run_dir.as_posix() for j in jobs_for(s, experiment_spec(s, name))}, name
        return
    stale = set(stale_file["runs"])
    # runs made before a change of a default that changes results are listed as stale (and retrained); only runs
    # with TFAM or GIRL on may be (the defaults that changed are theirs): the X3D baseline stays valid
    assert all("tfam-" in d or "_girl" in d for d in stale)
    for name, dirs in named.items():
        keyed = {j.run_dir.as_posix() for j in jobs_for(s, experiment_spec(s, name))}
        assert dirs - stale <= keyed, (name, sorted(dirs - stale - keyed)[:3])
        assert not (stale & keyed), "a run listed as stale is keyed by the current code"


def test_a_new_field_at_its_default_keeps_the_run_key() -> None:
    """Adding a config field with a default (top level or nested) changes no run key; setting it does."""
    from piumr.config import GIRLConfig

    class NewGIRL(GIRLConfig):
        new_margin: float = 0.0

    class NewConfig(TrainConfig):
        new_knob: int = 3
        girl: NewGIRL = NewGIRL()

    base = get_preset("smoke")
    key = specs.config_key(base)
    grown = NewConfig.model_validate(base.model_dump())
    assert specs.config_key(grown) == key
    assert specs.config_key(grown.model_copy(update={"new_knob": 4})) != key
    assert specs.config_key(grown.model_copy(update={"girl": grown.girl.model_copy(update={"new_margin": 1.0})})) != key
    assert specs.config_key(base.model_copy(update={"seed": 7, "name": "other"})) == key  # seeds share a key
    assert specs.config_key(with_overrides(base, {"optim.lr": 0.5})) != key


# ----------------------------------------------------------------------------------------------
# aggregation and marks
# ----------------------------------------------------------------------------------------------
def test_cell_mean_and_sample_std() -> None:
    c = Cell((1.0, 2.0, 3.0), paper=1.5)
    assert c.mean == 2.0 and c.std == pytest.approx(1.0) and c.n == 3 and c.diff == pytest.approx(0.5)
    assert c.text() == "2.00 ± 1.00"
    one = Cell((4.256,))
    assert one.std is None and one.text() == "4.26" and one.diff is None
    with pytest.raises(ValueError):
        Cell(())


def test_marks_ignore_reported_rows_and_share_ties() -> None:
    cols = ("f1_mean", "p_std")
    rows = (
        TableRow("rep", "Other", {"f1_mean": Cell((99.0,)), "p_std": Cell((0.0,))}, reported=True, citation="x"),
        TableRow("a", "A", {"f1_mean": Cell((50.001,)), "p_std": Cell((3.0,))}, seeds=(0,)),
        TableRow("b", "B", {"f1_mean": Cell((50.0,)), "p_std": Cell((1.0,))}, seeds=(0,)),
        TableRow("c", "C", {"f1_mean": Cell((40.0,)), "p_std": Cell((2.0,))}, seeds=(0,)),
    )
    t = ResultTable("t", "T", cols, {}, rows, lower_is_better=frozenset({"p_std"}))
    m = compute_marks(t)
    assert ("rep", "f1_mean") not in m and ("rep", "p_std") not in m
    assert m[("a", "f1_mean")] == m[("b", "f1_mean")] == "best"  # equal at 2 decimals
    assert m[("c", "f1_mean")] == "second"
    assert (m[("b", "p_std")], m[("c", "p_std")]) == ("best", "second") and ("a", "p_std") not in m


def _table1_results() -> dict[str, list[dict[str, Any]]]:
    return {"x3d": [_result(0, 40.0), _result(1, 42.0), _result(2, 44.0)],
            "piumr": [_result(0, 45.0), _result(1, 46.0), _result(2, 47.5)]}


def test_build_table_aggregates_seeds_and_keeps_reported_apart() -> None:
    t = build_table(specs.EXPERIMENTS["table1"], _table1_results())
    reported = [r for r in t.rows if r.reported]
    measured = [r for r in t.rows if not r.reported]
    assert len(reported) == len(paper.TABLE1_REPORTED) and [r.key for r in measured] == ["x3d", "piumr"]
    x3d = measured[0].cells["body_top1"]
    assert x3d.values == (40.0, 42.0, 44.0) and x3d.std == pytest.approx(2.0)
    assert x3d.paper == paper.TABLE2["a"].values["body_f1_micro"]
    assert "action_top5" in measured[0].cells and measured[0].cells["action_top5"].paper is None
    assert measured[1].cells["f1_mean"].paper == 68.11
    j = table_to_json(t)
    assert all(c["mark"] is None for r in j["rows"] if r["reported"] for c in r["cells"].values())
    assert {c["mark"] for r in j["rows"] if not r["reported"] for c in r["cells"].values()} == {"best", "second"}


def test_terminal_table_renders_reported_and_measured_rows() -> None:
    import io

    from rich.console import Console

    from piumr.reproduce.writers import table_to_rich

    buf = io.StringIO()
    Console(file=buf, width=250).print(table_to_rich(build_table(specs.EXPERIMENTS["table1"], _table1_results())))
    text = buf.getvalue()
    assert "MANet" in text and "reported" in text and "measured x3" in text
    assert "42.00 ± 2.00" in text and "79.99 (-37.99)" in text


def test_single_seed_shows_no_plus_minus() -> None:
    t = build_table(specs.EXPERIMENTS["table2"], {k: [_result(0, 50.0 + i)] for i, k in enumerate("abcd")})
    tex = table_to_latex(t)
    assert "\\pm" not in tex.split("\\midrule", 1)[1]
    assert "$\\pm$" in build_table_tex_with_seeds()


def build_table_tex_with_seeds() -> str:
    t = build_table(specs.EXPERIMENTS["table2"], {k: [_result(0, 50.0), _result(1, 51.0)] for k in "abcd"})
    return table_to_latex(t).split("\\midrule", 1)[1]


# ----------------------------------------------------------------------------------------------
# golden files
# ----------------------------------------------------------------------------------------------
def test_golden_table1_latex_and_json() -> None:
    t = build_table(specs.EXPERIMENTS["table1"], _table1_results())
    _golden("reproduce_table1.tex", table_to_latex(t))
    _golden("reproduce_table1.json", json.dumps(table_to_json(t), indent=2) + "\n")


def test_golden_ablation_latex_single_seed() -> None:
    res = {k: [_result(0, 60.0 + 0.5 * i)] for i, k in enumerate("abcde")}
    _golden("reproduce_table3.tex", table_to_latex(build_table(specs.EXPERIMENTS["ablation-tfam"], res)))


def test_golden_person_shift_json() -> None:
    res = {"x3d": [_result(0, 30.0, {"p1": 20.0, "p2": 60.0}), _result(1, 32.0, {"p1": 25.0, "p2": 55.0})],
           "piumr": [_result(0, 31.0, {"p1": 40.0, "p2": 50.0}), _result(1, 33.0, {"p1": 35.0, "p2": 45.0})]}
    t = build_table(specs.EXPERIMENTS["person-shift"], res)
    j = table_to_json(t)
    piumr = next(r for r in j["rows"] if r["key"] == "piumr")
    assert piumr["cells"]["p_worst"]["values"] == [40.0, 35.0] and piumr["cells"]["p_std"]["mark"] == "best"
    _golden("reproduce_person_shift.json", json.dumps(j, indent=2) + "\n")
    _golden("reproduce_person_shift.tex", table_to_latex(t))


# ----------------------------------------------------------------------------------------------
# skip / resume (training mocked)
# ----------------------------------------------------------------------------------------------
class FakeTrain:
    """Records calls; writes last.safetensors (a stand-in) like a run that got past epoch 0."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Path, bool, int]] = []
        self.fail = fail

    def __call__(self, cfg: TrainConfig, out_dir: Path, *, resume: bool = False, device: str | None = None,
                  progress: bool = True, console: Any = None) -> TrainResult:
        self.calls.append((out_dir, resume, cfg.seed))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "last.safetensors").write_bytes(b"stand-in")
        if self.fail:
            raise RuntimeError("killed")
        return TrainResult(out_dir, cfg.optim.epochs, 10, 50.0, _metrics(50.0))


def fake_eval(run_dir: Path, cfg: TrainConfig, device: str | None) -> EvalResult:
    return EvalResult(_metrics(50.0 + cfg.seed), {}, None, np.zeros((1, 1), dtype=np.int64))


def _mock_settings(tmp_path: Path, train: FakeTrain, seeds: tuple[int, ...] = (0,)) -> Settings:
    s = make_settings(data="synth", preset="tiny", seeds=seeds, out=tmp_path, progress=False)
    s.train_fn = train
    s.eval_fn = fake_eval
    return s


def test_finished_rows_are_skipped_and_interrupted_rows_resumed(tmp_path: Path) -> None:
    crash = FakeTrain(fail=True)
    s = _mock_settings(tmp_path, crash)
    with pytest.raises(RuntimeError, match="killed"):  # a run killed mid-way: checkpoint, no result
        run_experiment(s, "table2")
    assert len(crash.calls) == 1 and crash.calls[0][1] is False
    first_dir = crash.calls[0][0]
    assert not (first_dir / RESULT_FILE).exists()

    ok = FakeTrain()
    s = _mock_settings(tmp_path, ok)
    out = run_experiment(s, "table2")
    assert [c[1] for c in ok.calls] == [True, False, False, False]  # row a resumed, b-d fresh
    assert ok.calls[0][0] == first_dir
    result = json.loads((first_dir / RESULT_FILE).read_text())
    assert result["seed"] == 0 and result["config"]["model"]["tfam"]["enabled"] is False
    assert result["metrics"]["f1_mean"] == _metrics(50.0)["f1_mean"] and "git_commit" in result["provenance"]
    assert {p.name for p in out.files} >= {"table.json", "table.tex", "a.json", "d.json"}

    again = FakeTrain()
    s = _mock_settings(tmp_path, again)
    run_experiment(s, "table2")
    run_experiment(s, "ablation-tfam")  # its row a is table2's row c, its row e is table2's row d
    assert len(again.calls) == 3 and all(not c[1] for c in again.calls)
    assert all(p[0].is_relative_to(tmp_path / "runs") for p in again.calls)
    assert plan(s, ["table2"])[0].state == "done"


def test_seeds_are_aggregated_from_run_results(tmp_path: Path) -> None:
    s = _mock_settings(tmp_path, FakeTrain(), seeds=(0, 1, 2))
    out = run_experiment(s, "table2")
    assert out.table is not None
    cell = next(r for r in out.table.rows if r.key == "d").cells["f1_mean"]
    assert cell.values == tuple(_metrics(50.0 + k)["f1_mean"] for k in range(3))
    assert cell.std == pytest.approx(1.0)
    row = json.loads((out.out_dir / "rows" / "d.json").read_text())
    assert [r["seed"] for r in row["seeds"]] == [0, 1, 2] and row["aggregate"]["f1_mean"]["n"] == 3


def test_synthetic_tables_print_no_difference_to_the_paper(tmp_path: Path) -> None:
    """The paper's numbers are MA-52's: on synthetic data no cell carries them (no 'ours - paper' in JSON,
    LaTeX or the console); they sit in separate reported rows labelled MA-52."""
    import io

    from rich.console import Console

    from piumr.reproduce.writers import table_to_rich

    s = _mock_settings(tmp_path, FakeTrain(), seeds=(0, 1))
    out = run_experiment(s, "table2")
    assert out.table is not None
    measured = [r for r in out.table.rows if not r.reported]
    assert measured and all(c.paper is None and c.diff is None for r in measured for c in r.cells.values())
    apart = {r.key: r for r in out.table.rows if r.reported}
    assert set(apart) == {f"{k} (paper, MA-52)" for k in "abcd"}
    assert apart["d (paper, MA-52)"].cells["f1_mean"].values == (68.11,)
    assert all("MA-52" in r.citation and r.switches for r in apart.values())
    tex = (out.out_dir / "table.tex").read_text()
    assert "ours - paper" not in tex and "scriptsize" not in tex and "d (paper, MA-52)" in tex
    js = json.loads((out.out_dir / "table.json").read_text())
    assert all(c["diff"] is None for r in js["rows"] for c in r["cells"].values())
    buf = io.StringIO()
    Console(file=buf, width=300).print(table_to_rich(out.table))
    assert "ours - paper" not in buf.getvalue()
    # real data keeps the paper's value and the difference in each cell
    t = build_table(specs.EXPERIMENTS["table2"], {"d": [_result(0, 50.0)]})
    assert t.rows[0].cells["f1_mean"].paper == 68.11 and "(ours - paper)" in table_to_latex(t)


def test_ensure_run_reads_an_existing_result(tmp_path: Path) -> None:
    train = FakeTrain()
    s = _mock_settings(tmp_path, train)
    job = jobs_for(s, specs.EXPERIMENTS["table1"])[0]
    job.run_dir.mkdir(parents=True)
    (job.run_dir / RESULT_FILE).write_text(json.dumps({"seed": 0, "metrics": {"f1_mean": 1.0}}))
    assert ensure_run(s, job)["metrics"] == {"f1_mean": 1.0} and not train.calls


# ----------------------------------------------------------------------------------------------
# settings, plan, estimate
# ----------------------------------------------------------------------------------------------
def test_settings_reject_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--seeds is empty"):
        make_settings(data="synth", seeds=())
    with pytest.raises(ValueError, match="repeats"):
        make_settings(data="synth", seeds=(1, 1))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        make_settings(data=str(tmp_path / "nowhere"))
    with pytest.raises(KeyError):
        make_settings(data="synth", preset="huge")
    s = make_settings(data="synth", preset="tiny", epochs=3)
    assert s.base.optim.epochs == 3 and s.root == Path("artifacts/reproduce/synth-tiny")
    assert make_settings(data=str(tmp_path)).root == Path("artifacts/reproduce") / tmp_path.name


def test_gpu_hour_estimate_from_the_anchors() -> None:
    paper_cfg = PRESETS["paper"]
    base = specs.build_config(paper_cfg, specs.EXPERIMENTS["table2"].rows[0], 0)
    # 120 epochs x 140 steps x 80 clips / 125 clips/s + 121 val passes x 5586 / 874 clips/s
    expect = (120 * 140 * 80 / 125 + 121 * 5586 / 874) / 3600
    assert estimate_gpu_hours(base) == pytest.approx(expect)
    assert estimate_gpu_hours(paper_cfg) > estimate_gpu_hours(base)  # TFAM overhead (assumed)


def test_plan_counts_shared_runs_once(tmp_path: Path) -> None:
    s = make_settings(data="synth", preset="tiny", seeds=(0, 1), out=tmp_path)
    rows = plan(s, ["all"])
    assert len({r.run_dir for r in rows}) == 18  # 9 distinct configs x 2 seeds
    shared = [r for r in rows if r.shared_with]
    assert any(r.experiment == "ablation-tfam" and r.row == "a" and r.shared_with == "table2" for r in shared)
    ma52 = estimate_gpu_hours(specs.build_config(PRESETS["paper"], specs.EXPERIMENTS["table2"].rows[0], 0))
    assert all(0 < r.paper_gpu_hours < ma52 / 10 for r in rows)  # estimated on the synthetic set's sizes


# ----------------------------------------------------------------------------------------------
# figures (arrays in, files out)
# ----------------------------------------------------------------------------------------------
def test_similarities_split_inter_and_intra() -> None:
    emb = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    inter, intra = figures.cosine_similarities(emb, np.array([0, 0, 1]))
    assert intra.tolist() == pytest.approx([1.0]) and sorted(inter.tolist()) == pytest.approx([0.0, 0.0])


def test_participant_figure_labels_do_not_overlap_and_show_chance(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The girl-units arms have labels of ~80 characters: they are wrapped; chance is a line; the banner sits
    under the lowest tick label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    drawn: list[Any] = []
    save = figures.save_figure

    def keep(fig: Any, stem: Path, banner: str | None = None) -> list[Path]:
        drawn.append(fig)
        return save(fig, stem, banner)

    monkeypatch.setattr(figures, "save_figure", keep)
    names = [r.label.split(" (")[0] for r in specs.EXPERIMENTS["girl-units"].rows]
    assert max(len(n) for n in names) > 60
    figures.participant_figure({n: [20.0 + i, 60.0] for i, n in enumerate(names)}, tmp_path / "gu", "BANNER", 100 / 7)
    ax = drawn[0].axes[0]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert all(len(line) <= 22 for t in ticks for line in t.split("\n"))
    r = FigureCanvasAgg(drawn[0]).get_renderer()  # type: ignore[no-untyped-call]
    boxes = [t.get_window_extent(r) for t in ax.get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # side by side, no overlap
    banner = next(t for t in drawn[0].texts if t.get_text() == "BANNER").get_window_extent(r)
    assert banner.y1 <= min(b.y0 for b in boxes)
    assert any(list(line.get_ydata()) == [100 / 7, 100 / 7] for line in ax.get_lines())
    assert "chance (14.3 %)" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_no_row_on_another_backbone_is_called_piumr() -> None:
    from piumr.reproduce.runner import experiment_spec

    s = make_settings(data="synth", preset="smoke", backbone="swin3d_tiny")
    for name in ("person-shift", "table2", "ablation-tfam", "demo", "fig5"):
        labels = [r.label for r in experiment_spec(s, name).rows]
        assert not any("PIUmr" in lab for lab in labels), labels
    assert "swin3d_tiny + TFAM + GIRL" in [r.label for r in experiment_spec(s, "person-shift").rows]
    assert specs.chance_percent(s.base.model_dump()) == pytest.approx(100 / 7)


def test_figures_write_png_and_pdf(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(24, 5)), np.arange(24) % 52
    files = figures.similarity_figure({"baseline": figures.cosine_similarities(emb, labels),
                                       "PIUmr": figures.cosine_similarities(emb * 2, labels)}, tmp_path / "f5")
    files += figures.tsne_figure({"baseline": (figures.tsne_2d(emb), labels)}, tmp_path / "f4")
    files += figures.participant_figure({"a": [10.0, 50.0], "b": [30.0, 40.0, 45.0]}, tmp_path / "ps")
    coords = np.linspace(-1, 1, 3)
    files += figures.landscape_figure({"a": (coords, rng.uniform(1, 2, (3, 3))),
                                       "b": (coords, rng.uniform(1, 3, (3, 3)))}, tmp_path / "f6", seed=4, seeds=3)
    assert "surfaces of seed 4, 1 of 3 seeds" in figures.landscape_title(4, 3)  # the drawn seed is named
    assert "\n" not in figures.landscape_title(0, 1)
    assert [f.suffix for f in files] == [".png", ".pdf"] * 4
    assert all(f.stat().st_size > 1000 for f in files)
    assert figures.subsample(10, 20).tolist() == list(range(10)) and figures.subsample(100, 7, 1).size == 7


def test_every_figure_experiment_has_its_builder() -> None:
    from piumr.reproduce.runner import FIGURES

    assert {n for n, s in specs.EXPERIMENTS.items() if s.kind == "figure"} == set(FIGURES)


def test_an_unknown_figure_is_refused_with_the_list_before_training(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure experiment no builder draws is a one-line error naming the figures, and nothing is trained
    (it once fell into Fig. 6's branch after its trainings)."""
    from piumr.reproduce.runner import figure_builder

    with pytest.raises(ValueError, match=r"^no figure named 'fig7'; the figures are fig4, fig5, fig6$"):
        figure_builder("fig7")
    fig7 = dataclasses.replace(specs.EXPERIMENTS["fig5"], name="fig7")
    monkeypatch.setitem(specs.EXPERIMENTS, "fig7", fig7)
    train = FakeTrain()
    with pytest.raises(ValueError, match="no figure named 'fig7'"):
        run_experiment(_mock_settings(tmp_path, train), "fig7")
    assert train.calls == []


def test_fig5_title_names_the_seed_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert figures.similarity_title(0, [0, 1]) == ("Cosine similarity of validation embeddings, seed 0 (of seeds "
                                                   "0, 1; the finding below is over every seed)")
    assert figures.similarity_title(3, [3]) == "Cosine similarity of validation embeddings, seed 3"
    drawn: list[Any] = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, stem, banner=None: drawn.append(fig) or [])
    emb = np.random.default_rng(0).normal(size=(12, 4))
    figures.similarity_figure({"a": figures.cosine_similarities(emb, np.arange(12) % 3)}, tmp_path / "f5",
                              title=figures.similarity_title(0, [0, 1]))
    (fig,) = drawn
    assert fig._suptitle.get_text() == figures.similarity_title(0, [0, 1])
    assert [ax.get_title() for ax in fig.axes] == ["inter-class pairs", "intra-class pairs"]


def test_loss_landscape_restores_the_weights() -> None:
    from piumr.model import build_model

    torch.manual_seed(0)
    model = build_model(preset="tiny", num_classes=7).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(3, 3, 4, 32, 32), torch.tensor([0, 1, 2]))]
    coords, surf = figures.loss_landscape(model, batches, steps=3, span=0.5)
    assert coords.tolist() == [-0.5, 0.0, 0.5] and surf.shape == (3, 3) and np.isfinite(surf).all()
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the centre is the unperturbed model
    model.eval()
    with torch.no_grad():
        ce = torch.nn.functional.cross_entropy(model(batches[0][0]).logits, batches[0][1])
    assert surf[1, 1] == pytest.approx(float(ce), rel=1e-5)
    d1, _ = figures.random_directions(model)
    for p, d in zip(model.parameters(), d1, strict=True):
        if p.dim() > 1:
            assert torch.allclose(d.flatten(1).norm(dim=1), p.detach().flatten(1).norm(dim=1), rtol=1e-4)
        else:
            assert not d.any()


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
runner = CliRunner()


def _cli(args: list[str]) -> Any:
    from piumr_cli.main import app

    return runner.invoke(app, ["reproduce", *args])


def test_cli_seed_parsing() -> None:
    from piumr_cli.reproduce import parse_seeds

    assert parse_seeds(None, None) == (0,)
    assert parse_seeds(["0"], ["1", "2"]) == (0, 1, 2)
    assert parse_seeds(["0,1", "2"], None) == (0, 1, 2)
    with pytest.raises(ValueError, match="empty"):
        parse_seeds([""], None)
    with pytest.raises(ValueError, match="integers"):
        parse_seeds(["a"], None)
    with pytest.raises(ValueError, match="unexpected"):
        parse_seeds(None, ["7"])


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    res = _cli(["table2", "--data", str(tmp_path / "missing"), "--plan"])
    assert res.exit_code == 2 and "data root does not exist" in res.output and "Traceback" not in res.output
    res = _cli(["table2", "--data", "synth", "--seeds", "", "--plan"])
    assert res.exit_code == 2 and "--seeds is empty" in res.output
    res = _cli(["table2", "--data", "synth", "--preset", "huge", "--plan"])
    assert res.exit_code == 2 and "unknown preset" in res.output
    assert _cli(["table9", "--data", "synth"]).exit_code != 0


def test_cli_plan_runs_nothing(tmp_path: Path) -> None:
    res = _cli(["table3", "--data", "synth", "--preset", "tiny", "--seeds", "0", "1", "2", "--plan",
                "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "15 (row, seed) entries" in res.output and "GPU h" in res.output
    assert not (tmp_path / "runs").exists()
    res = _cli(["demo", "--plan", "--out", str(tmp_path)])
    assert res.exit_code == 0 and "distinct runs" in res.output


# ----------------------------------------------------------------------------------------------
# end to end (tiny preset, a few optimiser steps)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_end_to_end_tiny(tmp_path: Path) -> None:
    s = make_settings(data="synth", preset="tiny", epochs=1, max_steps_per_epoch=1, out=tmp_path, progress=False,
                      seeds=(0, 1))
    s.landscape_steps = 3
    s.landscape_batches = 1
    f5 = run_experiment(s, "fig5")
    assert {f.suffix for f in f5.files} == {".png", ".pdf", ".json"}
    f5_data = json.loads((f5.out_dir / "fig5.json").read_text())
    assert set(f5_data["similarity_by_seed"]) == {"0", "1"} and f5_data["similarity"] == f5_data["similarity_by_seed"]["0"]
    assert f5_data["finding"].startswith("measured (2 seeds")
    t1 = run_experiment(s, "table1")  # reuses fig5's two runs
    assert t1.table is not None and sum(not r.reported for r in t1.table.rows) == 2
    results = sorted((tmp_path / "runs").glob(f"*/seed0/{RESULT_FILE}"))
    assert len(results) == 2
    r = json.loads(results[0].read_text())
    assert set(r["metrics"]) == set(KEYS) and r["participants"] is not None
    assert all(math.isfinite(v) for v in r["metrics"].values())
    f6 = run_experiment(s, "fig6")
    f6_data = json.loads((f6.out_dir / "fig6.json").read_text())
    assert np.isfinite(np.asarray(f6_data["landscape"]["PIUmr"]["loss"])).all()
    assert set(f6_data["landscape_by_seed"]) == {"0", "1"} and "median rise" in f6_data["finding"]


def test_jobs_run_one_at_a_time_on_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Forked trainings cannot use CUDA once the parent touched it: on a GPU, --jobs N runs sequentially (in this
    process, so the fake trainer sees every call) and says so."""
    import io

    from rich.console import Console

    import piumr.reproduce.runs as runs_mod

    monkeypatch.setattr(runs_mod, "pick_device", lambda device: torch.device("cuda"))
    ok = FakeTrain()
    s = _mock_settings(tmp_path, ok)
    buf = io.StringIO()
    s = dataclasses.replace(s, jobs=2, console=Console(file=buf, width=200))
    run_experiment(s, "table2")
    assert len(ok.calls) == 4  # all four rows trained here, none in forked workers
    assert "--jobs 2: trainings run one at a time on cuda" in buf.getvalue()


class PredictingTrain(FakeTrain):
    """Also writes predictions_val.csv: 20 clips, all one class for TFAM-off runs, spread over 4 otherwise."""

    def __call__(self, cfg: TrainConfig, out_dir: Path, *, resume: bool = False, device: str | None = None,
                 progress: bool = True, console: Any = None) -> TrainResult:
        res = super().__call__(cfg, out_dir, resume=resume, device=device, progress=progress, console=console)
        collapsed = not cfg.model.tfam.enabled
        lines = ["file,participant,label,label_name,pred_1,prob_1"]
        lines += [f"c{i}.mp4,0001,{i % 4},x,{3 if collapsed else i % 4},0.5" for i in range(20)]
        (out_dir / "predictions_val.csv").write_text("\n".join(lines) + "\n")
        return res


def test_collapsed_runs_are_flagged_in_every_output(tmp_path: Path) -> None:
    from piumr.reproduce.runs import largest_predicted_share

    s = _mock_settings(tmp_path, PredictingTrain())
    out = run_experiment(s, "table2")
    data = json.loads((out.out_dir / "table.json").read_text())
    warnings = data["warnings"]
    assert len(warnings) == 2 and all("predicts one class for 100%" in w for w in warnings)  # rows a, c (TFAM off)
    assert {w.split()[1] for w in warnings} == {"a", "c"}
    assert "Warning:" in (out.out_dir / "table.tex").read_text()
    run_a = next(p for p in (tmp_path / "runs").iterdir() if p.name.startswith("notfam_nogirl"))
    assert largest_predicted_share(run_a / "seed0") == 1.0

    healthy = _mock_settings(tmp_path / "other", FakeTrain())  # no predictions file: nothing to flag
    assert "warnings" not in json.loads((run_experiment(healthy, "table2").out_dir / "table.json").read_text())
