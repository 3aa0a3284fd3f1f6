"""Transforms, VideoDataset (raw videos), collate and DataLoader behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2  # type: ignore[import-untyped]

from conftest import VideoWriter
from piumr.data import (
    KINETICS_MEAN, KINETICS_STD, VideoDataset, VideoError, build_transform, collate, read_split,
)
from piumr.data.dataset import worker_init

T, CROP, SHORT = 5, 32, 40  # distinct sizes so axis swaps fail


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, make_video: VideoWriter) -> Path:
    """Raw root: 4 train clips (the third is a text file named .mp4) and 2 test clips."""
    root = tmp_path_factory.mktemp("ma52")
    (root / "train").mkdir()
    (root / "test").mkdir()
    lines = []
    for k, (name, label, frames) in enumerate(
        [("0001_00_0001.mp4", 0, 12), ("0001_01_0002.mp4", 9, 7), ("0002_02_0001.mp4", 11, 9),
         ("0003_06_0001.mp4", 51, 3)]):
        make_video(root / "train" / name, frames, grey=lambda i, k=k: 20 + 10 * i + k)
        lines.append(f"{name} {label}")
    (root / "train" / "0002_02_0001.mp4").write_text("not a video")
    (root / "train_list_videos.txt").write_text("\r\n".join(lines) + "\r\n")
    for i in range(2):
        make_video(root / "test" / f"test{i:04d}.mp4", 10)
    (root / "test_list_videos.txt").write_text("test0000.mp4 0\r\ntest0001.mp4 0")
    return root


def dataset(root: Path, split: str = "train", train: bool = True, **kw: object) -> VideoDataset:
    recs = read_split(root, split, check_files=True)  # type: ignore[arg-type]
    return VideoDataset(recs, T, train, build_transform(train, CROP, SHORT), **kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- transforms


def test_transform_shapes_and_normalisation() -> None:
    frames = torch.full((T, 48, 64, 3), round(0.45 * 255), dtype=torch.uint8)
    for train in (True, False):
        out = build_transform(train, CROP, SHORT)(frames)
        assert out.dtype == torch.float32 and tuple(out.shape) == (3, T, CROP, CROP)
        assert out.abs().max() < 0.01  # mean grey -> 0
    white = build_transform(False, CROP, SHORT)(torch.full((T, 48, 64, 3), 255, dtype=torch.uint8))
    assert white.mean().item() == pytest.approx((1 - KINETICS_MEAN[0]) / KINETICS_STD[0], abs=1e-4)


def test_eval_transform_matches_torchvision_reference() -> None:
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (T, SHORT, 56, 3), generator=g, dtype=torch.uint8)
    ref = v2.Compose([v2.CenterCrop(CROP), v2.ToDtype(torch.float32, scale=True),
                      v2.Normalize(KINETICS_MEAN, KINETICS_STD)])(frames.permute(0, 3, 1, 2))
    out = build_transform(False, CROP, SHORT)(frames)
    torch.testing.assert_close(out, ref.permute(1, 0, 2, 3), atol=1e-5, rtol=0)


def test_train_transform_same_crop_and_flip_for_all_frames() -> None:
    g = torch.Generator().manual_seed(0)
    frame = torch.randint(0, 256, (1, 48, 64, 3), generator=g, dtype=torch.uint8)
    tf = build_transform(True, CROP, SHORT)
    outs = []
    for seed in range(8):
        torch.manual_seed(seed)
        out = tf(frame.expand(T, -1, -1, -1).contiguous())
        for t in range(1, T):
            assert torch.equal(out[:, t], out[:, 0])  # identical frames stay identical
        outs.append(out)
    assert len({o.sum().item() for o in outs}) > 4  # the crop does vary between calls


def test_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        build_transform(False, CROP, SHORT)(torch.zeros(T, 48, 64, 3))
    with pytest.raises(ValueError, match="crop"):
        build_transform(False, 64, SHORT)


# ----------------------------------------------------------------------------- dataset


def test_item_fields_and_skip_of_broken_clip(root: Path) -> None:
    ds = dataset(root, on_error="skip")
    item = ds[0]
    assert tuple(item["video"].shape) == (3, T, CROP, CROP) and item["video"].dtype == torch.float32
    assert (item["action"], item["body"], item["participant"], item["index"], item["skipped"]) == (
        0, 0, "0001", 0, [])
    assert item["path"].endswith("0001_00_0001.mp4")
    broken = ds[2]  # text file -> replaced by the next record
    assert broken["index"] == 3 and broken["action"] == 51 and broken["body"] == 6
    assert broken["skipped"] == [str(root / "train" / "0002_02_0001.mp4")]
    assert broken["video"].abs().sum() > 0  # never a silent zero clip


def test_raise_mode_propagates(root: Path) -> None:
    with pytest.raises(VideoError, match="0002_02_0001.mp4"):
        dataset(root, on_error="raise")[2]


def test_eval_is_deterministic_and_multiview(root: Path) -> None:
    ds = dataset(root, train=False)
    a, b = ds[1]["video"], ds[1]["video"]
    assert torch.equal(a, b)
    mv = dataset(root, train=False, views=3)[0]["video"]
    assert tuple(mv.shape) == (3, 3, T, CROP, CROP)
    assert not torch.equal(mv[0], mv[2])  # different temporal offsets -> different frames
    # clip 0 frame i is grey 20 + 10 i: view means increase with the temporal offset
    means = mv[:, :, :, CROP // 2:, CROP // 2:].mean(dim=(1, 2, 3, 4))
    assert means[0] < means[1] < means[2]


def test_train_sampling_reproducible_per_epoch(root: Path) -> None:
    ds = dataset(root, seed=7)
    first = [ds[0]["video"] for _ in range(2)]
    assert torch.equal(first[0], first[1])  # same (seed, epoch, index) -> same clip
    draws = []
    for epoch in range(4):
        ds.set_epoch(epoch)
        draws.append(ds[0]["video"])
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    ds.set_epoch(0)
    assert torch.equal(ds[0]["video"], draws[0])
    assert not torch.equal(dataset(root, seed=8)[0]["video"], first[0])


def test_short_clip_and_test_split(root: Path) -> None:
    item = dataset(root)[3]  # 3-frame clip, 5 frames requested
    assert tuple(item["video"].shape) == (3, T, CROP, CROP) and item["skipped"] == []
    test_item = dataset(root, split="test", train=False)[1]
    assert test_item["participant"] == "" and test_item["index"] == 1


def test_decoder_side_resize_gives_same_shape(root: Path) -> None:
    ds = dataset(root, train=False, decode_short_side=SHORT, backend="pyav")
    assert tuple(ds[0]["video"].shape) == (3, T, CROP, CROP)


def test_collate_and_loader_workers_report_skipped(root: Path) -> None:
    ds = dataset(root, train=False, on_error="skip")
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate, worker_init_fn=worker_init)
    batches = list(loader)
    assert [tuple(b["video"].shape) for b in batches] == [(2, 3, T, CROP, CROP)] * 2
    assert batches[0]["action"].dtype == torch.long and batches[0]["action"].tolist() == [0, 9]
    assert batches[1]["index"].tolist() == [3, 3] and batches[1]["body"].tolist() == [6, 6]
    assert [p for b in batches for p in b["skipped"]] == [str(root / "train" / "0002_02_0001.mp4")]
    assert batches[0]["participant"] == ["0001", "0001"]


def test_constructor_validation(root: Path) -> None:
    with pytest.raises(ValueError, match="evaluation only"):
        dataset(root, train=True, views=2)
    with pytest.raises(ValueError, match="on_error"):
        dataset(root, on_error="ignore")


def test_train_items_do_not_depend_on_worker_count(root: Path) -> None:
    ds = dataset(root, seed=3)
    ds.set_epoch(2)
    inline = list(DataLoader(ds, batch_size=2, num_workers=0, collate_fn=collate))
    forked = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate, worker_init_fn=worker_init))
    for a, b in zip(inline, forked, strict=True):
        assert torch.equal(a["video"], b["video"]) and a["index"].tolist() == b["index"].tolist()
