"""Manifests as users write them, and faults of the same family: each refusal is one line naming the file, row
or flag, with a non-zero exit, and nothing a user made is changed.

Cases: class names that are digits (never read as indices), ``predict --data manifest.csv`` with a checkpoint of
other classes, ``predictions.csv`` keys of clips that share a base name, two shift suites into one ``--out``, a
``last.safetensors`` of a run with other ``--epochs``, and rerunning ``synth --manifest`` into its own folder. With
them: absolute paths in a manifest (read, trained on, prepared), ``bench loader --data manifest.csv`` and the
``domain`` column of ``synth --manifest``.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch

from piumr.checkpoint import read_checkpoint, save_checkpoint
from piumr.config import with_overrides
from piumr.data.ma52 import ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, DatasetError
from piumr.data.manifest import ClassInfo, read_manifest, write_manifest
from piumr.model import PIUmrNet
from piumr.run_folder import RunLock
from test_data_manifest import _dataset
from test_faults import checkpoints, finished_run, invoke, run_copy, snapshot, write_clip
from test_faults_disk import one_line

__all__ = ["checkpoints", "finished_run", "run_copy"]  # fixtures shared with test_faults

MA52 = ClassInfo(ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- 1. digit class names


DIGITS = "label,name\n0,1\n1,2\n2,3\n"  # class i is named str(i + 1)


def test_a_label_that_is_an_index_and_another_class_name_is_refused(tmp_path: Path) -> None:
    man = _dataset(tmp_path, ["a.mp4,1", "b.mp4,2", "c.mp4,3"], "path,label", DIGITS)
    with pytest.raises(DatasetError) as e:
        read_manifest(man)  # was: label "1" read as index 1 (class '2'): every label shifted by one, silently
    msg = str(e.value)
    assert msg.startswith(f"{man}:2: label '1' is ambiguous") and "class 0 is named '1'" in msg and "\n" not in msg
    res = invoke("train", "--preset", "tiny", "--data", man, "--out", tmp_path / "run", "--quiet", "--workers", "0")
    assert res.exit_code == 2 and "ambiguous" in one_line(res, f"{man}:2")
    assert not (tmp_path / "run").exists() and man.read_text(encoding="utf-8").startswith("path,label\na.mp4,1")


def test_digit_names_that_cannot_be_misread_are_read(tmp_path: Path) -> None:
    man = _dataset(tmp_path, ["a.mp4,3", "b.mp4,0"], "path,label", DIGITS)
    assert [r.action for r in read_manifest(man).records] == [2, 0]  # "3" is no index of 3 classes: the name
    same = _dataset(tmp_path / "same", ["a.mp4,1", "b.mp4,2"], "path,label", "label,name\n0,0\n1,1\n2,2\n")
    assert [r.action for r in read_manifest(same).records] == [1, 2]  # name i is class i: one reading


# ----------------------------------------------------------------------------- 2. predict uses the manifest's classes


def _clip_manifest(folder: Path, classes: ClassInfo, paths: tuple[str, ...] = ("lab/X.mp4", "home/X.mp4"),
                   split: str = "test") -> Path:
    """Real clips (same base name in two folders) listed with label 0."""
    for p in paths:
        write_clip(folder / p, frames=8)
    rows = [{"path": p, "label": "0", "person": f"p{i}", "domain": p.split("/")[0], "split": split}
            for i, p in enumerate(paths)]
    return write_manifest(folder / "manifest.csv", rows, classes)


@pytest.mark.parametrize(("names", "says"), [
    (tuple(f"c{i}" for i in range(10)), "its classes.csv has 10 classes, the checkpoint 52 outputs"),
    (tuple(f"c{i}" for i in range(52)), "class 0 of its classes.csv is 'c0', the checkpoint's is 'shaking body'"),
])
def test_predict_refuses_a_checkpoint_of_other_classes(names: tuple[str, ...], says: str,
                                                       checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    man = _clip_manifest(tmp_path, ClassInfo(names, (0,) * len(names), ("all",)))
    res = invoke("predict", "--checkpoint", checkpoints[0], "--data", man, "--json")
    assert res.exit_code == 2  # was: exit 0, predictions named after the checkpoint's 52 MA-52 classes
    line = one_line(res, f"--data {man}", checkpoints[0])
    assert says in line and not any(x.startswith("{") for x in res.output.splitlines())


def test_predict_names_the_manifests_classes_when_they_match(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    groups = tuple(f"part {g}" for g in BODY_NAMES)  # MA-52's classes, grouped under other names
    man = _clip_manifest(tmp_path, ClassInfo(ACTION_NAMES, ACTION_TO_BODY, groups))
    res = invoke("predict", "--checkpoint", checkpoints[0], "--data", man, "--json")
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert len(lines) == 2 and all(x["body"]["name"] in groups for x in lines)


# ----------------------------------------------------------------------------- 3. unique predictions.csv keys


def test_evaluate_keys_predictions_by_the_path_under_the_data_root(checkpoints: tuple[Path, Path],
                                                                   tmp_path: Path) -> None:
    man = _clip_manifest(tmp_path / "data", MA52, split="val")
    res = invoke("evaluate", "--checkpoint", checkpoints[0], "--data", man, "--split", "val", "--out",
                 tmp_path / "eval")
    assert res.exit_code == 0, res.output
    files = [r["file"] for r in _rows(tmp_path / "eval" / "predictions.csv")]
    assert sorted(files) == ["home/X.mp4", "lab/X.mp4"]  # was: "X.mp4" twice


# ----------------------------------------------------------------------------- 4. two shift suites, one --out


def test_a_second_shift_suite_into_the_same_out_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from piumr.shift import suite as shift_suite

    def trained(*args: object, **kwargs: object) -> None:
        raise AssertionError("the second suite trained while the first held --out")

    monkeypatch.setattr(shift_suite, "_run_task", trained)
    out = tmp_path / "suite"
    with RunLock(out):  # the first suite, training
        res = invoke("reproduce", "shift-suite", "--out", out, "--seeds", "0", "--arms", "baseline", "--factors",
                     "tempo", "--epochs", "1", "--jobs", "1", "--threads", "1")
        assert res.exit_code == 2 and "another" in one_line(res, out), res.output
        assert [p.name for p in out.iterdir()] == [".lock"]  # no suite.json, no run written


# ----------------------------------------------------------------------------- 5. resume: another run's epochs


def test_resume_refuses_a_last_checkpoint_of_a_run_with_other_epochs(run_copy: Path) -> None:
    last = run_copy / "last.safetensors"
    own = read_checkpoint(last)
    other = with_overrides(own.config, {"optim.epochs": 6})  # the same settings but --epochs
    net = PIUmrNet(other.model)
    net.load_state_dict(own.model_state)
    save_checkpoint(last, net, other, epoch=3, step=4, with_rng=True, optimizer=torch.optim.AdamW(net.parameters()))
    before = snapshot(run_copy)
    res = invoke("train", "--resume", run_copy, "--quiet")
    assert res.exit_code == 2  # was: "amended optim.epochs", resumed at epoch 4, log.jsonl jumping from 0 to 4
    line = one_line(res, last, "optim.epochs", "config.json")
    assert "not this run's checkpoint" in line and "no such amendment" in line
    assert snapshot(run_copy) == before


def test_resume_takes_its_own_checkpoint_from_before_an_amendment(run_copy: Path) -> None:
    """A run amended to 2 epochs and stopped before its next checkpoint: last.safetensors still says 1."""
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["optim"]["epochs"] = 2
    cfg["amendments"] = [{"key": "optim.epochs", "old": 1, "new": 2, "epoch": 1, "step": 1, "time": "t"}]
    (run_copy / "config.json").write_text(json.dumps(cfg))
    res = invoke("train", "--resume", run_copy, "--epochs", "2", "--quiet")
    assert res.exit_code == 0, res.output
    assert read_checkpoint(run_copy / "last.safetensors").meta["epoch"] == 1


# ----------------------------------------------------------------------------- 6. synth --manifest, run again


SYNTH = ["synth", "--preset", "tiny", "--persons", "2", "--clips-per-person", "2", "--workers", "1"]


def test_synth_manifest_rerun_keeps_its_own_set(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert invoke(*SYNTH, "--out", out, "--manifest").exit_code == 0
    made = snapshot(out)
    res = invoke(*SYNTH, "--out", out, "--manifest")
    assert res.exit_code == 0 and "kept the same set" in res.output, res.output  # was: refused, its own files
    assert snapshot(out) == made
    (out / "manifest.csv").write_text("path,label\ntrain/x.mp4,0\n", encoding="utf-8")  # the user's edit is kept
    (out / "classes.csv").unlink()
    res = invoke(*SYNTH, "--out", out, "--manifest")
    line = one_line(res, f"--out {out}", "manifest.csv")
    assert res.exit_code == 2 and "remove manifest.csv" in line
    assert (out / "manifest.csv").read_text(encoding="utf-8") == "path,label\ntrain/x.mp4,0\n"
    (out / "manifest.csv").unlink()
    assert invoke(*SYNTH, "--out", out, "--manifest").exit_code == 0
    assert snapshot(out) == made  # both written again, as they were


def test_synth_manifest_on_a_set_made_without_one(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert invoke(*SYNTH, "--out", out).exit_code == 0
    assert invoke(*SYNTH, "--out", out, "--manifest").exit_code == 0  # was: kept the set, wrote no manifest
    assert len(read_manifest(out / "manifest.csv").records) == 2 * 2
    assert json.loads((out / ".piumr_synth.json").read_text())["manifest"] is True
    assert invoke(*SYNTH, "--out", out).exit_code == 0  # its manifest files are its own now
    (out / "notes.txt").write_text("mine")
    res = invoke(*SYNTH, "--out", out, "--manifest")
    assert res.exit_code == 2 and "notes.txt" in one_line(res, f"--out {out}")


# ----------------------------------------------------------------------------- manifests as users write them


def test_absolute_paths_are_read_and_relative_ones_stay_inside(tmp_path: Path) -> None:
    elsewhere = tmp_path / "videos" / "lab" / "X.mp4"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"")
    folder = tmp_path / "lists"
    folder.mkdir()
    man = _dataset(folder, [f"{elsewhere},0", "a.mp4,1"], "path,label", "label,name\n0,nod\n1,shake\n")
    assert [r.path for r in read_manifest(man).records] == [elsewhere, folder / "a.mp4"]
    for rows, line, says in (([f"{folder / 'a.mp4'},0", "a.mp4,1"], 3, "duplicate path 'a.mp4' (first on line 2)"),
                             (["../videos/lab/X.mp4,0"], 2, "points outside the manifest's folder"),
                             ([f"{tmp_path / 'gone.mp4'},0"], 2, "does not exist")):
        man = _dataset(folder, rows, "path,label", "label,name\n0,nod\n1,shake\n")
        with pytest.raises(DatasetError) as e:
            read_manifest(man)
        assert str(e.value).startswith(f"{man}:{line}: ") and says in str(e.value), str(e.value)


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``synth --manifest`` at the tiny preset's size."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    res = invoke("synth", "--preset", "tiny", "--out", out, "--manifest", "--workers", "1")
    assert res.exit_code == 0, res.output
    return out


def test_synth_manifest_has_a_domain_column(synth_set: Path) -> None:
    rows = _rows(synth_set / "manifest.csv")
    assert {r["domain"] for r in rows} == {"near", "far"}
    assert all(len({r["domain"] for r in rows if r["person"] == p}) == 1 for p in {r["person"] for r in rows})
    assert read_manifest(synth_set / "manifest.csv").has("domain")


def test_a_manifest_of_absolute_paths_trains_and_prepares(synth_set: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    shutil.copy(synth_set / "classes.csv", lists / "classes.csv")
    rows = [{**r, "path": str(synth_set / r["path"])} for r in _rows(synth_set / "manifest.csv")]
    with (lists / "manifest.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    man = lists / "manifest.csv"
    res = invoke("train", "--preset", "tiny", "--data", man, "--out", tmp_path / "run", "--quiet", "--workers", "0",
                 "--epochs", "1", "--max-steps-per-epoch", "1")
    assert res.exit_code == 0, res.output
    keys = [r["file"] for r in _rows(tmp_path / "run" / "predictions_val.csv")]
    assert len(set(keys)) == len(keys) and all(k.startswith(str(synth_set / "val")) for k in keys)
    cache = tmp_path / "cache"
    res = invoke("prepare", "--data", man, "--out", cache, "--short-side", "36", "--workers", "1")
    assert res.exit_code == 0, res.output
    prepared = read_manifest(cache / "manifest.csv")  # the clips outside its folder are under absolute/
    assert all(r.path.is_relative_to(cache / "absolute") for r in prepared.records)
    assert _rows(man) == [{k: str(v) for k, v in r.items()} for r in rows]  # the user's manifest is unchanged


def test_bench_loader_takes_a_manifest(synth_set: Path) -> None:
    res = invoke("bench", "loader", "--data", synth_set / "manifest.csv", "--preset", "tiny", "--seconds", "0.1",
                 "--workers", "0", "--batch", "2")
    assert res.exit_code == 0, res.output  # was: "manifest.csv: dataset root does not exist or is not a folder"
    measured = json.loads(res.output[res.output.index("["):])
    assert measured[0]["distinct_clips"] == 48 and measured[0]["source"] == "raw videos"
