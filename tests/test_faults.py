"""Fault injection: every kind of bad input gives one clear line naming the flag, file or folder and a
non-zero exit; never a traceback, an out-of-memory allocation, or a result that is silently wrong.

Classes covered here: option bounds and conflicting options (named by the flag typed), list-file
labels, the decode memory budget, ``prepare`` reruns (stale sources, a second root, failed clips,
absurd short sides), ``predict`` (missing paths, empty folders, JSON lines, non-finite scores), run
folders (non-empty ``--out``, ``--fresh``, the lock and two trainings at once, finished runs, resume
overrides and amendments, log rows after the checkpoint, mid-epoch crashes and kill -9 followed by
``--resume``, a moved ``--pretrained`` file), environment faults (unwritable or vanished ``--out``, a
failed checkpoint write, divergence) and validation accounting (broken clips named, a shrinking set).
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from rich.console import Console
from typer.testing import CliRunner, Result

from piumr import checkpoint as checkpoint_module
from piumr.checkpoint import read_checkpoint, save_checkpoint
from piumr.config import PRESETS, with_overrides
from piumr.data import DatasetError, read_split
from piumr.data import video as video_module
from piumr.data.prepare import PreparedCache, prepare_dataset
from piumr.data.splits import resolve_root
from piumr.data.video import DecodeBudgetError, read_frames
from piumr.errors import RunError
from piumr.losses import PIUmrLoss
from piumr.model import PIUmrNet
from piumr.run_folder import RunLock
from piumr.train import train
from piumr_cli.main import app

runner = CliRunner()
TRAIN = ["train", "--preset", "tiny", "--data", "synth", "--epochs", "1", "--workers", "0", "--quiet"]


def invoke(*args: object) -> Result:
    """Run the CLI; a crash (an exception other than the exit) or a traceback fails the test."""
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    assert "Traceback" not in res.output, res.output
    return res


def write_clip(path: Path, frames: int = 8, width: int = 64, height: int = 48) -> Path:
    """An H.264 clip whose frame i is grey 20 + 10 i."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            img = np.full((height, width, 3), 20 + 10 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def strict_json(line: str) -> Any:
    """``json.loads`` that rejects NaN and infinity (which are not JSON)."""
    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")
    return json.loads(line, parse_constant=no_constant)


# ----------------------------------------------------------------------------- option bounds


@pytest.mark.parametrize(("args", "flag"), [
    (["--grad-clip", "-1"], "--grad-clip"),
    (["--grad-clip", "0"], "--grad-clip"),
    (["--max-steps-per-epoch", "0"], "--max-steps-per-epoch"),
    (["--frames", "100000"], "--frames"),
    (["--frames", "0"], "--frames"),
    (["--crop", "100000"], "--crop"),
    (["--crop", "64"], "--crop"),  # larger than the tiny preset's short side 36
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--workers", "-1"], "--workers"),
    (["--eval-every", "0"], "--eval-every"),
    (["--seed", "-1"], "--seed"),
    (["--split", "cross-subject", "--fold", "99"], "--fold"),
    (["--fold", "1"], "--fold"),  # the official split has no folds: the option would be ignored
    (["--on-error", "ignore"], "--on-error"),
])
def test_train_option_out_of_range_names_the_flag(args: list[str], flag: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = invoke(*TRAIN, *args)
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}"), res.output
    assert "optim." not in res.output and "model." not in res.output and "data." not in res.output
    assert not (tmp_path / "artifacts").exists()  # refused before anything was written


@pytest.mark.parametrize(("removed", "other"), [
    ("--no-tfam", ["--tfam-frequency"]),
    ("--no-tfam", ["--no-tfam-temporal"]),
    ("--no-tfam", ["--fusion", "mean"]),
    ("--no-girl", ["--girl-var-grad"]),
    ("--no-girl", ["--girl-detach-weights"]),
])
def test_options_of_a_removed_part_are_refused(removed: str, other: list[str], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = invoke(*TRAIN, removed, *other)
    assert res.exit_code == 2
    assert res.output.count("\n") == 1 and removed in res.output and other[0].lstrip("-").split("-")[-1] in res.output
    assert not (tmp_path / "artifacts").exists()


@pytest.mark.parametrize("args", [
    ["predict", "x.mp4", "--views", "0"],
    ["evaluate", "--views", "1000"],
    ["evaluate", "--batch-size", "0"],
    ["prepare", "--data", ".", "--out", "c", "--short-side", "0"],
    ["prepare", "--data", ".", "--out", "c", "--short-side", "100000"],
    ["prepare", "--data", ".", "--out", "c", "--workers", "-1"],
    ["synth", "--out", "s", "--workers", "0"],
    ["info", "--batch", "0"],
    ["bench", "loader", "--frames", "100000"],
    ["bench", "train", "--iters", "0"],
])
def test_command_options_out_of_range_name_the_flag(args: list[str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    flag = next(a for a in reversed(args) if a.startswith("--"))
    res = invoke(*args)
    assert res.exit_code == 2 and f"'{flag}'" in res.output, res.output
    assert list(tmp_path.iterdir()) == []


def test_synth_option_out_of_range_names_the_flag(tmp_path: Path) -> None:
    res = invoke("synth", "--out", tmp_path / "s", "--frames", "2")
    assert res.exit_code == 2 and res.output.startswith("error: --frames 2:"), res.output
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("label", ["٣", "３", "+3", "1_0", "0x1", "3.0"])
def test_labels_are_ascii_integers_only(label: str, tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train_list_videos.txt").write_text(f"0001_00_0001.mp4 0\n0001_00_0002.mp4 {label}\n",
                                                    encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train_list_videos.txt:2: label .* is not an integer"):
        read_split(tmp_path, "train", check_files=False)


def test_participant_digits_are_ascii(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train_list_videos.txt").write_text("٠٠٠١_00_0001.mp4 0\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train_list_videos.txt:1: .*PPPP_BB_NNNN"):
        read_split(tmp_path, "train", check_files=False)


# ----------------------------------------------------------------------------- decode memory budget


@pytest.fixture()
def no_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any frame is converted to RGB or a decord reader is opened: a refusal over
    budget must come before the allocation."""
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("frames were decoded before the budget check")
    monkeypatch.setattr(video_module, "_frame_to_tensor", boom)
    monkeypatch.setattr(video_module, "_open_decord", boom)


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_extreme_aspect_clip_is_refused_before_decoding(backend: str, tmp_path: Path, no_conversion: None) -> None:
    clip = write_clip(tmp_path / "thin.mp4", frames=4, width=2000, height=2)
    # short side 2 -> 256 makes frames 256 x 256000: 16 of them would be 2.9 GiB
    with pytest.raises(DecodeBudgetError, match=r"thin.mp4: 16 frames of 256000x256 pixels .* 2\.93 GiB"):
        read_frames(clip, [0, 1, 2, 3] * 4, backend=backend, short_side=256)  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_too_many_frames_are_refused_before_decoding(backend: str, tmp_path: Path, no_conversion: None) -> None:
    clip = write_clip(tmp_path / "small.mp4")
    with pytest.raises(DecodeBudgetError, match="small.mp4: 100000 frames"):
        read_frames(clip, [0] * 100_000, backend=backend, short_side=256)  # type: ignore[arg-type]


def test_budget_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_clip(tmp_path / "small.mp4")  # 16 frames at short side 256: 256 x 341 x 3 x 16 = 4.2 MB
    assert read_frames(clip, range(8), backend="pyav", short_side=256).shape == (8, 256, 341, 3)
    from piumr import settings

    monkeypatch.setattr(settings, "_active", settings.RuntimeSettings.from_env({"PIUMR_DECODE_BUDGET_MIB": "1"}))
    with pytest.raises(DecodeBudgetError, match="PIUMR_DECODE_BUDGET_MIB"):
        read_frames(clip, range(8), backend="pyav", short_side=256)
    monkeypatch.setenv("PIUMR_DECODE_BUDGET_MIB", "lots")  # read at the edge: a command names the variable
    res = invoke("version")
    assert res.exit_code == 2 and "PIUMR_DECODE_BUDGET_MIB='lots'" in res.output


# ----------------------------------------------------------------------------- prepare


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    """Raw MA-52-like root: train 2 good clips + 1 broken, val 1 clip."""
    root = tmp_path / "raw"
    write_clip(root / "train" / "0001_00_0001.mp4", frames=6)
    write_clip(root / "train" / "0001_01_0002.mp4", frames=5)
    (root / "train" / "0002_05_0001.mp4").write_text("not a video")
    write_clip(root / "val" / "0003_02_0003.mp4", frames=5)
    (root / "train_list_videos.txt").write_text("0001_00_0001.mp4 0\r\n0001_01_0002.mp4 9\r\n0002_05_0001.mp4 40\r\n")
    (root / "val_list_videos.txt").write_text("0003_02_0003.mp4 12\r\n")
    return root


def test_prepare_redoes_a_clip_whose_source_changed(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    first = prepare_dataset(raw, out, splits=("train", "val"), short_side=40, workers=0, progress=False)
    assert (first.done, first.skipped, first.num_failed) == (3, 0, 1)
    again = prepare_dataset(raw, out, splits=("train", "val"), short_side=40, workers=0, progress=False)
    assert (again.done, again.skipped) == (0, 3)
    write_clip(raw / "train" / "0001_00_0001.mp4", frames=9)  # same name, new content
    third = prepare_dataset(raw, out, splits=("train", "val"), short_side=40, workers=0, progress=False)
    assert (third.done, third.skipped) == (1, 2)
    cache = PreparedCache(out)
    assert cache.num_frames("0001_00_0001.mp4") == 9
    assert cache.clips["train/0001_00_0001.mp4"]["source"]["size"] == (raw / "train" / "0001_00_0001.mp4").stat().st_size


def test_prepare_redoes_entries_without_a_recorded_source(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, splits=("val",), short_side=40, workers=0, progress=False)
    manifest = json.loads((out / "piumr_manifest.json").read_text())
    del manifest["clips"]["val/0003_02_0003.mp4"]["source"]  # as written before sources were recorded
    (out / "piumr_manifest.json").write_text(json.dumps(manifest))
    rep = prepare_dataset(raw, out, splits=("val",), short_side=40, workers=0, progress=False)
    assert (rep.done, rep.skipped) == (1, 0)


def test_prepare_refuses_a_second_root(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    other = tmp_path / "other"
    shutil.copytree(raw, other)
    res = invoke("prepare", "--data", raw, "--out", out, "--splits", "val", "--workers", "0")
    assert res.exit_code == 0, res.output
    before = (out / "piumr_manifest.json").read_text()
    res = invoke("prepare", "--data", other, "--out", out, "--splits", "val", "--workers", "0")
    assert res.exit_code == 2 and str(raw) in res.output and "another --out" in res.output
    assert (out / "piumr_manifest.json").read_text() == before


def test_prepare_exits_non_zero_when_clips_failed(raw: Path, tmp_path: Path) -> None:
    res = invoke("prepare", "--data", raw, "--out", tmp_path / "c1", "--splits", "train", "--workers", "0")
    assert res.exit_code == 1 and "0002_05_0001.mp4" in res.output and "1 clip(s) could not be converted" in res.output
    res = invoke("prepare", "--data", raw, "--out", tmp_path / "c2", "--splits", "train", "--workers", "0",
                 "--allow-failures")
    assert res.exit_code == 0 and "0002_05_0001.mp4" in res.output


def test_prepare_refuses_absurd_short_side(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="short_side 0"):
        prepare_dataset(raw, tmp_path / "c", short_side=0, progress=False)
    assert not (tmp_path / "c").exists()


def test_cache_read_over_budget_is_refused(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, splits=("val",), short_side=40, workers=0, progress=False)
    cache = PreparedCache(out)
    assert tuple(cache.read("0003_02_0003.mp4", [0, 4]).shape) == (2, 40, 53, 3)
    with pytest.raises(DecodeBudgetError, match="100000000 frames"):
        cache.read("0003_02_0003.mp4", [0] * 100_000_000)


# ----------------------------------------------------------------------------- predict


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(an untrained tiny checkpoint, the same with every weight NaN)."""
    folder = tmp_path_factory.mktemp("ckpt")
    cfg = PRESETS["tiny"]
    torch.manual_seed(0)
    net = PIUmrNet(cfg.model).eval()
    good = save_checkpoint(folder / "good.safetensors", net, cfg, epoch=0, step=0)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(math.nan)
    bad = save_checkpoint(folder / "nan.safetensors", net, cfg, epoch=0, step=0)
    return good, bad


def test_predict_empty_folder_is_one_line_naming_it(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    empty = tmp_path / "nothing here"
    empty.mkdir()
    (empty / "notes.txt").write_text("no clips")
    res = invoke("predict", empty, "--checkpoint", checkpoints[0])
    assert res.exit_code == 2, res.output
    assert str(empty) in res.output and "no video files" in res.output and res.stdout == ""
    assert all(line.startswith("error:") for line in res.output.strip().splitlines())


def test_predict_json_lines_with_good_and_bad_inputs(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    good = write_clip(tmp_path / "a.mp4")
    folder = tmp_path / "more"
    write_clip(folder / "b.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    missing = tmp_path / "missing.mp4"
    res = invoke("predict", "--json", "--checkpoint", checkpoints[0], missing, good, broken, folder)
    assert res.exit_code == 1, res.output  # some inputs failed; the good ones were predicted
    rows = [strict_json(line) for line in res.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["missing.mp4", "a.mp4", "broken.mp4", "b.mp4"]
    assert all(set(r) == {"file", "top5", "body", "error"} for r in rows)
    for r in rows[1::2]:  # the good clips
        assert r["error"] is None and len(r["top5"]) == 5 and r["body"]["name"]
        assert all(0.0 <= t["prob"] <= 1.0 for t in r["top5"])
    for r in rows[0::2]:  # the failures name their file
        assert r["top5"] is None and r["body"] is None and Path(r["file"]).name in r["error"]
    assert "2 of 4 input(s) failed" in res.output


def test_predict_non_finite_scores_are_an_error_not_nan(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.mp4")
    res = invoke("predict", "--json", "--checkpoint", checkpoints[1], clip)
    assert res.exit_code == 1, res.output
    (row,) = [strict_json(line) for line in res.stdout.splitlines()]
    assert row["top5"] is None and "not finite" in row["error"] and "a.mp4" in row["error"]
    assert "NaN" not in res.stdout.replace("(NaN or inf)", "")


def test_predict_table_keeps_going_past_a_bad_path(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "a.mp4")
    res = invoke("predict", "--checkpoint", checkpoints[0], tmp_path / "gone.mp4", clip)
    assert res.exit_code == 1
    assert "a.mp4: body group" in res.stdout and "gone.mp4: no such file or folder" in res.output


def test_predict_clip_over_the_memory_budget(checkpoints: tuple[Path, Path], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    thin = write_clip(tmp_path / "thin.mp4", frames=4, width=2000, height=2)
    # the tiny preset decodes 4 frames at short side 36: 36 x 36000 pixels, 15.6 MB; cap the budget below that
    monkeypatch.setenv("PIUMR_DECODE_BUDGET_MIB", "8")
    res = invoke("predict", "--json", "--checkpoint", checkpoints[0], thin)
    assert res.exit_code == 1
    (row,) = [strict_json(line) for line in res.stdout.splitlines()]
    assert "thin.mp4" in row["error"] and "decode budget" in row["error"]


# ----------------------------------------------------------------------------- run folders

RUN = [*TRAIN, "--max-steps-per-epoch", "1", "--checkpoint-every-min", "0"]
FAST = {"optim.epochs": 2, "data.num_workers": 0}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (recursively) by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path).model_state


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch tiny run (copy it before changing it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    res = invoke(*RUN, "--out", run)
    assert res.exit_code == 0, res.output
    return run


@pytest.fixture()
def run_copy(finished_run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(finished_run, dest)
    return dest


def test_new_run_into_a_non_empty_folder_is_refused_and_fresh_moves_it_aside(run_copy: Path) -> None:
    before = snapshot(run_copy)
    res = invoke(*RUN, "--out", run_copy)
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {run_copy} already holds a run") and "--resume" in res.output
    assert "--fresh" in res.output and snapshot(run_copy) == before
    res = invoke(*RUN, "--out", run_copy, "--fresh", "--seed", "1")
    assert res.exit_code == 0, res.output
    (old,) = run_copy.parent.glob("run.old-*")
    assert snapshot(old) == before  # the old run is kept whole
    assert read_checkpoint(run_copy / "last.safetensors").config.seed == 1
    assert not (run_copy / ".lock").exists() and not (old / ".lock").exists()


def test_resume_of_a_finished_run_says_so_and_changes_nothing(run_copy: Path) -> None:
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--quiet")
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "is a finished run (1 of 1 epochs" in text and "nothing changed" in text
    assert snapshot(run_copy) == before


def test_resume_after_a_kill_before_the_summary_writes_only_the_summary(run_copy: Path) -> None:
    summary = json.loads((run_copy / "summary.json").read_text())
    (run_copy / "summary.json").unlink()  # killed after the last checkpoint, before the summary
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--quiet")
    assert res.exit_code == 0, res.output
    assert snapshot(run_copy).keys() - before.keys() == {"summary.json"}
    assert {k: v for k, v in snapshot(run_copy).items() if k != "summary.json"} == before
    again = json.loads((run_copy / "summary.json").read_text())
    assert all(again[k] == summary[k] for k in ("epochs", "steps", "best_f1_mean", "final_val", "val_clips"))


@pytest.mark.parametrize(("args", "flag"), [
    (["--batch-size", "4"], "--batch-size"),
    (["--preset", "smoke"], "--preset"),
    (["--data", "elsewhere"], "--data"),
    (["--frames", "8"], "--frames"),
    (["--pretrained", "k.pyth"], "--pretrained"),
    (["--no-girl"], "--no-girl"),
    (["--seed", "3"], "--seed"),
    (["--max-steps-per-epoch", "2"], "--max-steps-per-epoch"),
    (["--fresh"], "--fresh"),
])
def test_resume_refuses_options_that_would_change_the_run(args: list[str], flag: str, run_copy: Path) -> None:
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--epochs", "2", *args)
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {flag} cannot be used with --resume"), res.output
    assert snapshot(run_copy) == before


def test_resume_refuses_another_out_and_a_folder_without_a_run(run_copy: Path, tmp_path: Path) -> None:
    res = invoke("train", "--resume", run_copy, "--out", tmp_path / "other")
    assert res.exit_code == 2 and "--out" in res.output and "--resume" in res.output
    (tmp_path / "empty").mkdir()
    res = invoke("train", "--resume", tmp_path / "empty")
    assert res.exit_code == 2 and "no run to resume here" in res.output
    assert not (tmp_path / "other").exists()


def test_resume_amendments_are_applied_and_recorded(run_copy: Path) -> None:
    res = invoke("train", "--resume", run_copy, "--epochs", "3", "--lr", "0.001", "--milestones", "2", "--quiet")
    assert res.exit_code == 0, res.output
    ck = read_checkpoint(run_copy / "last.safetensors")
    assert ck.meta["epoch"] == 2 and ck.config.optim.epochs == 3
    assert ck.config.optim.lr == 0.001 and ck.config.optim.milestones == (2,)
    config = json.loads((run_copy / "config.json").read_text())
    assert config["optim"]["epochs"] == 3
    assert [(a["key"], a["old"], a["new"], a["epoch"]) for a in config["amendments"]] == [
        ("optim.epochs", 1, 3, 1), ("optim.lr", 0.003, 0.001, 1), ("optim.milestones", [1], [2], 1)]
    rows = [json.loads(line) for line in (run_copy / "log.jsonl").read_text().splitlines()]
    assert [r["key"] for r in rows if r["type"] == "amendment"] == ["optim.epochs", "optim.lr", "optim.milestones"]
    epochs = [r for r in rows if r["type"] == "epoch"]
    assert [(r["epoch"], r["lr"]) for r in epochs] == [(0, 0.003), (1, 0.001), (2, pytest.approx(0.0001))]
    # fewer epochs than the run has done: refused, naming the flag
    res = invoke("train", "--resume", run_copy, "--epochs", "2")
    assert res.exit_code == 2 and res.output.startswith("error: --epochs 2: the run has already done 3 epoch(s)")


def test_lock_refuses_a_second_process_and_takes_over_a_stale_one(run_copy: Path, tmp_path: Path) -> None:
    before = snapshot(run_copy)
    with RunLock(run_copy):  # another training holds the folder
        res = invoke("train", "--resume", run_copy, "--epochs", "2")
        assert res.exit_code == 2 and f"pid {os.getpid()}" in res.output and "another training" in res.output
    assert snapshot(run_copy) == before
    run = tmp_path / "new"
    with RunLock(run):
        res = invoke(*RUN, "--out", run)
        assert res.exit_code == 2 and "another training" in res.output
    # a lock file left by a killed process is no lock: the kernel released it with the process
    assert not run.exists()  # the refused run left nothing behind
    run.mkdir()
    (run / ".lock").write_text("pid 999999 on elsewhere\n")
    res = invoke(*RUN, "--out", run)
    assert res.exit_code == 0, res.output
    assert "no longer running (pid 999999 on elsewhere)" in res.output and not (run / ".lock").exists()


@pytest.mark.slow  # two processes that import torch: ~20 s on 2 busy cores
def test_two_trainings_into_one_folder_one_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "piumr", *RUN, "--out", str(run), "--device", "cpu"]
    procs = [subprocess.Popen([*cmd, "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    winner = next(s for p, s in zip(procs, (1, 2)) if p.returncode == 0)
    loser_err = next(o[1] for p, o in zip(procs, outs) if p.returncode == 2)
    assert "another training" in loser_err or "already holds a run" in loser_err, loser_err
    assert len(loser_err.strip().splitlines()) == 1
    # everything in the folder comes from the one run that was let in
    assert json.loads((run / "config.json").read_text())["seed"] == winner
    assert read_checkpoint(run / "last.safetensors").config.seed == winner
    assert read_checkpoint(run / "best.safetensors").config.seed == winner


def test_resume_drops_log_rows_written_after_the_checkpoint(tmp_path: Path) -> None:
    cfg = with_overrides(PRESETS["tiny"], FAST)
    train(cfg, tmp_path / "full", progress=False, log_every=1, checkpoint_every_min=0)
    run = tmp_path / "run"
    train(cfg, run, progress=False, log_every=1, checkpoint_every_min=0, stop_after_epoch=0)
    full_rows = (tmp_path / "full" / "log.jsonl").read_text().splitlines()
    # a run killed after logging epoch 1's first steps, one of them half-written, but before its checkpoint
    with open(run / "log.jsonl", "a") as fh:
        fh.write(full_rows[4] + "\n" + full_rows[5][:20])
    (run / ".last.safetensors.x1y2.tmp").write_bytes(b"a checkpoint write the kill interrupted")
    (run / ".tmpAb3dE9").write_bytes(b"a library's own temporary file (e.g. Rust's tempfile names)")
    res = train(cfg, run, resume=True, progress=False, log_every=1, checkpoint_every_min=0)
    assert res.steps == 6
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if r["type"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step twice
    assert next(r for r in rows if r["type"] == "resume")["dropped_rows"] == 2
    assert not list(run.glob(".*"))


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step and epoch rows without their timings (what must equal between runs)."""
    return [{k: v for k, v in r.items() if k != "clips_per_s"} for r in rows if r["type"] in ("step", "epoch")]


class Crash(Exception):
    """Stands in for a kill between two steps."""


@pytest.mark.parametrize("crash_at", [2, 5])
def test_crash_mid_epoch_then_resume_equals_uninterrupted(crash_at: int, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = with_overrides(PRESETS["tiny"], {"optim.epochs": 2, "data.num_workers": 0})  # 3 steps per epoch
    every_step = 1e-9  # minutes: a mid-epoch checkpoint after every step
    full = train(cfg, tmp_path / "full", progress=False, log_every=1, checkpoint_every_min=every_step)
    calls = {"n": 0}
    forward = PIUmrLoss.forward

    def crashing(self: PIUmrLoss, *args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == crash_at + 1:
            raise Crash
        return forward(self, *args)

    monkeypatch.setattr(PIUmrLoss, "forward", crashing)
    with pytest.raises(Crash):
        train(cfg, tmp_path / "run", progress=False, log_every=1, checkpoint_every_min=every_step)
    monkeypatch.setattr(PIUmrLoss, "forward", forward)
    ck = read_checkpoint(tmp_path / "run" / "last.safetensors")
    assert ck.meta["step"] == crash_at and ck.meta["extra"]["epoch_batches"] == crash_at % 3  # mid-epoch
    resumed = train(cfg, tmp_path / "run", resume=True, progress=False, log_every=1, checkpoint_every_min=every_step)
    assert resumed.final == full.final and resumed.best_metric == full.best_metric
    for name in ("last.safetensors", "best.safetensors"):
        assert same_weights(tmp_path / "full" / name, tmp_path / "run" / name), name
    logs = [[json.loads(line) for line in (tmp_path / r / "log.jsonl").read_text().splitlines()]
            for r in ("full", "run")]
    assert _strip(logs[1]) == _strip(logs[0])  # same losses at every step, and the same epoch means


@pytest.mark.slow
def test_kill_9_at_random_points_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    """Real processes killed with SIGKILL at random moments (mid-step, mid-checkpoint, mid-validation),
    each followed by ``--resume``: the result equals an uninterrupted run bit for bit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--quiet", "--device", "cpu", "--checkpoint-every-min", "0.0001"]  # a checkpoint after every step
    new = [sys.executable, "-m", "piumr", "train", "--preset", "tiny", "--data", "synth", "--epochs", "3",
           "--workers", "0", *common]
    ref = subprocess.run([*new, "--out", str(tmp_path / "full")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    run, rng, kills = tmp_path / "run", random.Random(7), 0
    for attempt in range(6):
        started = (run / "last.safetensors").is_file() or (run / "config.json").is_file()
        args = [sys.executable, "-m", "piumr", "train", "--resume", str(run), *common] if started else \
            [*new, "--out", str(run)]
        last = run / "last.safetensors"
        before = last.stat().st_mtime_ns if last.is_file() else None
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if attempt < 5:  # the last attempt runs to the end
            t_end = time.time() + 300
            while proc.poll() is None and time.time() < t_end and (
                    not last.is_file() or last.stat().st_mtime_ns == before):
                time.sleep(0.005)  # until this attempt has trained at least one step
            time.sleep(rng.uniform(0.0, 0.8))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        _, err = proc.communicate(timeout=600)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err[-2000:]
    assert proc.returncode == 0 and kills >= 1
    assert not list(run.glob(".*")), "a lock or temporary file was left behind"
    a, b = (json.loads((tmp_path / r / "summary.json").read_text()) for r in ("full", "run"))
    assert all(a[k] == b[k] for k in ("epochs", "steps", "best_f1_mean", "final_val", "skipped_clips"))
    assert json.loads((tmp_path / "full" / "metrics.json").read_text()) == \
        json.loads((run / "metrics.json").read_text())
    for name in ("last.safetensors", "best.safetensors"):
        assert same_weights(tmp_path / "full" / name, run / name), name
    logs = [[json.loads(line) for line in (tmp_path / r / "log.jsonl").read_text().splitlines()]
            for r in ("full", "run")]
    assert _strip(logs[1]) == _strip(logs[0])  # every epoch once, with the same losses
    # every kill was followed by a resume (but one that found the run finished)
    assert len([r for r in logs[1] if r["type"] == "resume"]) >= kills - 1
    print(f"{kills} kills; resumed at", [(r["epoch"], r["batch"]) for r in logs[1] if r["type"] == "resume"])


def test_pretrained_file_is_not_needed_to_resume(tmp_path: Path) -> None:
    k = tmp_path / "k.pyth"
    torch.save(PIUmrNet(PRESETS["tiny"].model).backbone.state_dict(), k)
    cfg = with_overrides(PRESETS["tiny"], {**FAST, "model.pretrained": str(k)})
    train(cfg, tmp_path / "run", progress=False, stop_after_epoch=0, checkpoint_every_min=0)
    k.unlink()  # moved away after the run started
    res = invoke("train", "--resume", tmp_path / "run", "--quiet")
    assert res.exit_code == 0, res.output
    assert read_checkpoint(tmp_path / "run" / "last.safetensors").meta["epoch"] == 1


# ----------------------------------------------------------------------------- environment faults


def test_unwritable_out_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    res = invoke(*RUN, "--out", blocker / "run")
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {blocker / 'run'}: cannot write to the run folder")


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(run_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(run_copy)

    def disk_full(path: Path, blob: bytes) -> None:
        path.write_bytes(blob[: len(blob) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "write_file", disk_full)
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 4, res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "could not write" in line and "at epoch 1, step 2" in line and "No space left on device" in line
    assert f"the last good checkpoint is {run_copy / 'last.safetensors'} (epoch 0, step 1)" in line
    for name in ("last.safetensors", "best.safetensors"):
        assert (run_copy / name).read_bytes() == before[name]
    assert not list(run_copy.glob(".*.tmp")) and not (run_copy / ".lock").exists()
    monkeypatch.undo()
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")  # the disk has room again
    assert res.exit_code == 0 and read_checkpoint(run_copy / "last.safetensors").meta["epoch"] == 1


def test_vanished_out_stops_the_run_without_recreating_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = with_overrides(PRESETS["tiny"], FAST)
    with pytest.raises(RunError, match=r"run folder .*run vanished or was replaced at epoch 1, step 6"):
        train(cfg, run, progress=False, checkpoint_every_min=0, on_epoch=lambda e, row: shutil.rmtree(run))
    assert not run.exists()


def test_divergence_names_epoch_step_and_last_good_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forward = PIUmrLoss.forward
    calls = {"n": 0}

    def diverging(self: PIUmrLoss, *args: Any) -> Any:
        calls["n"] += 1
        parts = forward(self, *args)
        return parts._replace(total=parts.total * math.nan) if calls["n"] == 5 else parts

    monkeypatch.setattr(PIUmrLoss, "forward", diverging)
    run = tmp_path / "run"
    res = invoke(*TRAIN, "--epochs", "2", "--checkpoint-every-min", "0", "--out", run)
    assert res.exit_code == 4, res.output
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert "non-finite loss (nan) at epoch 1, step 5" in line
    assert f"the last good checkpoint is {run / 'last.safetensors'} (epoch 0, step 3)" in line
    assert read_checkpoint(run / "last.safetensors").meta["step"] == 3


# ----------------------------------------------------------------------------- validation accounting


def _data_copy(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(resolve_root(PRESETS["tiny"].data), root)
    return root


def test_broken_validation_clip_is_counted_and_named(tmp_path: Path) -> None:
    root = _data_copy(tmp_path)
    listed = (root / "val_list_videos.txt").read_text().split("\n")
    broken = listed[0].split()[0]
    (root / "val" / broken).write_bytes(b"not a video")
    run = tmp_path / "run"
    res = invoke(*RUN, "--data", root, "--out", run)
    assert res.exit_code == 0, res.output
    assert f"1 of {len([x for x in listed if x])} validation clip(s) could not be read" in res.output
    assert broken in res.output
    row = next(json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"epoch"' in x)
    assert [Path(p).name for p in row["val_skipped"]] == [broken] and row["val_clips"] == row["val_listed"] - 1
    metrics = json.loads((run / "metrics.json").read_text())
    assert [Path(p).name for p in metrics["skipped"]] == [broken] and metrics["clips"] == metrics["listed"] - 1
    summary = json.loads((run / "summary.json").read_text())
    assert [Path(p).name for p in summary["val_skipped_clips"]] == [broken]
    res = invoke("evaluate", "--checkpoint", run / "best.safetensors", "--out", tmp_path / "ev")
    assert res.exit_code == 0 and broken in res.output and "could not be read and were left out" in res.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["listed"] == metrics["listed"]


def test_shrinking_validation_set_is_warned_and_recorded(tmp_path: Path) -> None:
    root = _data_copy(tmp_path)
    broken = (root / "val_list_videos.txt").read_text().split()[0]
    cfg = with_overrides(PRESETS["tiny"], {**FAST, "data.root": str(root), "data.memory_cache": "off",
                                           "max_steps_per_epoch": 1})
    console = Console(file=io.StringIO(), width=400)

    def break_clip(epoch: int, row: dict[str, Any]) -> None:
        (root / "val" / broken).write_bytes(b"broken after the first validation")

    train(cfg, tmp_path / "run", progress=False, console=console, on_epoch=break_clip, checkpoint_every_min=0)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "warning: the validation set shrank from" in text and "at epoch 1" in text
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    (shrank,) = summary["val_set_shrank"]
    assert shrank["epoch"] == 1 and shrank["to"] == shrank["from"] - 1
    assert [Path(p).name for p in shrank["missing"]] == [broken]
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r.get("val_shrank_from") for r in rows if r["type"] == "epoch"] == [None, shrank["from"]]
