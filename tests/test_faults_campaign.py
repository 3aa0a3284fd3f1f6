"""Fault campaign, cases 7-13: sizes estimated before work, values that pydantic would quietly convert, inputs a
folder holds, run names that are paths, user files that piumr did not write, flags checked before work, and
one-line errors that name the file or flag. Each case: one line naming the flag or file, a non-zero exit, and
nothing a user made is changed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from conftest import VideoWriter, write_video
from piumr.checkpoint import read_checkpoint, save_checkpoint
from piumr.config import PRESETS, with_overrides
from piumr.data import DatasetError, read_split
from piumr.data.ma52 import ACTION_TO_BODY
from piumr.data.manifest import read_manifest
from piumr.model import PIUmrNet
from piumr_cli import options as options_module
from piumr_cli.flags import parse_set
from piumr_cli.main import app

runner = CliRunner()
TRAIN = ["train", "--preset", "tiny", "--data", "synth", "--epochs", "1", "--workers", "0", "--quiet"]


def invoke(*args: object) -> Result:
    """Run the CLI; a crash (an exception other than the exit) or a traceback fails the test."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output, res.output
    return res


def one_error(res: Result, *names: object) -> str:
    """The only line of a refused command: ``error: ...`` naming each of ``names``; exit 2."""
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert all(str(n) in lines[0] for n in names), res.output
    return lines[0]


def before_torch(argv: list[str], cwd: Path) -> tuple[str, str]:
    """Run the CLI in a fresh interpreter: (its stderr, 'torch imported'/'torch not imported' and the exit)."""
    code = ("import sys\nfrom piumr_cli.main import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit as e:\n    code = e.code\n"
            "print('torch imported' if 'torch' in sys.modules else 'torch not imported', code)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    return res.stderr, res.stdout.strip()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny checkpoint (52 outputs, trained on synthetic data)."""
    folder = tmp_path_factory.mktemp("ckpt")
    cfg = PRESETS["tiny"]
    torch.manual_seed(0)
    return save_checkpoint(folder / "best.safetensors", PIUmrNet(cfg.model).eval(), cfg, epoch=0, step=0,
                           trained_on={"kind": "synthetic", "root": "synth", "split": "official", "fold": 0,
                                       "classes": list(range(52)), "head": 52})


# ----------------------------------------------------------------------------- 7: synth estimates its size


def test_synth_refuses_a_set_over_the_budget_naming_the_flags(tmp_path: Path) -> None:
    out = tmp_path / "s"
    res = invoke("synth", "--out", out, "--persons", "1000", "--clips-per-person", "1000", "--frames", "1024",
                 "--size", "1024")
    line = one_error(res, "--persons 1000", "--clips-per-person 1000", "--frames 1024", "--size 1024", "--force")
    assert "TB on disk" in line and "(estimate)" in line
    assert not out.exists()


def test_synth_force_generates_over_the_budget_and_the_estimate_is_near(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    small = ["--preset", "tiny", "--persons", "2", "--clips-per-person", "3", "--frames", "16", "--size", "96",
             "--workers", "1"]
    monkeypatch.setattr(options_module, "SYNTH_BUDGET_BYTES", 1000.0)
    one_error(invoke("synth", "--out", tmp_path / "refused", *small), "--size 96", "--force")
    assert not (tmp_path / "refused").exists()
    res = invoke("synth", "--out", tmp_path / "forced", *small, "--force")
    assert res.exit_code == 0, res.output
    clips = [p for p in (tmp_path / "forced").glob("*/*.mp4")]
    assert len(clips) == 6
    est = options_module.synth_estimate(PRESETS["tiny"].data.model_copy(update={
        "synth_persons": 2, "synth_clips_per_person": 3, "synth_frames": 16, "synth_size": 96}), 1)
    assert 0.5 < est.bytes / sum(p.stat().st_size for p in clips) < 3


# ----------------------------------------------------------------------------- 8 and 10: --set


@pytest.mark.parametrize("setting", ["optim.batch_size=true", "optim.lr=false", "max_steps_per_epoch=true",
                                     "model.tfam.sinkhorn_iters=true"])
def test_set_refuses_a_boolean_for_a_number(setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    one_error(invoke(*TRAIN, "--set", setting), "--set", setting.split("=")[0], "not a true/false setting")
    assert list(tmp_path.iterdir()) == []


def test_set_keeps_booleans_numbers_and_plain_names() -> None:
    assert parse_set(["girl.exclude_self=false", "optim.batch_size=4", "optim.grad_clip=1.5", "name=my-run_2.b"]) == {
        "girl.exclude_self": False, "optim.batch_size": 4, "optim.grad_clip": 1.5, "name": "my-run_2.b"}
    assert parse_set(["name=5"]) == {"name": "5"}  # a name is text, never read as JSON


@pytest.mark.parametrize("name", ["../../evil", "a/b", "..", ".hidden", "-x", "", "/abs", "a b", '"x"'])
def test_set_name_must_be_a_plain_folder_name(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    one_error(invoke(*TRAIN, "--set", f"name={name}"), "--set", "name", "folder name")
    assert list(tmp_path.rglob("*")) == [tmp_path / "a", work]  # no run anywhere, inside or outside


# ----------------------------------------------------------------------------- 9: predict FOLDER


def test_predict_folder_names_and_counts_each_entry_it_skips(ckpt: Path, tmp_path: Path,
                                                             make_video: VideoWriter) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    make_video(folder / "good.mp4", 8)
    (folder / "dir.mp4").mkdir()
    (folder / "zero.mp4").symlink_to("/dev/zero")
    (folder / "dangling.mp4").symlink_to(folder / "missing.mp4")
    (folder / "loop.mp4").symlink_to(folder / "loop.mp4")
    (folder / "notes.txt").write_text("not a video")
    res = invoke("predict", folder, "--checkpoint", ckpt, "--json")
    assert res.exit_code == 1, res.output
    rows = [json.loads(line) for line in res.output.splitlines() if line.startswith("{")]
    errors = {Path(r["file"]).name: r["error"] for r in rows if r["error"]}
    assert set(errors) == {"dir.mp4", "zero.mp4", "dangling.mp4", "loop.mp4"}, res.output
    assert "a folder" in errors["dir.mp4"] and "device" in errors["zero.mp4"]
    assert "broken symbolic link" in errors["dangling.mp4"] and "loop" in errors["loop.mp4"]
    assert [Path(r["file"]).name for r in rows if not r["error"]] == ["good.mp4"]
    assert "4 of 5 input(s) failed" in res.output


# ----------------------------------------------------------------------------- 11: files piumr did not write


def _ma52_root(tmp_path: Path, labels: tuple[int, ...] = (0,)) -> Path:
    """An MA-52-format root whose test and val lists hold one real clip per label."""
    root = tmp_path / "ma52"
    for split in ("val", "test"):
        (root / split).mkdir(parents=True)
        rows = []
        for i, lab in enumerate(labels):
            name = f"0001_{ACTION_TO_BODY[lab]:02d}_{i + 1:04d}.mp4" if split == "val" else f"test{i}.mp4"
            write_video(root / split / name, 8)
            rows.append(f"{name} {lab}" if split == "val" else name)
        (root / f"{split}_list_videos.txt").write_text("\n".join(rows) + "\n")
    return root


@pytest.mark.parametrize("kind", ["text", "other zip", "link"])
def test_submission_never_replaces_a_file_piumr_did_not_write(kind: str, ckpt: Path, tmp_path: Path) -> None:
    user = tmp_path / "user.zip"
    if kind == "text":
        user.write_text("my notes")
    elif kind == "other zip":
        with zipfile.ZipFile(user, "w") as zf:
            zf.writestr("prediction.csv", "mine")
            zf.writestr("thesis.tex", "mine too")
    else:
        (tmp_path / "mine.zip").write_text("my notes")
        user.symlink_to(tmp_path / "mine.zip")
    before = snapshot(tmp_path)
    res = invoke("predict", "--checkpoint", ckpt, "--submission", user, "--data", _ma52_root(tmp_path))
    one_error(res, f"--submission {user}")
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("ma52")} == before
    assert user.is_symlink() == (kind == "link")


def test_submission_replaces_its_own_zip(tmp_path: Path) -> None:
    own = tmp_path / "sub.zip"
    with zipfile.ZipFile(own, "w") as zf:
        zf.writestr("prediction.csv", "a,b\n")
    options_module.check_predict(None, own, _ma52_root(tmp_path))  # no refusal


@pytest.mark.parametrize(("name", "text"), [("metrics.json", '{"my": "results"}\n'), ("metrics.json", "[1, 2]\n"),
                                            ("predictions.csv", "clip,my guess\n")])
def test_evaluate_never_replaces_a_file_it_did_not_write(name: str, text: str, ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / name).write_text(text)
    res = invoke("evaluate", "--checkpoint", ckpt, "--data", "synth", "--out", out)
    one_error(res, "--out", out / name, "not a")
    assert snapshot(out) == {name: text.encode()}


def test_evaluate_marks_its_metrics_and_replaces_only_those(ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    for _ in range(2):  # the second run replaces the files the first one wrote
        res = invoke("evaluate", "--checkpoint", ckpt, "--data", "synth", "--out", out)
        assert res.exit_code == 0, res.output
        assert json.loads((out / "metrics.json").read_text())["written_by"] == "piumr"
    legacy = {"split": "val", "views": 1, "clips": 3, "listed": 3, "skipped": []}  # written before the marker
    (out / "metrics.json").write_text(json.dumps(legacy))
    assert invoke("evaluate", "--checkpoint", ckpt, "--data", "synth", "--out", out).exit_code == 0


# ----------------------------------------------------------------------------- 12: shift-suite --epochs


@pytest.mark.parametrize("epochs", ["0", "-3", "1000000"])
def test_shift_suite_epochs_is_checked_before_torch(epochs: str, tmp_path: Path) -> None:
    stderr, stdout = before_torch(["reproduce", "shift-suite", "--epochs", epochs, "--out", "suite"], tmp_path)
    assert f"--epochs {epochs}" in stderr and len([ln for ln in stderr.splitlines() if ln.strip()]) == 1, stderr
    assert stdout.split() == ["torch", "not", "imported", "2"], stdout + stderr
    assert not (tmp_path / "suite").exists()


# ----------------------------------------------------------------------------- 13: one-liners


def test_submission_with_a_manifest_says_so(ckpt: Path, tmp_path: Path) -> None:
    (tmp_path / "classes.csv").write_text("label,name\n0,a\n1,b\n")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\nx.mp4,0\n")
    line = one_error(invoke("predict", "--checkpoint", ckpt, "--submission", tmp_path / "s.zip", "--data", manifest),
                     "--submission", f"--data {manifest}", "manifest")
    assert "needs --data" not in line
    assert not (tmp_path / "s.zip").exists()


def test_evaluate_labels_beyond_the_model_name_the_data(tmp_path: Path) -> None:
    cfg = with_overrides(PRESETS["tiny"], {"model.num_classes": 14})
    ck = save_checkpoint(tmp_path / "k14.safetensors", PIUmrNet(cfg.model).eval(), cfg, epoch=0, step=0)
    root = _ma52_root(tmp_path, labels=(0, 50))
    line = one_error(invoke("evaluate", "--checkpoint", ck, "--data", root, "--out", tmp_path / "ev"),
                     root, "val list", "0001_06_0002.mp4 50", "14 classes", "--data")
    assert "must lie in" not in line
    assert not (tmp_path / "ev").exists()


def test_a_suite_checkpoint_records_what_it_was_trained_on(tmp_path: Path) -> None:
    from piumr.data.synth.shift import ClipSet, ShiftSizes
    from piumr.predict import trained_on
    from piumr.shift.train import arm_config, suite_config, train_and_score

    sizes = ShiftSizes(frames=4, size=32)
    cfg = arm_config(suite_config(sizes, epochs=1, batch=2), "baseline", 0)
    rng = np.random.default_rng(0)
    clips = ClipSet(rng.integers(0, 255, (4, 4, 32, 32, 3), dtype=np.uint8), np.array([0, 3, 0, 3]), np.arange(4))
    train_and_score(cfg, {"train": clips, "seen": clips}, save_to=tmp_path / "seed0.safetensors")
    meta = read_checkpoint(tmp_path / "seed0.safetensors").meta
    assert meta["trained_on"]["kind"] == "synthetic" and meta["trained_on"]["classes"] == [0, 3]
    seen = trained_on(meta, tmp_path / "seed0.safetensors")
    assert seen.classes == (0, 3) and seen.warning is not None and "older piumr" not in seen.warning
    assert "synthetic" in seen.warning


def test_a_run_folder_as_checkpoint(ckpt: Path, tmp_path: Path, make_video: VideoWriter) -> None:
    clip = make_video(tmp_path / "c.mp4", 8)
    res = invoke("predict", clip, "--checkpoint", ckpt.parent)
    assert res.exit_code == 0 and f"using the run folder's best checkpoint: {ckpt}" in res.output, res.output
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    one_error(invoke("predict", clip, "--checkpoint", run), f"--checkpoint {run}", "run folder",
              "best.safetensors", "last.safetensors")
    (run / "last.safetensors").write_bytes(b"weights")
    one_error(invoke("evaluate", "--checkpoint", run), f"--checkpoint {run}", "without best.safetensors",
              run / "last.safetensors")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_error(invoke("evaluate", "--checkpoint", empty), f"--checkpoint {empty}", "a folder without best.safetensors")


def test_a_list_or_manifest_row_that_is_a_folder_says_so(tmp_path: Path) -> None:
    (tmp_path / "train" / "0001_00_0001.mp4").mkdir(parents=True)
    (tmp_path / "train_list_videos.txt").write_text("0001_00_0001.mp4 0\n")
    with pytest.raises(DatasetError, match=r"train_list_videos.txt:1: .*0001_00_0001.mp4: a folder, not a clip file"):
        read_split(tmp_path, "train")
    (tmp_path / "classes.csv").write_text("label,name\n0,a\n1,b\n")
    (tmp_path / "manifest.csv").write_text("path,label\ntrain/0001_00_0001.mp4,0\n")
    with pytest.raises(DatasetError, match=r"manifest.csv:2: .*0001_00_0001.mp4: a folder, not a clip file"):
        read_manifest(tmp_path / "manifest.csv")


def test_info_refuses_a_batch_over_its_memory_budget(tmp_path: Path) -> None:
    t = time.perf_counter()
    line = one_error(invoke("info", "--preset", "tiny", "--batch", "4096"), "--batch 4096", "GiB", "budget")
    assert time.perf_counter() - t < 20  # refused before any clip is computed
    fits = int(line.rsplit("--batch ", 1)[1].split()[0])
    from piumr_cli.errors import activation_bytes
    from piumr_cli.main import INFO_MEMORY_BUDGET

    assert activation_bytes(PRESETS["tiny"].model, fits) <= INFO_MEMORY_BUDGET < activation_bytes(
        PRESETS["tiny"].model, fits + 1)
    # measured: 4096 tiny clips held 4.8 GiB; the estimate is within a factor of 2
    assert 2.4 * 2**30 < activation_bytes(PRESETS["tiny"].model, 4096) < 9.6 * 2**30


@pytest.mark.parametrize(("argv", "says"), [
    (["synth", "--out", "s", "--frames", "2"], "--frames 2"),
    (["synth", "--out", "s", "--size", "100000"], "--size 100000"),
    (["synth", "--out", "s", "--threads", "0"], "--threads must be >= 1"),
    (["info", "--preset", "tiny", "--threads", "0"], "--threads must be >= 1"),
])
def test_synth_and_info_ranges_come_before_torch(argv: list[str], says: str, tmp_path: Path) -> None:
    stderr, stdout = before_torch(argv, tmp_path)
    assert says in stderr and len([ln for ln in stderr.splitlines() if ln.strip()]) == 1, stderr
    assert stdout.split() == ["torch", "not", "imported", "2"], stdout + stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_shift_suite_says_what_sigterm_stopped(jobs: str, tmp_path: Path) -> None:
    out = tmp_path / "suite"
    cmd = [sys.executable, "-m", "piumr", "reproduce", "shift-suite", "--seeds", "0", "--factors", "tempo",
           "--arms", "baseline,tfam", "--epochs", "1", "--jobs", jobs, "--threads", "1", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not (out / "suite.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # training
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "shift suite stopped by SIGTERM after 0 of 2 trainings" in lines[0], stderr
    assert "run the same command again to resume" in lines[0] and "Traceback" not in stderr
