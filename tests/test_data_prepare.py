"""Prepared JPEG cache: build, resume, verify, read, dataset on top, loader benchmark."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import VideoWriter
from piumr.data import (
    PreparedCache, VideoDataset, VideoError, build_transform, find_layout, open_cache_if_any,
    prepare_dataset, read_frames, read_split,
)
from piumr.data.bench import loader_throughput
from piumr.data.prepare import encode_clip, read_header

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
SHORT = 40


@pytest.fixture()
def raw(tmp_path: Path, make_video: VideoWriter) -> Path:
    """Raw root (videos_* folders, annotations/): train 3 clips (one broken), val 1, test 1."""
    root = tmp_path / "raw"
    for split in ("train", "val", "test"):
        (root / f"videos_{split}").mkdir(parents=True)
    entries = {"train": [("0001_00_0001.mp4", 0, 8), ("0001_01_0002.mp4", 9, 6), ("0002_05_0001.mp4", 40, 0)],
               "val": [("0001_02_0003.mp4", 12, 5)], "test": [("test0000.mp4", 0, 7)]}
    (root / "annotations").mkdir()
    for split, clips in entries.items():
        for name, _, frames in clips:
            if frames:
                make_video(root / f"videos_{split}" / name, frames)
            else:
                (root / f"videos_{split}" / name).write_text("broken")
        text = "\r\n".join(f"{n} {label}" for n, label, _ in clips)
        (root / "annotations" / f"{split}_list_videos.txt").write_text(text)
    (root / "annotations" / "label_name.txt").write_text("0\tshaking body\r\n")
    return root


def test_prepare_builds_a_valid_dataset_root(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    report = prepare_dataset(raw, out, short_side=SHORT, workers=1, progress=False)
    assert (report.done, report.skipped, report.num_failed, report.verified) == (4, 0, 1, 4)
    assert list(report.failed) == ["train/0002_05_0001.mp4"] and "0002_05_0001.mp4" in report.failed[
        "train/0002_05_0001.mp4"]
    assert report.frames == 8 + 6 + 5 + 7
    manifest = json.loads((out / "piumr_manifest.json").read_text())
    entry = manifest["clips"]["train/0001_00_0001.mp4"]
    data = (out / "train" / "0001_00_0001.mp4.jpgs").read_bytes()
    assert (entry["frames"], entry["height"], entry["width"]) == (8, SHORT, 53)
    assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
    assert manifest["complete"] is True and "train/0002_05_0001.mp4" in manifest["failed"]
    layout = find_layout(out)
    assert set(layout.lists) == {"train", "val", "test"} and layout.label_names is not None
    assert layout.manifest is not None
    recs = read_split(out, "train")  # failed clip stays listed (fails at load time), files checked
    assert [r.path.name for r in recs] == ["0001_00_0001.mp4", "0001_01_0002.mp4", "0002_05_0001.mp4"]
    assert not list(out.rglob("*.tmp*"))


def test_cache_read_matches_decoder(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, splits=("train",), short_side=SHORT, workers=1, progress=False)
    cache = open_cache_if_any(out)
    assert isinstance(cache, PreparedCache) and len(cache) == 2
    src = raw / "videos_train" / "0001_00_0001.mp4"
    idx = [7, 0, 3, 3]
    x = cache.read(src, idx)  # raw path, cache path or bare name all work
    assert torch.equal(x, cache.read("0001_00_0001.mp4", idx))
    assert torch.equal(x, cache.read(out / "train" / "0001_00_0001.mp4", idx))
    assert x.dtype == torch.uint8 and tuple(x.shape) == (4, SHORT, 53, 3)
    ref = read_frames(src, idx, "pyav", short_side=SHORT)
    assert (x.float() - ref.float()).abs().mean() < 3  # JPEG q90 error only
    assert cache.num_frames("0001_00_0001.mp4") == 8
    with pytest.raises(VideoError, match="outside 0..7"):
        cache.read(src, [8])
    with pytest.raises(VideoError, match="failed during prepare"):
        cache.read(raw / "videos_train" / "0002_05_0001.mp4", [0])
    assert open_cache_if_any(raw) is None


def test_resume_skips_verified_and_redoes_damaged(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, short_side=SHORT, workers=1, progress=False)
    damaged = out / "val" / "0001_02_0003.mp4.jpgs"
    damaged.write_bytes(damaged.read_bytes()[:-10])  # truncated by a crash
    (out / "test" / "test0000.mp4.jpgs").unlink()
    report = prepare_dataset(raw, out, short_side=SHORT, workers=1, progress=False)
    assert (report.done, report.skipped, report.num_failed, report.verified) == (2, 2, 1, 4)
    with pytest.raises(Exception, match="short side 40"):
        prepare_dataset(raw, out, short_side=64, workers=1, progress=False)


def test_dataset_reads_from_cache(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, splits=("train",), short_side=SHORT, workers=1, progress=False)
    recs = read_split(out, "train")
    ds = VideoDataset(recs, 5, False, build_transform(False, 32, SHORT), cache=open_cache_if_any(out))
    item = ds[0]
    assert tuple(item["video"].shape) == (3, 5, 32, 32) and item["skipped"] == []
    broken = ds[2]
    assert broken["index"] == 0 and broken["skipped"] == [str(out / "train" / "0002_05_0001.mp4")]
    raw_ds = VideoDataset(read_split(raw, "train"), 5, False, build_transform(False, 32, SHORT), backend="pyav")
    assert (raw_ds[0]["video"] - item["video"]).abs().mean() < 0.1  # same clip, JPEG/resize error only


def test_header_checks(tmp_path: Path) -> None:
    frames = torch.randint(0, 256, (3, 24, 40, 3), dtype=torch.uint8)
    path = tmp_path / "c.jpgs"
    path.write_bytes(encode_clip(frames, fps=25.0))
    header = read_header(path)
    assert (header.num_frames, header.height, header.width, header.fps) == (3, 24, 40, 25.0)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(VideoError, match="c.jpgs"):
        read_header(path)
    path.write_bytes(b"GARBAGE!" + bytes(40))
    with pytest.raises(VideoError, match="not a piumr cache"):
        read_header(path)


def test_loader_throughput_on_cache(raw: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_dataset(raw, out, splits=("train",), short_side=SHORT, workers=1, progress=False)
    stats = loader_throughput(out, "train", frames=4, crop=32, short_side=SHORT, workers=0,
                              batch_size=2, seconds=0.5)
    assert stats["prepared"] == 1.0 and stats["clips"] > 0 and stats["clips_per_s"] > 0
    assert stats["skipped"] > 0  # the broken clip is replaced and counted


@pytest.mark.slow
def test_prepare_with_worker_processes(raw: Path, tmp_path: Path) -> None:
    report = prepare_dataset(raw, tmp_path / "cache", short_side=SHORT, workers=2, progress=False)
    assert (report.done, report.num_failed, report.verified) == (4, 1, 4)


@pytest.mark.clips
def test_prepare_real_ma52_clips(tmp_path: Path) -> None:
    demo = CLIPS / "ma52_demo"
    if not demo.is_dir():
        pytest.skip("../shared/clips absent")
    root = tmp_path / "raw"
    (root / "train").mkdir(parents=True)
    shutil.copy(demo / "B2_shaking_head__0035_02_0007.mp4", root / "train" / "0035_01_0007.mp4")
    (root / "train_list_videos.txt").write_text("0035_01_0007.mp4 10\r\n")
    report = prepare_dataset(root, tmp_path / "cache", splits=("train",), workers=1, progress=False)
    assert (report.done, report.num_failed, report.frames) == (1, 0, 45)
    cache = PreparedCache(tmp_path / "cache")
    x = cache.read("0035_01_0007.mp4", [0, 22, 44])
    assert tuple(x.shape) == (3, 307, 256, 3)
    ref = read_frames(root / "train" / "0035_01_0007.mp4", [0, 22, 44], "decord", short_side=256)
    assert (x.float() - ref.float()).abs().mean() < 3
    assert report.bytes < 45 * 40_000  # compact: well under 40 kB per 256x307 frame
