"""The CLI as users type it: train -> evaluate -> predict, and the errors they will hit."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from piumr_cli.main import app

runner = CliRunner()
TRAIN = ["train", "--preset", "tiny", "--data", "synth", "--epochs", "1", "--max-steps-per-epoch", "2",
         "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run under <tmp>/artifacts/runs/..., like a user's first training."""
    work = tmp_path_factory.mktemp("work")
    import os

    old = os.getcwd()
    os.chdir(work)
    try:
        res = runner.invoke(app, TRAIN)
        assert res.exit_code == 0, res.output
    finally:
        os.chdir(old)
    return work


def test_version_and_help() -> None:
    res = runner.invoke(app, ["version"])
    assert res.exit_code == 0 and "piumr" in res.output
    assert runner.invoke(app, ["--help"]).exit_code == 0


def test_info_tiny() -> None:
    res = runner.invoke(app, ["info", "--preset", "tiny"])
    assert res.exit_code == 0, res.output
    assert "(2, 52)" in res.output and "(2, 256)" in res.output


def test_unknown_preset_is_one_line() -> None:
    res = runner.invoke(app, ["info", "--preset", "nope"])
    assert res.exit_code == 2
    assert "unknown preset 'nope'" in res.output and "Traceback" not in res.output


def test_missing_data_root(tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(tmp_path / "nowhere"), "--quiet"])
    assert res.exit_code == 2 and "nowhere" in res.output


def test_data_root_without_lists(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(tmp_path), "--quiet"])
    assert res.exit_code == 2 and "no list file" in res.output


def test_predict_without_any_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["predict", "x.mp4"])
    assert res.exit_code == 2 and "piumr train" in res.output


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "no.safetensors")])
    assert res.exit_code == 2 and "no such checkpoint" in res.output


def test_evaluate_latest(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    res = runner.invoke(app, ["evaluate", "--split", "test"])
    assert res.exit_code == 0, res.output
    assert "using the most recent checkpoint" in res.output and "F1_mean" in res.output
    run = next((trained / "artifacts" / "runs").iterdir())
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert set(metrics["official"]) >= {"f1_mean", "action_top1", "body_top1"}
    header = (run / "eval-test" / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("file,participant,label,label_name,pred_1,prob_1")


def _some_synth_clip() -> Path:
    from piumr.config import PRESETS
    from piumr.data.splits import load_split

    return load_split(PRESETS["tiny"].data, "val")[0].path


def test_predict_synth_clip_json(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    res = runner.invoke(app, ["predict", str(_some_synth_clip()), "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output[res.output.index("{"):])
    assert len(payload["top5"]) == 5
    probs = [t["prob"] for t in payload["top5"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    assert payload["body"]["name"]


def test_predict_real_clips_and_broken_ones(trained: Path, clips_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    good = [clips_dir / "ma52_demo" / "B1_nodding__0019_02_0078.mp4",
            clips_dir / "other" / "kinetics_flipping_pancake__decord_examples.mkv",
            clips_dir / "other" / "ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi"]
    res = runner.invoke(app, ["predict", *map(str, good)])
    assert res.exit_code == 0, res.output
    assert res.output.count("body group") == 3
    bad = clips_dir / "edge_cases" / "SYNTHETIC_corrupted_after_28frames__decord.mp4"
    res = runner.invoke(app, ["predict", str(bad)])
    assert res.exit_code != 0
    assert "SYNTHETIC_corrupted_after_28frames" in res.output and "Traceback" not in res.output


def test_predict_non_video(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained)
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video")
    res = runner.invoke(app, ["predict", str(fake)])
    assert res.exit_code != 0 and "notes.mp4" in res.output


def test_submission_zip(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr.config import PRESETS
    from piumr.data.splits import resolve_root

    monkeypatch.chdir(trained)
    root = resolve_root(PRESETS["tiny"].data)
    out = tmp_path / "submission.zip"
    res = runner.invoke(app, ["predict", "--submission", str(out), "--data", str(root)])
    assert res.exit_code == 0, res.output
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["prediction.csv"]
        lines = zf.read("prediction.csv").decode().splitlines()
    assert lines[0] == ("vid,action_pred_1,action_pred_2,action_pred_3,action_pred_4,action_pred_5,"
                        "body_pred_1,body_pred_2,body_pred_3,body_pred_4,body_pred_5")
    n_test = len((root / "test_list_videos.txt").read_text().split())
    assert len(lines) - 1 == n_test // 2
    assert lines[1].split(",")[0].endswith(".mp4")


def test_bad_data_leaves_no_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(tmp_path / "nowhere"), "--quiet"])
    assert res.exit_code == 2
    assert not (tmp_path / "artifacts").exists()


def test_checkpoint_records_its_training_data(trained: Path) -> None:
    from piumr.checkpoint import read_checkpoint
    from piumr.config import PRESETS
    from piumr.data.splits import load_split

    best = next((trained / "artifacts" / "runs").rglob("best.safetensors"))
    seen = read_checkpoint(best).meta["trained_on"]
    classes = sorted({r.action for r in load_split(PRESETS["tiny"].data, "train")})
    assert seen["kind"] == "synthetic" and seen["classes"] == classes and seen["head"] == 52
    assert len(classes) < 52


def test_predict_warns_once_about_a_synthetic_subset(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A synthetic, class-subset checkpoint: one warning line, and the table names the classes it learnt."""
    from piumr.config import PRESETS
    from piumr.data.ma52 import ACTION_NAMES
    from piumr.data.splits import load_split

    monkeypatch.chdir(trained)
    res = runner.invoke(app, ["predict", str(_some_synth_clip())])
    assert res.exit_code == 0, res.output
    warnings = [ln for ln in res.output.splitlines() if ln.startswith("warning:")]
    classes = sorted({r.action for r in load_split(PRESETS["tiny"].data, "train")})
    assert len(warnings) == 1
    assert f"synthetic data ({len(classes)} of the 52 MA-52 classes)" in warnings[0]
    caption = res.output[res.output.index("checkpoint trained on synthetic data:"):]
    assert all(f"{c} {ACTION_NAMES[c]}" in caption for c in classes)


def test_predict_does_not_warn_for_all_52_classes() -> None:
    from piumr.predict import trained_on

    full = {"trained_on": {"kind": "MA-52", "classes": list(range(52))}}
    assert trained_on(full, Path("best.safetensors")).warning is None
    old = trained_on({}, Path("old.safetensors"))
    assert old.warning is not None and "old.safetensors" in old.warning and old.classes is None


def test_train_options_are_declared_once() -> None:
    """Every config-setting option of ``piumr train`` is one entry of ``TRAIN_OPTIONS`` (which names a real
    parameter and a real config key), and the tables derived from it agree with the library's rules."""
    import inspect

    from piumr.config import PRESETS, with_overrides
    from piumr.run_folder import AMENDABLE
    from piumr_cli.flags import FLAGS, RESUME_OPTIONS, TRAIN_OPTIONS
    from piumr_cli.train import train

    params = set(inspect.signature(train).parameters)
    declared = {o.param for o in TRAIN_OPTIONS}
    # the options that set no config key and stay usable with --resume
    assert params - declared == {"out_dir", "resume", "checkpoint_every_min", "device", "quiet", "threads", "on_stall"}
    assert declared <= params
    base = PRESETS["tiny"]
    for o in TRAIN_OPTIONS:
        if o.key is not None:  # a key the config has: setting it to its own value validates
            section, *rest = o.key.split(".")
            value = getattr(base, section)
            for part in rest:
                value = getattr(value, part)
            assert with_overrides(base, {o.key: value}) is not None, o.key
            assert FLAGS[o.key] == o.flag
    # --speed sets the whole speed section (several levers): each of its fields is an amendment
    expanded = {k for v in RESUME_OPTIONS.values() for k in (
        [f"speed.{f}" for f in type(base.speed).model_fields] if v == "speed" else [v])}
    assert expanded <= set(AMENDABLE)
    assert RESUME_OPTIONS == {"--epochs": "optim.epochs", "--lr": "optim.lr", "--milestones": "optim.milestones",
                              "--workers": "data.num_workers", "--speed": "speed",
                              "--compile/--no-compile": "speed.compile", "--fast-depthwise": "speed.depthwise",
                              "--tensorboard": "tensorboard"}


@pytest.mark.parametrize("args, message", [
    (["--no-tfam", "--fusion", "mean", "--no-tfam-temporal"],
     "--no-tfam cannot be combined with --tfam-temporal/--no-tfam-temporal, --fusion"),
    (["--no-girl", "--girl-var-grad"], "--no-girl cannot be combined with --girl-var-grad"),
])
def test_conflicting_options_are_one_line(args: list[str], message: str) -> None:
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", "synth", *args])
    assert res.exit_code == 2 and message in res.output, res.output
