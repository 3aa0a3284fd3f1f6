"""Tests of the synthetic MA-52 generator (piumr.data.synth); tiny settings, a few seconds."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest

from piumr.data import synth
from piumr.data.ma52 import ACTION_NAMES, ACTION_TO_BODY
from piumr.data.synth import SynthInfo, ensure_synth, generate, make_person, render_clip, select_classes

TINY = dict(persons=4, clips_per_person=4, frames=8, size=32, seed=0, workers=1, progress=False)
NAME = re.compile(r"^(\d{4})_(\d{2})_(\d{4})\.mp4 (\d+)$")
LISTS = ("train_list_videos.txt", "val_list_videos.txt", "test_list_videos.txt",
         "cross_subject/train_list_videos.txt", "cross_subject/val_list_videos.txt")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SynthInfo:
    return generate(tmp_path_factory.mktemp("synth") / "ds", **TINY)  # type: ignore[arg-type]


def _entries(path: Path) -> list[tuple[str, int]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF line ending"
    out = []
    for line in raw.decode().split("\r\n")[:-1]:
        m = NAME.match(line)
        assert m, line
        out.append((line.split(" ")[0], int(m.group(4))))
    return out


def _persons(path: Path) -> set[str]:
    return {name[:4] for name, _ in _entries(path)}


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
        assert frames[0].shape[:2] == (s.height, s.width)
    return np.stack(frames)


def test_list_format_and_names(tiny: SynthInfo) -> None:
    for rel in LISTS:
        entries = _entries(tiny.out / rel)
        assert entries, rel
        for name, label in entries:
            assert label in tiny.classes
            assert int(name[5:7]) == ACTION_TO_BODY[label]
            split_dir = (tiny.out / rel).parent / rel.split("/")[-1].split("_")[0]
            assert (split_dir / name).is_file(), (rel, name)
    total = sum(tiny.counts[s] for s in ("train", "val", "test"))
    assert total == 4 * 4 == tiny.counts["cross_subject_train"] + tiny.counts["cross_subject_val"]


def test_videos_decode(tiny: SynthInfo) -> None:
    for split in ("train", "val", "test"):
        for name, _ in _entries(tiny.out / f"{split}_list_videos.txt"):
            video = _decode(tiny.out / split / name)
            assert video.shape == (8, 32, 32, 3)
    with av.open(str(next((tiny.out / "train").glob("*.mp4")))) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_label_names(tiny: SynthInfo) -> None:
    from piumr.data.ma52 import ACTION_NAMES, ACTION_TO_BODY

    raw = (tiny.out / "label_name.txt").read_bytes()
    lines = raw.decode().split("\r\n")
    assert lines[-1] == "" and len(lines) == 53
    assert [ln.split("\t") for ln in lines[:-1]] == [[str(i), n] for i, n in enumerate(ACTION_NAMES)]
    assert lines[9] == "9\tnodding" and lines[45] == "45\tcovering face"
    # the private copies must match the shared ones until they are deduplicated
    assert ACTION_NAMES == ACTION_NAMES and ACTION_TO_BODY == ACTION_TO_BODY
    assert (tiny.out / "cross_subject" / "label_name.txt").read_bytes() == raw


def test_official_split_overlaps_persons(tiny: SynthInfo) -> None:
    everyone = set(tiny.persons)
    assert everyone == {"0001", "0002", "0003", "0004"}
    for split in ("train", "val", "test"):
        assert _persons(tiny.out / f"{split}_list_videos.txt") == everyone, split


def test_cross_subject_is_person_disjoint(tiny: SynthInfo) -> None:
    cs = tiny.out / "cross_subject"
    tr, va = _persons(cs / "train_list_videos.txt"), _persons(cs / "val_list_videos.txt")
    assert tr and va and not tr & va
    assert tr | va == set(tiny.persons)
    assert tr == set(tiny.cross_subject_train_persons) and va == set(tiny.cross_subject_val_persons)
    # every cross-subject clip is the same file as its official-split original
    originals = {p.name: p for p in tiny.out.glob("*/*.mp4")}
    for split in ("train", "val"):
        for name, _ in _entries(cs / f"{split}_list_videos.txt"):
            assert (cs / split / name).read_bytes() == originals[name].read_bytes()


def test_readable_by_ma52_reader(tiny: SynthInfo) -> None:
    from piumr.data.ma52 import read_split

    for split in ("train", "val", "test"):
        assert len(read_split(tiny.out, split)) == tiny.counts[split]
    for split in ("train", "val"):
        got = read_split(tiny.out / "cross_subject", split)  # type: ignore[arg-type]
        assert len(got) == tiny.counts[f"cross_subject_{split}"]


def test_meta(tiny: SynthInfo) -> None:
    meta = json.loads((tiny.out / "synth_meta.json").read_text())
    assert meta["seed"] == 0 and meta["version"] == synth.GENERATOR_VERSION
    assert [c["label"] for c in meta["classes"]] == list(tiny.classes)
    assert [p["id"] for p in meta["persons"]] == list(tiny.persons)
    assert meta["params"]["frames"] == 8


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic(tmp_path: Path) -> None:
    kw = dict(persons=2, clips_per_person=3, frames=8, size=32, progress=False)
    generate(tmp_path / "a", seed=5, workers=1, **kw)  # type: ignore[arg-type]
    generate(tmp_path / "b", seed=5, workers=2, **kw)  # type: ignore[arg-type]
    generate(tmp_path / "c", seed=6, workers=1, **kw)  # type: ignore[arg-type]
    da, db, dc = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert da == db  # byte-identical, including the mp4 files, whatever the worker count
    name = next(iter(_entries(tmp_path / "a" / "train_list_videos.txt")))[0]
    assert np.array_equal(_decode(tmp_path / "a" / "train" / name), _decode(tmp_path / "b" / "train" / name))
    assert da != dc


def test_classes_per_body() -> None:
    one = select_classes(1)
    assert len(one) == 7 and sorted(ACTION_TO_BODY[c] for c in one) == list(range(7))
    assert len(select_classes(2)) == 14
    assert len(select_classes(5)) == 5 + 5 + 5 + 5 + 5 + 5 + 4
    assert select_classes(13) == tuple(range(52))
    with pytest.raises(ValueError):
        select_classes(0)


def test_generated_labels_follow_classes_per_body(tmp_path: Path) -> None:
    info = generate(tmp_path / "d", persons=2, clips_per_person=8, classes_per_body=1, frames=4, size=16,
                    workers=1, progress=False)
    labels = {lab for s in ("train", "val", "test") for _, lab in _entries(tmp_path / "d" / f"{s}_list_videos.txt")}
    assert labels == set(select_classes(1)) == set(info.classes)


def test_persons_look_different() -> None:
    means = []
    for pid in range(1, 7):
        video = render_clip(make_person(0, pid), 9, 8, 64, 123).astype(np.float64)
        means.append(video.mean(axis=(0, 1, 2)))
    m = np.array(means)
    dists = [np.abs(m[i] - m[j]).sum() for i in range(len(m)) for j in range(i + 1, len(m))]
    assert min(dists) > 3.0, dists  # mean RGB differs by > 3 grey levels between any two persons
    same = render_clip(make_person(0, 1), 9, 8, 64, 999).astype(np.float64).mean(axis=(0, 1, 2))
    assert np.abs(same - m[0]).sum() < min(dists)  # a person's clips look alike
    a, b = make_person(0, 1), make_person(0, 2)
    assert (a.tempo, a.amplitude, a.torso_len) != (b.tempo, b.amplitude, b.torso_len)
    assert make_person(0, 1) == make_person(0, 1) != make_person(1, 1)


def _energy(label: int, pid: int = 1, size: int = 64) -> np.ndarray:
    video = render_clip(make_person(0, pid), label, 16, size, 7).astype(np.float64).mean(axis=3)
    diff = np.abs(np.diff(video, axis=0)).mean(axis=0)
    out: np.ndarray = np.maximum(diff - 8.0, 0.0)  # drop the sensor-noise floor
    return out


def test_classes_move_differently() -> None:
    maps = {c: _energy(c) for c in range(52)}
    for c, e in maps.items():
        assert e.sum() > 0.5, f"class {c} does not move"
    # distinct classes give distinct motion-energy maps
    flat = {c: e / e.sum() for c, e in maps.items()}
    close = [(a, b) for a in flat for b in flat if a < b and np.abs(flat[a] - flat[b]).sum() < 0.15]
    assert not close, close
    # head classes move higher in the frame than leg classes (same body group -> same body part)
    rows = np.arange(64, dtype=np.float64)

    def centroid(c: int) -> float:
        e = maps[c].sum(axis=1)
        return float((rows * e).sum() / e.sum())

    head = [centroid(c) for c in range(5, 11)]
    legs = [centroid(c) for c in range(24, 32)]
    assert max(head) < min(legs), (head, legs)


def test_invalid_params(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path / "x", size=33, progress=False)
    with pytest.raises(ValueError):
        generate(tmp_path / "x", persons=1, progress=False)


def test_ensure_synth_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(persons=2, clips_per_person=2, frames=4, size=16, workers=1, progress=False)
    first = ensure_synth(tmp_path, **kw)
    assert (first / "synth_meta.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temp dir left behind

    def boom(*args: object, **kwargs: object) -> SynthInfo:
        raise AssertionError("must not regenerate")

    monkeypatch.setattr(synth.generation, "generate", boom)
    assert ensure_synth(tmp_path, **{**kw, "workers": 2}) == first  # run-only params share the cache
    assert synth.synth_key(**kw) != synth.synth_key(**{**kw, "seed": 1})
    with pytest.raises(TypeError):
        synth.synth_key(colour=1)


def test_ensure_synth_interrupted_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half(out: Path, **kwargs: object) -> SynthInfo:
        (Path(out) / "train").mkdir(parents=True)
        (Path(out) / "train" / "0001_00_0001.mp4").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(synth.generation, "generate", half)
    with pytest.raises(KeyboardInterrupt):
        ensure_synth(tmp_path, persons=2)
    assert list(tmp_path.iterdir()) == []
