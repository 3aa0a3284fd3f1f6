"""The person-shift suite end to end on a toy size: arms, controls, resumable runs and summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from piumr.data.synth.shift import FACTORS, MIXED_HELD, RANGES, ShiftSizes, build_train, shift_person, shifted_attrs
from piumr.shift import aug as shift_aug
from piumr.shift.aug import CONTROLS, motion_span, shared_aug, time_warp
from piumr.shift.report import write_report
from piumr.shift.suite import SUITE_VERSION, SuiteSettings, run_suite, tasks
from piumr.config import with_overrides
from piumr.shift import train as shift_train
from piumr.shift.arms import ARM_SPECS
from piumr.shift.train import ARMS, AUG_OFFSET, CONTROL_OFFSET, arm_config, stream_seed, suite_config, tfam_map, train_and_score

ABLATION_ARMS = ("baseline", "tfam", "girl", "piumr", "control", "aa")
TOY = ShiftSizes(train_persons=3, test_persons_per_fold=2, folds=2, clips_per_person=21, frames=4, size=32)


def test_benchmark_preset_puts_tfam_on_a_7x7_or_larger_map() -> None:
    assert min(tfam_map(suite_config(ShiftSizes(), epochs=1))) >= 7


def test_arms_differ_by_config_fields_and_aa_by_stream_only() -> None:
    base = suite_config(TOY, epochs=1)
    cfgs = {a: arm_config(base, a, 3) for a in ARMS}
    assert tuple(ARM_SPECS) == ARMS  # config.SHIFT_ARMS (read by the CLI before torch) names every arm
    assert {a: (c.model.tfam.enabled, c.girl.enabled) for a, c in cfgs.items() if a in ("baseline", "tfam", "girl",
            "piumr", "control", "aa")} == {"baseline": (False, False), "tfam": (True, False), "girl": (False, True),
                                           "piumr": (True, True), "control": (False, False), "aa": (False, False)}
    # the A/A arm is the baseline's config exactly (same seed: initialisation and data order); only its stream differs
    assert cfgs["aa"] == cfgs["baseline"] and ARM_SPECS["aa"].stream != ARM_SPECS["baseline"].stream == 0
    assert [cfgs[a].loss for a in ("groupdro", "vrex", "coral")] == ["groupdro", "vrex", "coral"]
    assert cfgs["mixstyle"].model.mixstyle.enabled and not cfgs["baseline"].model.mixstyle.enabled
    assert ARM_SPECS["augment"].augment == "recipe" and cfgs["augment"] == cfgs["baseline"]
    assert all(c.seed == 3 for c in cfgs.values())
    with pytest.raises(ValueError, match="unknown arm"):
        arm_config(base, "swin", 0)


def test_aa_shares_initialisation_and_data_order_but_not_its_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    # the A/A arm sees the baseline's batches in the baseline's order from the baseline's initial weights; what
    # differs is its stream (dropout masks, the shared augmentation's draws): with both switched off it trains the
    # baseline exactly, with them on it does not
    def spy(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return x

    monkeypatch.setattr(shift_train, "shared_aug", spy)
    data = build_train(TOY)
    cfg = with_overrides(arm_config(suite_config(TOY, epochs=2, batch=8), "baseline", 0), {"model.dropout": 0.0})
    base, aa = train_and_score(cfg, data), train_and_score(cfg, data, stream=1)
    assert base["final_loss"] == aa["final_loss"] and base["seen"] == aa["seen"]
    monkeypatch.undo()
    base, aa = train_and_score(cfg, data), train_and_score(cfg, data, stream=1)
    assert base["final_loss"] != aa["final_loss"]


def test_no_stream_reuses_a_seed_of_initialisation_order_or_control() -> None:
    # the baseline's stream 0 must not reuse the seed that drew the initial weights and the data order (suite
    # version 2 did): every stream seed and its shared-augmentation seed differ from every other seed of the suite
    seeds = range(10)
    fixed = {s for s in seeds} | {s + CONTROL_OFFSET for s in seeds}
    streams = [stream_seed(s, k) + d for s in seeds for k in range(3) for d in (0, AUG_OFFSET)]
    assert len(set(streams)) == len(streams) and not set(streams) & fixed
    assert stream_seed(4, 0) != 4 and stream_seed(4, 1) != stream_seed(4, 0)


@pytest.mark.parametrize("factor", sorted(CONTROLS))
def test_controls_keep_shape_and_follow_their_generator(factor: str) -> None:
    x = torch.randn(3, 3, 6, 16, 16)
    a = CONTROLS[factor](shared_aug(x, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    b = CONTROLS[factor](shared_aug(x, torch.Generator().manual_seed(1)), torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)


def _ramp_clip(batch: int, T: int = 16, a: int = 5, b: int = 10) -> torch.Tensor:
    """(batch, 3, T, 8, 8): frame t shows the value clamp(t, a, b), so only frames a..b move."""
    v = torch.arange(T, dtype=torch.float32).clamp(a, b)
    return v[None, None, :, None, None].expand(batch, 3, T, 8, 8).clone()


def test_motion_span_finds_the_frames_that_move() -> None:
    first, last = motion_span(_ramp_clip(2))
    assert first.tolist() == [5, 5] and last.tolist() == [10, 10]
    still = torch.zeros(1, 3, 6, 4, 4)
    assert [int(t) for t in motion_span(still)[0]] + [int(t) for t in motion_span(still)[1]] == [0, 5]


def test_time_warp_never_cuts_the_movement() -> None:
    # the movement's first and last frames stay in every warped clip, at every speed: a window that cut them
    # would turn a task-v2 "once" into a "stay" or a "twice" into a "once" (the earlier warp cut it whenever it
    # slowed a clip down)
    out = time_warp(_ramp_clip(400), torch.Generator().manual_seed(0))
    vals = out[:, 0, :, 0, 0]
    assert torch.all(vals.amin(dim=1) == 5) and torch.all(vals.amax(dim=1) == 10)
    # and it does change speed: some clips are stretched (a frame repeated), some compressed (frames skipped)
    steps = (vals[:, 1:] - vals[:, :-1])
    assert bool((steps == 0).any(dim=1).all()) and bool((steps >= 2).any())


def test_control_keeps_the_baselines_data_order(monkeypatch: pytest.MonkeyPatch) -> None:
    # a control that draws from its generator but leaves the clips as they are must train exactly the baseline:
    # the control's draws may not shift the data order or the shared augmentation (common random numbers)
    def draws_only(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        torch.rand(1000, generator=g)
        return x

    monkeypatch.setitem(shift_aug.AUGMENTATIONS, "tempo", draws_only)
    data = build_train(TOY)
    cfg = arm_config(suite_config(TOY, epochs=2, batch=8), "baseline", 0)
    base, ctrl = train_and_score(cfg, data), train_and_score(cfg, data, augment="tempo")
    assert base["final_loss"] == ctrl["final_loss"] and base["seen"] == ctrl["seen"]


@pytest.mark.parametrize("factor", FACTORS)
def test_data_control_widens_only_its_factor_to_the_held_out_range(factor: str) -> None:
    shifted = set(RANGES) if factor == "mixed" else {factor}
    names = {a for f in shifted for a in shifted_attrs(f)}
    hits: dict[str, set[str]] = {a: set() for a in names}
    joint = 0
    for pid in range(1, 61):
        a, w = shift_person(factor, 0, pid, False), shift_person(factor, 0, pid, False, widened=True)
        va, vw = vars(a.attrs), vars(w.attrs)
        # everything but the shifted factor stays the training person's (the other attributes, the clips' seeds)
        unchanged = {"tempo"} if "tempo" not in shifted else set()
        unchanged |= {"amplitude", "ease", "tremor"} if "style" not in shifted else set()
        assert all(va[k] == vw[k] for k in unchanged)
        if "style" not in shifted:
            assert a.hold == w.hold
        flat = {**{k: vw[k] for k in ("tempo", "cam_scale", "amplitude", "ease", "tremor", "noise")},
                "hold": w.hold, "texture_contrast": w.texture[0], "texture_freq": w.texture[1]}
        wheres = []
        for name in names & set(flat):
            train_rng, held_rng = RANGES[next(f for f in shifted if name in RANGES[f])][name]
            if factor == "mixed":  # mixed's own, milder held-out ranges
                held_rng = MIXED_HELD.get(name, held_rng)
            where = ("train" if any(lo <= flat[name] <= hi for lo, hi in train_rng) else
                     "held" if any(lo <= flat[name] <= hi for lo, hi in held_rng) else "outside")
            hits[name].add(where)
            wheres.append(where)
        joint += bool(wheres) and all(w_ == "held" for w_ in wheres)
    # the widened persons cover both ranges of every shifted attribute that the person carries directly
    for name, seen in hits.items():
        if seen:
            assert seen == {"train", "held"}, (name, seen)
    # and the held-out region jointly: at least a third of them lie inside it on every shifted attribute at once
    # (suite v2; drawing each attribute from the union on its own left none of 24 there on appearance and mixed)
    if any(hits.values()):
        assert joint >= 60 / 3, joint


def test_suite_runs_resumes_and_writes_the_summary_shape(tmp_path: Path) -> None:
    s = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0, 1), factors=("tempo",), arms=ABLATION_ARMS)
    ran = run_suite(s, tmp_path)
    assert len(ran) == len(tasks(s)) == 12
    assert run_suite(s, tmp_path) == []  # resumes: nothing left to do
    shared = json.loads((tmp_path / "runs" / "baseline" / "seed0.json").read_text())
    assert {k for k in shared if k.startswith("unseen/")} == {f"unseen/{f}" for f in FACTORS}  # one training, all factors
    control = json.loads((tmp_path / "runs" / "control-tempo" / "seed0.json").read_text())
    assert [k for k in control if k.startswith("unseen/")] == ["unseen/tempo"]
    assert control["control"] == "data" and shared["control"] is None
    assert shared["device"] == control["device"] == "cpu"
    from piumr.checkpoint import load_model

    from piumr.shift.train import _score

    model, ckpt = load_model(tmp_path / "weights" / "baseline" / "seed0.safetensors")  # scores again as trained
    assert ckpt.config.seed == 0 and not ckpt.config.model.tfam.enabled
    assert _score(model, build_train(TOY)["seen"], 64, torch.device("cpu")) == shared["seen"]
    with pytest.raises(ValueError, match="other settings"):
        run_suite(SuiteSettings(sizes=TOY, epochs=2, batch=8, seeds=(0, 1), factors=("tempo",), arms=ABLATION_ARMS),
                  tmp_path)
    with pytest.raises(ValueError, match="other settings"):  # the augmentation control is another suite
        run_suite(SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0, 1), factors=("tempo",), control="augment",
                                arms=ABLATION_ARMS), tmp_path)
    run_suite(s, tmp_path, command="piumr reproduce shift-suite --seeds 0 1")  # nothing to train; recorded
    write_report(tmp_path, command="test", expected_runs=12, reps=200)
    assert "trained by: `piumr reproduce shift-suite --seeds 0 1`" in (tmp_path / "summary.md").read_text()
    summ = json.loads((tmp_path / "summary.json").read_text())
    f = summ["factors"]["tempo"]
    assert set(f) == {"primary", "positive_control", "aa_control", "baseline_seen_minus_unseen", "held_out_persons",
                      "seeds", "baseline_unseen", "methods", "valid", "validity"}
    assert not f["valid"] and not f["validity"]["persons_and_seeds"]  # a toy suite: too few persons and seeds
    assert summ["version"] == 2 and summ["chance"] == round(100 / 21, 2) and "protocol_commit" in summ
    assert set(f["positive_control"]) >= {"diff", "ci", "t_ci"} and "ci_holm" in f["primary"]
    assert set(f["methods"]) == {"baseline", "tfam", "girl", "piumr"}
    assert f["methods"]["piumr"]["diff"] == f["primary"]["diff"]
    assert all(set(m) == {"unseen", "diff", "ci"} for m in f["methods"].values())
    assert f["seeds"] == 2 and f["held_out_persons"] == 4  # two folds of two persons
    assert f["primary"]["ci"][0] <= f["primary"]["diff"] <= f["primary"]["ci"][1]
    for name in ("table.tex", "summary.md", "shift_suite.png", "results.json", "leaderboard.md", "leaderboard.tex",
                 "leaderboard.png"):
        assert (tmp_path / name).is_file()
    assert json.loads((tmp_path / "results.json").read_text())["meta"]["devices"] == {"cpu": 12}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_suite_trains_on_one_gpu_with_several_jobs(tmp_path: Path) -> None:
    """``--device cuda --jobs 2``: spawned workers share the GPU; the runs say where they trained."""
    s = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0,), factors=("tempo",), arms=("baseline", "tfam"))
    assert len(run_suite(s, tmp_path, jobs=2, device="cuda")) == 2
    for arm in ("baseline", "tfam"):
        run = json.loads((tmp_path / "runs" / arm / "seed0.json").read_text())
        assert run["device"] == "cuda" and len(run["unseen/tempo"]["action"]) == 2 * 21


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_suite_device_cuda_without_a_gpu_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from piumr_cli.main import app

    res = CliRunner().invoke(app, ["reproduce", "shift-suite", "--device", "cuda", "--jobs", "1", "--seeds", "0",
                                   "--out", str(tmp_path / "suite")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "--device 'cuda'" in res.output, res.output
    assert not (tmp_path / "suite").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--factors", "tempo,colour"], "--factors: unknown colour"),
    (["--arms", "swin"], "--arms: unknown swin"),
    (["--data", "/nonexistent/ma52"], "--data /nonexistent/ma52: the shift suite runs on synthetic data only"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
    (["--jobs", "1", "--threads", "4096"], "--jobs 1 x --threads 4096 = 4096 threads on"),
])
def test_shift_suite_bad_options_are_one_line_before_torch(argv: list[str], message: str, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom piumr_cli.main import app\n"
            f"try:\n    app({['reproduce', 'shift-suite', *argv]!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', code)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert message in res.stderr and len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1, res.stderr
    assert res.stdout.split() == ["torch", "not", "imported", "2"], res.stdout + res.stderr


def test_runs_that_did_not_train_are_named(tmp_path: Path) -> None:
    from piumr.shift.report import untrained_runs

    for name, seen in (("baseline", [1, 0, 1, 1]), ("control-size", [0] * 20 + [1])):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "seed2.json").write_text(json.dumps({"seen": {"action": seen}}))
    assert untrained_runs(tmp_path) == ["control-size/seed2"]


def test_every_baseline_arm_trains_and_reaches_the_leaderboard(tmp_path: Path) -> None:
    # the domain-generalisation arms through the suite's own trainer: person batches and ids for the person-group
    # losses, MixStyle in the model, the augmentation baseline's draws; each is ranked against the baseline
    arms = ("baseline", "piumr", "groupdro", "vrex", "coral", "mixstyle", "augment")
    s = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0, 1), factors=("tempo",), arms=arms)
    assert len(run_suite(s, tmp_path)) == 14
    suite = json.loads((tmp_path / "suite.json").read_text())
    assert suite["suite_version"] == SUITE_VERSION == 3 and "protocol_commit" in suite
    runs = {a: json.loads((tmp_path / "runs" / a / "seed0.json").read_text()) for a in arms}
    assert all(r["final_loss"] == r["final_loss"] for r in runs.values())  # finite
    # every arm is scored on the same clips; the baselines are other trainings than the baseline's
    assert len({tuple(r["unseen/tempo"]["person"]) for r in runs.values()}) == 1
    assert all(runs[a]["final_loss"] != runs["baseline"]["final_loss"] for a in arms[2:])
    rep = write_report(tmp_path, command="test", expected_runs=16, reps=100)  # missing: 16 less the 14 files
    assert rep["meta"]["partial"] and rep["meta"]["runs_missing"] == 2
    assert "(partial)" in (tmp_path / "summary.md").read_text()
    # run files beyond the design (seeds added by protocol deviations 3, 5) count as done, never against the design
    rep = write_report(tmp_path, command="test", expected_runs=12, missing_runs=0, reps=100)
    assert rep["meta"]["runs_done"] == 14 and not rep["meta"]["partial"] and rep["meta"]["runs_missing"] == 0
    assert "(complete)" in (tmp_path / "summary.md").read_text()
    methods = json.loads((tmp_path / "summary.json").read_text())["factors"]["tempo"]["methods"]
    assert set(methods) == set(arms)
    board = (tmp_path / "leaderboard.md").read_text()
    assert all(ARM_SPECS[a].label in board for a in arms)


def test_person_batches_hold_equal_shares_of_persons() -> None:
    from piumr.data.loaders import person_order

    persons = [p for p in range(6) for _ in range(9)]
    order = person_order(persons, 8, 4, torch.Generator().manual_seed(0))
    assert len(order) % 8 == 0 and len(set(order)) == len(order)
    for s in range(0, len(order), 8):
        batch = [persons[i] for i in order[s:s + 8]]
        assert sorted(batch.count(p) for p in set(batch)) == [2, 2, 2, 2]


def test_a_factor_failing_a_validity_criterion_is_not_read() -> None:
    from piumr.shift.report import _verdict, validity

    ok = {"baseline_unseen": 37.1, "baseline_seen_minus_unseen": 32.3, "held_out_persons": 40, "seeds": 10,
          "positive_control": {"ci": [16.5, 24.7], "t_ci": [15.0, 26.0]}, "aa_control": {"ci": [-1.9, 2.9]}}
    assert all(validity(ok).values())
    primary = {"ci": [1.9, 9.0], "ci_holm": [1.0, 10.2]}
    assert _verdict(primary, 10, validity(ok)) == "PIUmr helps (Holm)"
    # each criterion fails on its own: the A/A excluding 0 (suite v3's mixed), the baseline at chance, no gap, a
    # positive control whose t interval covers 0, too few seeds
    for key, bad in (("aa_control", {"ci": [0.5, 9.1]}), ("baseline_unseen", 9.0), ("baseline_seen_minus_unseen", 8.0),
                     ("positive_control", {"ci": [0.2, 4.4], "t_ci": [-0.2, 4.7]}), ("seeds", 4)):
        v = validity({**ok, key: bad})
        assert sum(not x for x in v.values()) == 1, key
        if key != "seeds":  # a partial suite keeps its verdict words; its validity says it is partial
            assert _verdict(primary, 10, v).startswith("uninformative"), key
    assert not validity({k: v for k, v in ok.items() if k != "aa_control"})["aa_covers_0"]


def test_each_comparison_uses_the_seeds_its_two_arms_share() -> None:
    # protocol deviation 3: the primary pair has more seeds than the A/A, the A/A more than the control and methods
    import numpy as np

    from piumr.shift.report import analyse_factor

    rng = np.random.default_rng(0)

    def run(p: float) -> dict[str, object]:
        part = {"action": [int(x) for x in rng.random(8) < p], "body": [int(x) for x in rng.random(8) < p],
                "person": [0, 0, 1, 1, 2, 2, 3, 3]}
        return {"unseen": part, "seen": part, "train_s": 1.0, "tfam_map": None}

    held = {"baseline": (6, 0.3), "piumr": (6, 0.6), "aa": (4, 0.3), "control": (2, 0.9), "tfam": (2, 0.3),
            "girl": (2, 0.3)}
    arms = {a: {s: run(p) for s in range(n)} for a, (n, p) in held.items()}
    r = analyse_factor(arms, reps=200)
    assert r is not None and r["seeds"] == 6 and r["seed_list"] == list(range(6))
    assert r["aa_control"]["seeds"] == 4 and r["positive_control"]["seeds"] == 2
    assert r["secondary_holm"]["tfam_minus_baseline"]["seeds"] == 2
    assert r["secondary_holm"]["piumr_minus_baseline_seen"]["seeds"] == 6

    def acc(a: str, seeds: range) -> float:
        return 100 * float(np.mean([v for s in seeds for v in arms[a][s]["unseen"]["action"]]))

    assert r["primary"]["diff"] == round(acc("piumr", range(6)) - acc("baseline", range(6)), 2)
    assert r["baseline_unseen"] == round(acc("baseline", range(6)), 2)
    # the leaderboard ranks every method, PIUmr included, and the baseline on the seeds they all share
    assert {m["seeds"] for m in r["methods"].values()} == {2}
    assert r["methods"]["baseline"]["unseen"] == round(acc("baseline", range(2)), 2)
    assert r["methods"]["piumr"]["diff"] == round(acc("piumr", range(2)) - acc("baseline", range(2)), 2)
    assert r["methods"]["piumr"]["diff"] != r["primary"]["diff"]
    # deviation 4: the A/A on the leaderboard's seeds decides whether the leaderboard is read
    from piumr.shift.report import leaderboard_aa_covers_0

    assert r["methods_aa_control"]["seeds"] == 2
    assert r["methods_aa_control"]["diff"] == round(acc("aa", range(2)) - acc("baseline", range(2)), 2)
    assert not leaderboard_aa_covers_0({"methods_aa_control": {"ci": [0.5, 9.1]}})
    assert leaderboard_aa_covers_0({"methods_aa_control": {"ci": [-1.3, 3.0]}}) and leaderboard_aa_covers_0({})


def test_a_suite_scoring_only_its_factors_trains_again_for_a_factor_asked_later(tmp_path: Path) -> None:
    # the person-gap demo scores only its factor; asking for another factor in the same folder trains again and the
    # run file keeps what it had scored; a full suite there scores every factor
    from piumr.shift.suite import pending

    tempo = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0,), factors=("tempo",), arms=("baseline",),
                          score_all=False)
    assert len(run_suite(tempo, tmp_path)) == 1 and pending(tempo, tmp_path) == []
    path = tmp_path / "runs" / "baseline" / "seed0.json"
    first = json.loads(path.read_text())
    assert [k for k in first if k.startswith("unseen/")] == ["unseen/tempo"]
    size = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0,), factors=("size",), arms=("baseline",),
                         score_all=False)
    assert len(pending(size, tmp_path)) == 1
    run_suite(size, tmp_path)
    again = json.loads(path.read_text())
    assert [k for k in again if k.startswith("unseen/")] == ["unseen/tempo", "unseen/size"]
    assert again["unseen/tempo"] == first["unseen/tempo"] and again["seen"] == first["seen"]  # the same training
    full = SuiteSettings(sizes=TOY, epochs=1, batch=8, seeds=(0,), factors=("tempo",), arms=("baseline",))
    assert len(pending(full, tmp_path)) == 1  # score_all: every factor
