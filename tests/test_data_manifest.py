"""Manifests (docs/data.md): the reader's line-by-line checks, the protocols built from its columns, and
train -> evaluate -> predict from a manifest on the command line (synthetic clips and the real MA-52 demo clips)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from piumr.checkpoint import save_checkpoint
from piumr.config import PRESETS, DataConfig
from piumr.data.ma52 import ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, DatasetError
from piumr.data.manifest import ClassInfo, read_manifest, write_manifest
from piumr.data.splits import load_split
from piumr.model import PIUmrNet
from piumr_cli.main import app

runner = CliRunner()
HEADER = "path,label,person,group,domain,split"
CLASSES = "label,name,group\n0,nod,head\n1,shake,head\n2,wave,hand\n"


def _dataset(tmp_path: Path, rows: list[str], header: str = HEADER, classes: str = CLASSES,
             files: tuple[str, ...] = ("a.mp4", "b.mp4", "c.mp4", "d.mp4")) -> Path:
    """A manifest folder with empty clip files (the reader opens no video)."""
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "classes.csv").write_text(classes, encoding="utf-8")
    man = tmp_path / "manifest.csv"
    man.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return man


GOOD = ["a.mp4,0,p1,head,lab,train", "b.mp4,shake,p2,head,home,val", "c.mp4,2,p3,,lab,test"]


def test_reads_records_with_persons_groups_domains(tmp_path: Path) -> None:
    man = read_manifest(_dataset(tmp_path, GOOD))
    assert [r.action for r in man.records] == [0, 1, 2]  # "shake" is class 1 by name
    assert [r.body for r in man.records] == [0, 0, 1]  # groups of classes.csv, in order of appearance
    assert [r.participant for r in man.records] == ["p1", "p2", "p3"]
    assert [r.domain for r in man.records] == ["lab", "home", "lab"]
    assert man.splits == ("train", "val", "test")
    assert man.classes.groups == ("head", "hand") and man.records[0].line == 2


@pytest.mark.parametrize(("rows", "header", "line", "says"), [
    (["a.mp4,3,p1,head,lab,train"], HEADER, 2, "label 3 is outside 0..2"),
    (["a.mp4,-1,p1,head,lab,train"], HEADER, 2, "neither a class index"),
    (["a.mp4,jump,p1,head,lab,train"], HEADER, 2, "label 'jump' is neither"),
    ([GOOD[0], "a.mp4,1,p1,head,lab,train"], HEADER, 3, "duplicate path 'a.mp4' (first on line 2)"),
    (["a.mp4,0,p1,head,lab,train", "gone.mp4,0,p1,head,lab,train"], HEADER, 3, "does not exist"),
    (["../a.mp4,0,p1,head,lab,train"], HEADER, 2, "points outside the manifest's folder"),
    (["/etc/a.mp4,0,p1,head,lab,train"], HEADER, 2, "file /etc/a.mp4 does not exist"),  # absolute: taken as is
    (["sub/../../a.mp4,0,p1,head,lab,train"], HEADER, 2, "points outside the manifest's folder"),
    (["C:\\\\a.mp4,0,p1,head,lab,train"], HEADER, 2, "points outside the manifest's folder"),
    (["a.mp4,2,p1,head,lab,train"], HEADER, 2, "group 'head' disagrees with classes.csv"),
    (["a.mp4,0,p1,head,lab,training"], HEADER, 2, "split 'training' is not one of train, val, test"),
    (["a.mp4,0,p1,head,lab"], HEADER, 2, "5 fields, the header has 6"),
    (["a.mp4,0"], "path,label,persn", 1, "unknown column 'persn'"),  # the header is checked before the rows
    (["a.mp4,p1"], "path,person", 1, "no 'label' column"),
    (["a.mp4,0,0"], "path,label,label", 1, "a column is named twice"),
    ([",0,p1,head,lab,train"], HEADER, 2, "empty path"),
])
def test_bad_manifest_is_one_line_naming_file_and_line(tmp_path: Path, rows: list[str], header: str, line: int,
                                                        says: str) -> None:
    man = _dataset(tmp_path, rows, header)
    with pytest.raises(DatasetError) as e:
        read_manifest(man)
    msg = str(e.value)
    assert msg.startswith(f"{man}:{line}: ") and says in msg and "\n" not in msg


@pytest.mark.parametrize(("classes", "line", "says"), [
    ("label,name\n0,nod\n2,wave\n", 3, "expected label 1"),
    ("label,name\n0,nod\n1,nod\n", 3, "class name 'nod' already on line 2"),
    ("label,name\n0,nod\n1,\n", 3, "empty class name"),
    ("label,title\n0,nod\n", 1, "unknown column 'title'"),
])
def test_bad_classes_file_names_its_line(tmp_path: Path, classes: str, line: int, says: str) -> None:
    man = _dataset(tmp_path, ["a.mp4,0"], "path,label", classes)
    with pytest.raises(DatasetError) as e:
        read_manifest(man)
    assert str(e.value).startswith(f"{tmp_path / 'classes.csv'}:{line}: ") and says in str(e.value)


def test_bad_csv_and_bad_encoding_name_the_file(tmp_path: Path) -> None:
    man = _dataset(tmp_path, ["a.mp4,0", 'b.mp4,"1"z'], "path,label")
    with pytest.raises(DatasetError, match=f"{man}:3: not valid CSV"):
        read_manifest(man)
    man.write_bytes(b"path,label\na\xff.mp4,0\n")
    with pytest.raises(DatasetError, match=f"{man}: not UTF-8 text"):
        read_manifest(man)


def test_missing_classes_file(tmp_path: Path) -> None:
    man = _dataset(tmp_path, ["a.mp4,0"], "path,label")
    (tmp_path / "classes.csv").unlink()
    with pytest.raises(DatasetError, match="classes.csv: no classes file"):
        read_manifest(man)


def test_groups_from_the_manifest_when_classes_declare_none(tmp_path: Path) -> None:
    classes = "label,name\n0,nod\n1,shake\n2,wave\n"
    man = read_manifest(_dataset(tmp_path, ["a.mp4,0,h", "b.mp4,1,h", "c.mp4,2,arm"], "path,label,group", classes))
    assert man.classes.coarse == (0, 0, 1) and man.classes.groups == ("h", "arm")
    with pytest.raises(DatasetError) as e:
        read_manifest(_dataset(tmp_path, ["a.mp4,0,h", "b.mp4,0,arm"], "path,label,group", classes))
    assert str(e.value).startswith(f"{tmp_path / 'manifest.csv'}:3: ") and "group 'h' on line 2" in str(e.value)


def _pool(tmp_path: Path, header: str = "path,label,person,domain") -> Path:
    names = [f"{p}_{i}.mp4" for p in ("p1", "p2", "p3", "p4") for i in range(3)]
    rows = [f"{n},{i % 3},{n[:2]},{'lab' if n[:2] in ('p1', 'p2') else 'home'}" for i, n in enumerate(names)]
    cols = header.split(",")
    keep = [",".join(c for c, h in zip(r.split(","), "path,label,person,domain".split(","), strict=True) if h in cols)
            for r in rows]
    return _dataset(tmp_path, keep, header, files=tuple(names))


def test_cross_subject_folds_are_person_disjoint(tmp_path: Path) -> None:
    cfg = DataConfig(root=str(_pool(tmp_path)), split="cross-subject", folds=2, fold=1, seen_holdout=0)
    train, val = load_split(cfg, "train"), load_split(cfg, "val")
    assert len(train) + len(val) == 12 and val
    assert not {r.participant for r in train} & {r.participant for r in val}


def test_person_disjoint_split_without_person_column(tmp_path: Path) -> None:
    man = _pool(tmp_path, "path,label,domain")
    with pytest.raises(DatasetError) as e:
        load_split(DataConfig(root=str(man), split="cross-subject"), "train")
    assert str(e.value).startswith(f"{man}:1: ") and "'person' column" in str(e.value)


def test_cross_subject_row_without_person_names_its_line(tmp_path: Path) -> None:
    man = _dataset(tmp_path, ["a.mp4,0,p1", "b.mp4,1,", "c.mp4,2,p3"], "path,label,person")
    with pytest.raises(DatasetError) as e:
        load_split(DataConfig(root=str(man), split="cross-subject", folds=2), "train")
    assert str(e.value).startswith(f"{man}:3: ")


def test_hold_out_domain(tmp_path: Path) -> None:
    man = _pool(tmp_path)
    cfg = DataConfig(root=str(man), hold_out="domain=home", seen_holdout=0)
    assert {r.domain for r in load_split(cfg, "val")} == {"home"}
    assert {r.domain for r in load_split(cfg, "train")} == {"lab"}
    with pytest.raises(DatasetError, match="no such domain; the domains are home, lab"):
        load_split(DataConfig(root=str(man), hold_out="domain=beach"), "val")
    no_domain = _pool(tmp_path / "nd", "path,label,person")
    with pytest.raises(DatasetError, match=f"{no_domain}:1: .*needs a 'domain' column"):
        load_split(DataConfig(root=str(no_domain), hold_out="domain=home"), "val")


def test_official_split_needs_a_split_column(tmp_path: Path) -> None:
    man = _pool(tmp_path)
    with pytest.raises(DatasetError, match=f"{man}:1: no 'split' column"):
        load_split(DataConfig(root=str(man)), "train")


def test_cli_rejects_a_bad_manifest_in_one_line(tmp_path: Path) -> None:
    man = _dataset(tmp_path, [GOOD[0], "a.mp4,1,p1,head,lab,val"])
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(man), "--out", str(tmp_path / "run"),
                              "--quiet", "--workers", "0"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert f"{man}:3: duplicate path" in res.output and not (tmp_path / "run").exists()
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(man), "--hold-out", "lab"])
    assert res.exit_code == 2 and "--hold-out" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(man), "--hold-out", "domain=lab",
                              "--split", "cross-subject"])
    assert res.exit_code == 2 and "cannot be combined with split 'cross-subject'" in res.output


# --------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def synth_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``piumr synth --manifest`` at the tiny preset's size, its domain column replaced (odd persons 'studio')."""
    out = tmp_path_factory.mktemp("synth")
    res = runner.invoke(app, ["synth", "--preset", "tiny", "--out", str(out), "--manifest", "--workers", "1"])
    assert res.exit_code == 0, res.output
    man = out / "manifest.csv"
    with man.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"path", "label", "person", "group", "domain", "split"} <= set(rows[0])
    assert {r["domain"] for r in rows} <= {"near", "far"}  # synth's own: the camera's distance
    with man.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "domain": "studio" if int(r["person"]) % 2 else "home"} for r in rows)
    return man


def _train(man: Path, out: Path, *extra: str) -> dict[str, object]:
    res = runner.invoke(app, ["train", "--preset", "tiny", "--data", str(man), "--out", str(out), "--quiet",
                              "--workers", "0", "--epochs", "1", *extra])
    assert res.exit_code == 0, res.output
    metrics: dict[str, object] = json.loads((out / "metrics.json").read_text())
    return metrics


def test_train_and_evaluate_from_a_manifest(synth_manifest: Path, tmp_path: Path) -> None:
    classes = read_manifest(synth_manifest, check_files=False).classes
    m = _train(synth_manifest, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["num_classes"] == len(classes.names) == 14  # one output per classes.csv row
    assert set(m["domains"]) == {"home", "studio"}  # type: ignore[arg-type]
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "run" / "best.safetensors"),
                              "--split", "test", "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    ev = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert ev["participants"]["num_participants"] == 6 and set(ev["domains"]) == {"home", "studio"}
    assert ev["classes"]["groups"] == list(classes.groups) and "domains (top-1): home" in res.output
    assert set(ev["official"]) >= {"label_top1", "label_top5", "group_top1", "group_f1_macro", "f1_mean"}
    assert "Group Top-1 | Label Top-1" in res.output and not any(k.startswith(("action", "body")) for k in ev["official"])
    with (tmp_path / "eval" / "predictions.csv").open() as f:
        assert {r["label_name"] for r in csv.DictReader(f)} <= set(classes.names)
    (tmp_path / "other").mkdir()
    other = _dataset(tmp_path / "other", GOOD)  # 3 classes: not what the model was trained on
    res = runner.invoke(app, ["evaluate", "--checkpoint", str(tmp_path / "run" / "best.safetensors"),
                              "--data", str(other), "--split", "val", "--out", str(tmp_path / "eval2")])
    assert res.exit_code == 2 and f"{other}: its classes.csv has 3 classes, the model 14 outputs" in res.output


def test_person_disjoint_fold_and_held_out_domain(synth_manifest: Path, tmp_path: Path) -> None:
    m = _train(synth_manifest, tmp_path / "fold", "--split", "cross-subject", "--fold", "1")
    held = set(m["participants"]["per_participant"])  # type: ignore[index]
    cfg = DataConfig(root=str(synth_manifest), split="cross-subject", fold=1)
    assert held == {r.participant for r in load_split(cfg, "val")}
    assert not held & {r.participant for r in load_split(cfg, "train")}
    m = _train(synth_manifest, tmp_path / "dom", "--hold-out", "domain=home")
    assert set(m["domains"]) == {"home"}  # type: ignore[arg-type]
    assert set(m["participants"]["per_participant"]) == {"0002", "0004", "0006"}  # type: ignore[index]


def _real_manifest(clips_dir: Path, folder: Path) -> Path:
    """The six MA-52 demo clips as a manifest: MA-52's 52 classes with their body parts as groups."""
    demo = clips_dir / "ma52_demo"
    (folder / "clips").symlink_to(demo, target_is_directory=True)  # the clips stay where they are
    info = ClassInfo(ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES)  # label_name.txt's classes, body parts as groups
    with (demo / "labels.csv").open(encoding="utf-8", newline="") as f:
        rows = [{"path": f"clips/{r['file']}", "label": r["class_index_label_name_txt"],
                 "person": r["clip_id"][:4], "group": r["body_part"], "split": "test"} for r in csv.DictReader(f)]
    return write_manifest(folder / "manifest.csv", rows, info)


def test_predict_real_ma52_clips_from_a_manifest(clips_dir: Path, synth_manifest: Path, tmp_path: Path) -> None:
    man = _real_manifest(clips_dir, tmp_path)
    assert len(read_manifest(man).records) == 6  # the reader's checks pass: labels, groups, files
    _train(synth_manifest, tmp_path / "run", "--max-steps-per-epoch", "1")  # 14 classes, not the manifest's 52
    res = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "run" / "best.safetensors"), "--data",
                              str(man), "--json"])
    assert res.exit_code == 2 and "its classes.csv has 52 classes, the checkpoint 14 outputs" in res.output
    tiny = PRESETS["tiny"]  # 52 outputs named as MA-52's classes: the manifest's
    ckpt = save_checkpoint(tmp_path / "ma52.safetensors", PIUmrNet(tiny.model), tiny, epoch=0, step=0)
    res = runner.invoke(app, ["predict", "--checkpoint", str(ckpt), "--data", str(man), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.output.splitlines() if x.startswith("{")]
    assert sorted(Path(x["file"]).name for x in lines) == sorted(p.name for p in (clips_dir / "ma52_demo").glob("*.mp4"))
    assert all(x["error"] is None and x["top5"][0]["name"] in ACTION_NAMES for x in lines)


def test_prepare_a_manifest_then_train_from_the_cache(synth_manifest: Path, tmp_path: Path) -> None:
    from piumr.data.loaders import build_dataset
    from piumr.data.prepare import PreparedCache

    cache = tmp_path / "cache"
    res = runner.invoke(app, ["prepare", "--data", str(synth_manifest), "--out", str(cache), "--short-side", "36",
                              "--workers", "1"])
    assert res.exit_code == 0, res.output
    man = read_manifest(cache / "manifest.csv")  # the cache is itself a manifest dataset
    tiny = PRESETS["tiny"]
    cfg = tiny.model_copy(update={"data": tiny.data.model_copy(update={"root": str(cache / "manifest.csv")})})
    ds = build_dataset(cfg, load_split(cfg.data, "train"), "train")
    assert isinstance(ds.cache, PreparedCache) and ds[0]["video"].shape == (3, 4, 32, 32)
    from piumr.predict import manifest_inputs

    with pytest.raises(DatasetError, match="a prepared cache holds frames, not videos"):
        manifest_inputs(cache / "manifest.csv")
    first = man.records[0]
    first.path.with_name(first.path.name + ".jpgs").unlink()
    with pytest.raises(DatasetError, match=f"{cache / 'manifest.csv'}:2: file .*\\.jpgs does not exist"):
        read_manifest(cache / "manifest.csv")


def test_reproduce_from_a_manifest(synth_manifest: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["reproduce", "table2", "--data", str(synth_manifest), "--preset", "tiny", "--epochs",
                              "1", "--max-steps-per-epoch", "1", "--out", str(tmp_path / "rep"), "--quiet"])
    assert res.exit_code == 0, res.output
    table = json.loads((tmp_path / "rep" / "table2" / "table.json").read_text())
    assert len(table["rows"]) == 4


def test_doctor_reports_a_manifest(tmp_path: Path) -> None:
    from piumr.doctor.data import data_report

    rep = data_report(DataConfig(root=str(_dataset(tmp_path, GOOD))))
    assert rep["kind"] == "manifest" and rep["splits"] == {"train": 1, "val": 1, "test": 1} and rep["cache"] is None
