"""``piumr.evaluate``: metrics from collected scores (MA-52's classes or a manifest's), the per-clip top-k file,
and a model refused for a data set of other classes before any clip is scored."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from piumr.config import get_preset, with_overrides
from piumr.data.manifest import ClassInfo
from piumr.errors import DatasetError
from piumr.evaluate import Scores, evaluate_checkpoint, score_metrics, write_predictions_csv


def _scores(labels: list[int], predicted: list[int], classes: int, persons: list[str]) -> Scores:
    probs = np.full((len(labels), classes), 0.1 / (classes - 1))
    probs[np.arange(len(labels)), predicted] = 0.9
    return Scores(probs, np.asarray(labels), persons, [f"clips/{i}.mp4" for i in range(len(labels))])


def test_metrics_of_ma52_scores_per_participant() -> None:
    s = _scores([0, 1, 2, 3], [0, 1, 2, 0], 52, ["p1", "p1", "p2", "p2"])
    r = score_metrics(s)
    assert r.official["action_top1"] == pytest.approx(75.0)
    assert r.participants is not None and dict(r.participants["per_participant"]) == {"p1": 100.0, "p2": 50.0}
    assert r.confusion.shape == (52, 52) and r.confusion[3, 0] == 1


def test_a_manifest_s_groups_and_words_are_used() -> None:
    classes = ClassInfo(("nod", "shake", "wave"), (0, 0, 1), ("head", "hand"))  # words: label / group
    s = _scores([0, 1, 2], [1, 1, 2], 3, ["", "", ""])  # nod taken for shake: right group, wrong label
    r = score_metrics(s, classes)
    assert r.participants is None  # no person ids
    official = r.to_json()["official"]
    assert isinstance(official, dict)
    assert official["group_top1"] == pytest.approx(100.0) and official["label_top1"] == pytest.approx(200 / 3)


def test_predictions_list_the_top_k_in_order(tmp_path: Path) -> None:
    s = _scores([2, 0], [2, 1], 3, ["p1", "p2"])
    s.probs[0] = [0.05, 0.15, 0.8]
    write_predictions_csv(tmp_path / "p.csv", s, top=2, classes=ClassInfo(("a", "b", "c"), (0, 0, 0), ("all",)))
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [(r["label_name"], r["pred_1"], r["prob_1"], r["pred_2"], r["prob_2"]) for r in rows] == [
        ("c", "2", "0.800000", "1", "0.150000"), ("a", "1", "0.900000", "0", "0.050000")]
    assert "pred_3" not in rows[0]


def test_a_model_of_other_classes_is_refused_before_scoring(tmp_path: Path) -> None:
    (tmp_path / "classes.csv").write_text("label,name\n0,nod\n1,wave\n")
    (tmp_path / "c.mp4").write_bytes(b"never decoded")
    (tmp_path / "m.csv").write_text("path,label,split\nc.mp4,0,val\n")
    cfg = get_preset("tiny")
    data = with_overrides(cfg, {"data.root": str(tmp_path / "m.csv")}).data
    with pytest.raises(DatasetError, match=f"its classes.csv has 2 classes, the model {cfg.model.num_classes} outputs"):
        evaluate_checkpoint(torch.nn.Identity(), cfg, split="val", out_dir=None, device=torch.device("cpu"),
                            progress=False, data=data)
