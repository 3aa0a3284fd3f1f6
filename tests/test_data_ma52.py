"""MA-52 list parsing, layout discovery, label hierarchy and cross-subject folds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from piumr.data.ma52 import (
    ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, DatasetError, body_of, cross_subject_folds,
    find_layout, read_label_names, read_split,
)

MA52 = Path(__file__).resolve().parents[1].parent / "shared" / "ma52"


def official() -> Path:
    if not (MA52 / "train_list_videos.txt").is_file():
        pytest.skip("../shared/ma52 absent")
    return MA52


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode())
    return path


def fake_root(tmp_path: Path, lines: list[str], split: str = "train", touch: bool = True,
              folder: str | None = None, eol: str = "\r\n") -> Path:
    """A root with one list file and (optionally) empty video files for its entries."""
    root = tmp_path / "ma52"
    videos = root / (folder or split)
    videos.mkdir(parents=True, exist_ok=True)
    write(root / f"{split}_list_videos.txt", eol.join(lines) + eol)
    if touch:
        for line in lines:
            if line.strip():
                (videos / line.split()[0]).write_bytes(b"x")
    return root


# ----------------------------------------------------------------------------- constants


def test_hierarchy_constants() -> None:
    assert len(ACTION_NAMES) == 52 and len(set(ACTION_NAMES)) == 52
    assert BODY_NAMES == ("body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand")
    assert len(ACTION_TO_BODY) == 52
    assert [Counter(ACTION_TO_BODY)[b] for b in range(7)] == [5, 6, 13, 8, 6, 10, 4]
    assert (body_of(0), body_of(4), body_of(5), body_of(10), body_of(11), body_of(23)) == (0, 0, 1, 1, 2, 2)
    assert (body_of(24), body_of(31), body_of(32), body_of(37), body_of(38), body_of(47)) == (3, 3, 4, 4, 5, 5)
    assert (body_of(48), body_of(51)) == (6, 6)
    assert ACTION_NAMES[9] == "nodding" and ACTION_NAMES[45] == "covering face"
    with pytest.raises(ValueError):
        body_of(52)
    with pytest.raises(ValueError):
        body_of(-1)


def test_constants_match_label_name_txt() -> None:
    assert read_label_names(official() / "label_name.txt") == ACTION_NAMES


def test_constants_match_classes_tsv() -> None:
    rows = [ln.split("\t") for ln in (official() / "classes.tsv").read_text().splitlines()
            if ln[:1].isdigit()][:52]  # a 7-row body summary table follows
    assert [(int(r[0]), r[1], int(r[2])) for r in rows] == [
        (a, ACTION_NAMES[a], ACTION_TO_BODY[a]) for a in range(52)]


# ----------------------------------------------------------------------------- official lists


def test_official_lists_counts_and_participants() -> None:
    root = official()
    train = read_split(root, "train", check_files=False)
    val = read_split(root, "val", check_files=False)
    test = read_split(root, "test", check_files=False)
    assert (len(train), len(val), len(test)) == (11250, 5586, 5586)
    people_train = {r.participant for r in train}
    people_val = {r.participant for r in val}
    assert len(people_train) == 186 and people_train == people_val
    assert all(r.participant is None and r.action == 0 for r in test)
    assert test[-1].path.name == "test5585.mp4" and test[-1].line == 5586
    assert (root / "test_list_videos.txt").read_bytes().count(b"\n") == 5585
    first = train[0]
    assert (first.path.name, first.action, first.body, first.participant, first.line) == (
        "0003_01_0001.mp4", 9, 1, "0003", 1)
    assert first.path == root / "train" / "0003_01_0001.mp4"  # no video folder: root/<split>
    counts = Counter(r.action for r in train)
    assert (counts[9], counts[45], counts[3]) == (1283, 6, 9)


def test_official_lists_via_list_dir(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "videos_val").mkdir(parents=True)
    recs = read_split(root, "val", list_dir=official(), check_files=False)
    assert len(recs) == 5586 and recs[0].path.parent == root / "videos_val"
    layout = find_layout(root, official())
    assert layout.label_names == official() / "label_name.txt"
    assert layout.videos["val"] == root / "videos_val" and layout.videos["train"] is None


# ----------------------------------------------------------------------------- layout


def test_find_layout_annotations_folder_and_errors(tmp_path: Path) -> None:
    root = tmp_path / "r"
    write(root / "annotations" / "train_list_videos.txt", "0001_00_0001.mp4 0\n")
    (root / "train").mkdir()
    layout = find_layout(root)
    assert layout.lists == {"train": root / "annotations" / "train_list_videos.txt"}
    assert layout.videos["train"] == root / "train" and layout.label_names is None
    with pytest.raises(DatasetError, match="missing_root"):
        find_layout(tmp_path / "missing_root")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no list file"):
        find_layout(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no val_list_videos.txt"):
        read_split(root, "val", check_files=False)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("eol", ["\r\n", "\n"])
def test_line_endings_blank_lines_and_missing_final_newline(tmp_path: Path, eol: str) -> None:
    root = fake_root(tmp_path, ["0001_00_0001.mp4 0", "", "0001_01_0002.mp4 9", "  ", "0002_06_0001.mp4 51"], eol=eol)
    lst = root / "train_list_videos.txt"
    lst.write_bytes(lst.read_bytes().rstrip(b"\r\n"))  # last line without newline
    recs = read_split(root, "train")
    assert [(r.path.name, r.action, r.body, r.participant, r.line) for r in recs] == [
        ("0001_00_0001.mp4", 0, 0, "0001", 1), ("0001_01_0002.mp4", 9, 1, "0001", 3),
        ("0002_06_0001.mp4", 51, 6, "0002", 5)]
    assert recs[0].list_file == lst and recs[0].path == root / "train" / "0001_00_0001.mp4"


def test_videos_prefixed_folder(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ["test0000.mp4 0", "test0001.mp4 0"], split="test", folder="videos_test")
    recs = read_split(root, "test")
    assert [r.path for r in recs] == [root / "videos_test" / "test0000.mp4", root / "videos_test" / "test0001.mp4"]
    assert all(r.participant is None for r in recs)


@pytest.mark.parametrize(
    ("lines", "line_no", "pattern"),
    [
        (["0001_00_0001.mp4 0", "0001_00_0002.mp4 52"], 2, "outside 0..51"),
        (["0001_00_0001.mp4 -1"], 1, "outside 0..51"),
        (["0001_00_0001.mp4 x"], 1, "not an integer"),
        (["0001_00_0001.mp4"], 1, "expected '<file> <label>'"),
        (["0001_00_0001.mp4 0", "0001_01_0002.mp4 0"], 2, "body digits 01"),
        (["0001_00_0001.mp4 0", "0001_00_0001.mp4 0"], 2, r"duplicate entry .*\(first on line 1\)"),
        (["../0001_00_0001.mp4 0"], 1, "outside the dataset root"),
        (["/etc/0001_00_0001.mp4 0"], 1, "outside the dataset root"),
        (["sub/../../0001_00_0001.mp4 0"], 1, "outside the dataset root"),
        (["C:\\x\\0001_00_0001.mp4 0"], 1, "outside the dataset root"),
        (["clip_one.mp4 0"], 1, "PPPP_BB_NNNN"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, lines: list[str], line_no: int, pattern: str) -> None:
    root = fake_root(tmp_path, lines, touch=False)
    with pytest.raises(DatasetError, match=rf"train_list_videos.txt:{line_no}: .*{pattern}"):
        read_split(root, "train", check_files=False)


def test_missing_file_and_missing_folder(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ["0001_00_0001.mp4 0", "0001_00_0002.mp4 0"])
    (root / "train" / "0001_00_0002.mp4").unlink()
    with pytest.raises(DatasetError, match=r"train_list_videos.txt:2: file .*0001_00_0002.mp4 does not exist"):
        read_split(root, "train")
    assert len(read_split(root, "train", check_files=False)) == 2
    (root / "train" / "0001_00_0001.mp4").unlink()
    (root / "train").rmdir()
    with pytest.raises(DatasetError, match="no video folder"):
        read_split(root, "train")


def test_empty_list_and_non_utf8(tmp_path: Path) -> None:
    root = fake_root(tmp_path, ["", ""], touch=False)
    with pytest.raises(DatasetError, match="empty"):
        read_split(root, "train", check_files=False)
    (root / "train_list_videos.txt").write_bytes(b"\xff\xfe\x00bad 0\n")
    with pytest.raises(DatasetError, match="UTF-8"):
        read_split(root, "train", check_files=False)


# ----------------------------------------------------------------------------- folds


def test_cross_subject_folds_on_official_train() -> None:
    recs = read_split(official(), "train", check_files=False)
    folds = cross_subject_folds(recs, k=5, seed=0)
    assert len(folds) == 5
    held_people = [{r.participant for r in held} for _, held in folds]
    for (train, held), people in zip(folds, held_people):
        assert len(train) + len(held) == len(recs)
        assert people.isdisjoint({r.participant for r in train})  # person-disjoint
    assert sum(len(p) for p in held_people) == 186
    assert set().union(*held_people) == {r.participant for r in recs}
    sizes = [len(held) for _, held in folds]
    assert sum(sizes) == 11250 and max(sizes) - min(sizes) <= 0.02 * 11250  # balanced by clips
    again = cross_subject_folds(recs, k=5, seed=0)
    assert [[r.path for r in h] for _, h in again] == [[r.path for r in h] for _, h in folds]
    other = cross_subject_folds(recs, k=5, seed=1)
    assert [{r.participant for r in h} for _, h in other] != held_people


def test_cross_subject_folds_errors(tmp_path: Path) -> None:
    root = fake_root(tmp_path, [f"000{p}_00_0001.mp4 0" for p in range(3)], touch=False)
    recs = read_split(root, "train", check_files=False)
    with pytest.raises(DatasetError, match="3 participants cannot fill 5"):
        cross_subject_folds(recs, k=5)
    folds = cross_subject_folds(recs, k=3)
    assert sorted(len(h) for _, h in folds) == [1, 1, 1]
    test_root = fake_root(tmp_path / "t", ["test0000.mp4 0"], split="test", touch=False)
    with pytest.raises(DatasetError, match="no participant id"):
        cross_subject_folds(read_split(test_root, "test", check_files=False), k=2)
