"""``piumr.predict``: which checkpoint ``predict`` takes by default, which clips of a manifest it predicts, and
what it says about the classes a checkpoint was trained on."""

from __future__ import annotations

import os
from pathlib import Path

from piumr.data.ma52 import ACTION_NAMES
from piumr.data.manifest import MA52_CLASSES
from piumr.predict import find_latest_checkpoint, manifest_inputs, trained_on


def test_the_default_checkpoint_is_the_newest_best(tmp_path: Path) -> None:
    assert find_latest_checkpoint(tmp_path / "none") is None and find_latest_checkpoint(tmp_path) is None
    for i, run in enumerate(("b", "a", "c/deeper")):
        best = tmp_path / run / "best.safetensors"
        best.parent.mkdir(parents=True)
        best.write_bytes(b"x")
        os.utime(best, (1000 + i, 1000 + i if run != "a" else 5000))
    (tmp_path / "a" / "last.safetensors").write_bytes(b"x")
    assert find_latest_checkpoint(tmp_path) == tmp_path / "a" / "best.safetensors"


def _manifest(folder: Path, splits: list[str]) -> Path:
    folder.mkdir()
    (folder / "classes.csv").write_text("label,name\n0,nod\n1,wave\n")
    rows = []
    for i, split in enumerate(splits):
        (folder / f"c{i}.mp4").write_bytes(b"not decoded here")
        rows.append(f"c{i}.mp4,{i % 2},{split}\n")
    (folder / "m.csv").write_text("path,label,split\n" + "".join(rows))
    return folder / "m.csv"


def test_a_manifest_predicts_its_test_rows_or_else_every_row(tmp_path: Path) -> None:
    with_test = _manifest(tmp_path / "t", ["train", "test", "val", "test"])
    assert manifest_inputs(with_test) == [tmp_path / "t" / "c1.mp4", tmp_path / "t" / "c3.mp4"]
    without = _manifest(tmp_path / "n", ["train", "val"])
    assert manifest_inputs(without) == [tmp_path / "n" / "c0.mp4", tmp_path / "n" / "c1.mp4"]
    assert manifest_inputs(None) == [] and manifest_inputs(tmp_path) == []  # no data, or a folder


def test_what_a_checkpoint_was_trained_on() -> None:
    ckpt = Path("run/best.safetensors")
    full = trained_on({"trained_on": {"kind": "MA-52", "classes": list(range(len(ACTION_NAMES)))}}, ckpt)
    assert full.warning is None and full.describe() == "trained on MA-52 data: all 52 MA-52 classes"
    synth = trained_on({"trained_on": {"kind": "synthetic", "classes": [0, 5]}}, ckpt)
    assert synth.warning is not None and synth.warning.startswith(f"{ckpt}: trained on synthetic data (2 of the 52")
    assert synth.describe().startswith("trained on synthetic data: 2 of the 52 MA-52 classes (0 ")
    # task v2's labels are MA-52 indices that show once / twice / stay of a body part: named so, body groups kept
    v2 = trained_on({"trained_on": {"kind": "synthetic", "classes": [0, 5], "task": 2}}, ckpt)
    assert v2.names.names[0] == "torso bows: once" and v2.names.groups == MA52_CLASSES.groups
    assert v2.names.coarse == MA52_CLASSES.coarse and v2.warning == synth.warning
    assert v2.describe().startswith("trained on synthetic data: 2 of the 52 MA-52 classes (0 torso bows: once, 5 ")
    assert trained_on({"trained_on": {"kind": "synthetic", "classes": [0]}}, ckpt, 2).names == v2.names  # unrecorded
    assert synth.names is MA52_CLASSES  # task v1 renders MA-52's classes
    man = trained_on({"trained_on": {"kind": "manifest", "classes": [1], "names": ["nod", "wave"], "coarse": [0, 0],
                                     "groups": ["all"]}}, ckpt)
    assert man.warning is None and man.names.names == ("nod", "wave")
    assert man.describe() == "trained on a manifest: 1 of its 2 classes (wave)"
