"""Fault injection: every kind of bad input gives one clear line naming the flag, file or folder and a
non-zero exit; never a traceback, an out-of-memory allocation, or a result that is silently wrong.

Classes covered here: option bounds and conflicting options (named by the flag typed), list-file
labels, the decode memory budget, ``prepare`` reruns (stale sources, a second root, failed clips,
absurd short sides) and ``predict`` (missing paths, empty folders, JSON lines, non-finite scores).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from click.testing import Result
from typer.testing import CliRunner

from piumr.checkpoint import save_checkpoint
from piumr.config import PRESETS
from piumr.data import DatasetError, read_split
from piumr.data import video as video_module
from piumr.data.prepare import PreparedCache, prepare_dataset
from piumr.data.video import DecodeBudgetError, read_frames
from piumr.model import PIUmrNet
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
    monkeypatch.setenv("PIUMR_DECODE_BUDGET_MIB", "1")
    with pytest.raises(DecodeBudgetError, match="PIUMR_DECODE_BUDGET_MIB"):
        read_frames(clip, range(8), backend="pyav", short_side=256)
    monkeypatch.setenv("PIUMR_DECODE_BUDGET_MIB", "lots")
    with pytest.raises(ValueError, match="PIUMR_DECODE_BUDGET_MIB='lots'"):
        read_frames(clip, range(8), backend="pyav", short_side=256)


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
