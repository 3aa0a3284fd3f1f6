"""Tests for piumr.metrics: official MA-52 metrics against scikit-learn, hand-computed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from piumr.metrics import (
    PAPER_COLUMNS,
    SUBMISSION_HEADER,
    EvalResult,
    confusion,
    evaluate_scores,
    format_table,
    official_metrics,
    participant_metrics,
    per_class_accuracy,
    topk_submission_rows,
)

# The official 52 -> 7 mapping, written out independently of the module under test.
BODY_OF = {a: 0 for a in range(0, 5)}
BODY_OF.update({a: 1 for a in range(5, 11)})
BODY_OF.update({a: 2 for a in range(11, 24)})
BODY_OF.update({a: 3 for a in range(24, 32)})
BODY_OF.update({a: 4 for a in range(32, 38)})
BODY_OF.update({a: 5 for a in range(38, 48)})
BODY_OF.update({a: 6 for a in range(48, 52)})

CLASSES_TSV = Path(__file__).resolve().parents[2] / "shared" / "ma52" / "classes.tsv"

KEYS = (
    "body_top1",
    "action_top1",
    "action_top5",
    "body_f1_macro",
    "body_f1_micro",
    "action_f1_macro",
    "action_f1_micro",
    "f1_mean",
)

# sklearn warns (UndefinedMetricWarning) on labels never predicted; the official code ignores it.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")


def one_hot_scores(pred: list[int], num_classes: int = 52) -> np.ndarray:
    s = np.zeros((len(pred), num_classes))
    s[np.arange(len(pred)), pred] = 1.0
    return s


def sklearn_reference(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Official evaluation re-done with sklearn + an independent top-5 count."""
    pred = scores.argmax(axis=1)
    bt = np.array([BODY_OF[int(a)] for a in labels])
    bp = np.array([BODY_OF[int(a)] for a in pred])
    k = min(5, scores.shape[1])
    true_score = scores[np.arange(len(labels)), labels]
    # continuous random scores: no ties, so "fewer than k classes score higher" == in top-k
    n_higher = (scores > true_score[:, None]).sum(axis=1)
    out = {
        "body_top1": 100 * accuracy_score(bt, bp),
        "action_top1": 100 * accuracy_score(labels, pred),
        "action_top5": 100 * float(np.mean(n_higher < k)),
        "body_f1_macro": 100 * f1_score(bt, bp, average="macro"),
        "body_f1_micro": 100 * f1_score(bt, bp, average="micro"),
        "action_f1_macro": 100 * f1_score(labels, pred, average="macro"),
        "action_f1_micro": 100 * f1_score(labels, pred, average="micro"),
    }
    out["f1_mean"] = (
        out["body_f1_macro"] + out["body_f1_micro"] + out["action_f1_macro"] + out["action_f1_micro"]
    ) / 4
    return out


def assert_matches(got: dict[str, float], ref: dict[str, float]) -> None:
    assert set(got) == set(KEYS)
    for key in KEYS:
        assert got[key] == pytest.approx(ref[key], abs=1e-9), key


# ------------------------------------------------------------------ random vs sklearn
@pytest.mark.parametrize("seed", range(50))
def test_random_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    # labels drawn from a random subset of the classes, so many classes never occur
    subset = rng.choice(52, size=int(rng.integers(1, 53)), replace=False)
    labels = rng.choice(subset, size=n)
    scores = rng.normal(size=(n, 52))
    # make predictions partly right so F1 is not trivially ~0
    boost = rng.random(n) < rng.random()
    scores[np.arange(n)[boost], labels[boost]] += 3.0
    assert_matches(official_metrics(scores, labels), sklearn_reference(scores, labels))


@pytest.mark.parametrize("seed", range(20))
def test_random_predictions_confined_to_few_classes(seed: int) -> None:
    """Predictions only ever land in a few classes, labels in others: union-of-labels macro."""
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 60))
    labels = rng.choice(rng.choice(52, size=3, replace=False), size=n)
    scores = rng.normal(size=(n, 52)) - 100.0
    pred_classes = rng.choice(52, size=2, replace=False)
    scores[np.arange(n), rng.choice(pred_classes, size=n)] = 10.0 + rng.random(n)
    assert_matches(official_metrics(scores, labels), sklearn_reference(scores, labels))


def test_macro_is_not_over_all_52_classes() -> None:
    labels = np.array([3, 3, 7])
    scores = one_hot_scores([3, 3, 7])
    m = official_metrics(scores, labels)
    assert m["action_f1_macro"] == pytest.approx(100.0)  # averaging over 52 would give 2/52*100


def test_single_class() -> None:
    labels = np.full(10, 17)
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(10, 52))
    assert_matches(official_metrics(scores, labels), sklearn_reference(scores, labels))
    perfect = official_metrics(one_hot_scores([17] * 10), labels)
    assert all(perfect[k] == pytest.approx(100.0) for k in KEYS)


@pytest.mark.parametrize("seed", range(10))
def test_n_equals_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=(1, 52))
    labels = rng.integers(0, 52, size=1)
    assert_matches(official_metrics(scores, labels), sklearn_reference(scores, labels))


@pytest.mark.parametrize("seed", range(10))
def test_micro_f1_equals_top1(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    m = official_metrics(rng.normal(size=(n, 52)), rng.integers(0, 52, size=n))
    assert m["action_f1_micro"] == pytest.approx(m["action_top1"])
    assert m["body_f1_micro"] == pytest.approx(m["body_top1"])


def test_torch_input_equals_numpy() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(50, 52)).astype(np.float32)
    labels = rng.integers(0, 52, size=50)
    ref = official_metrics(scores, labels)
    got = official_metrics(torch.from_numpy(scores).requires_grad_(), torch.from_numpy(labels))
    assert got == ref


# ------------------------------------------------------------------ hand-computed
def test_hand_computed_example() -> None:
    #   row  label  pred   body label/pred   top-5 of the row
    #   1     0      0        0 / 0          hit
    #   2     0      1        0 / 0          true label is 5th -> hit
    #   3     5      5        1 / 1          hit
    #   4    23     11        2 / 2          true label is 6th -> miss
    #   5    24      0        3 / 0          true label is 2nd -> hit
    #   6    51     51        6 / 6          hit
    labels = np.array([0, 0, 5, 23, 24, 51])
    s = np.zeros((6, 52))
    s[0, 0] = 1.0
    s[1, [1, 2, 3, 4, 0]] = [10, 9, 8, 7, 6]
    s[2, 5] = 1.0
    s[3, [11, 12, 13, 14, 15, 23]] = [10, 9, 8, 7, 6, 5]
    s[4, [0, 24]] = [10, 9]
    s[5, 51] = 1.0
    m = official_metrics(s, labels)
    # action top-1: rows 1,3,6 -> 3/6
    assert m["action_top1"] == pytest.approx(50.0)
    # body top-1: all but row 5 -> 5/6
    assert m["body_top1"] == pytest.approx(500 / 6)
    # top-5: all but row 4 -> 5/6
    assert m["action_top5"] == pytest.approx(500 / 6)
    # action labels in y_true U y_pred: {0,1,5,11,23,24,51} (7 labels)
    # F1 per label = 2TP/(n_true+n_pred): 0 -> 2/(2+2)=0.5, 5 -> 1, 51 -> 1, others 0  => 2.5/7
    assert m["action_f1_macro"] == pytest.approx(250 / 7)
    assert m["action_f1_micro"] == pytest.approx(50.0)
    # body labels {0,1,2,3,6}: 0 -> 4/(2+3)=0.8, 1 -> 1, 2 -> 1, 3 -> 0, 6 -> 1  => 3.8/5
    assert m["body_f1_macro"] == pytest.approx(76.0)
    assert m["body_f1_micro"] == pytest.approx(500 / 6)
    # (76 + 250/3 + 250/7 + 50) / 4 = 5146/84
    assert m["f1_mean"] == pytest.approx(5146 / 84)


def test_true_label_fifth_vs_sixth() -> None:
    s = np.zeros((2, 52))
    s[0, [40, 41, 42, 43, 9]] = [5, 4, 3, 2, 1]  # label 9 is 5th -> hit
    s[1, [40, 41, 42, 43, 44, 9]] = [6, 5, 4, 3, 2, 1]  # label 9 is 6th -> miss
    assert official_metrics(s[:1], [9])["action_top5"] == pytest.approx(100.0)
    assert official_metrics(s[1:], [9])["action_top5"] == pytest.approx(0.0)
    assert official_metrics(s, [9, 9])["action_top5"] == pytest.approx(50.0)


def test_topk_with_fewer_than_five_classes() -> None:
    s = np.array([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05]])
    m = official_metrics(s, [0, 2])  # k = min(5, 3) = 3 -> every label is in the top-3
    assert m["action_top5"] == pytest.approx(100.0)
    assert m["action_top1"] == pytest.approx(0.0)


def test_ties_take_lowest_index() -> None:
    s = np.zeros((1, 52))  # all tied: prediction = class 0, top-5 = classes 0..4
    assert official_metrics(s, [0])["action_top1"] == pytest.approx(100.0)
    assert official_metrics(s, [4])["action_top5"] == pytest.approx(100.0)
    assert official_metrics(s, [5])["action_top5"] == pytest.approx(0.0)
    row = topk_submission_rows(["x.mp4"], s)[0]
    assert row[1:6] == [0, 1, 2, 3, 4]


# ------------------------------------------------------------------ body mapping
@pytest.mark.parametrize("action", range(52))
def test_every_action_maps_to_its_body(action: int) -> None:
    row = topk_submission_rows(["v.mp4"], one_hot_scores([action]))[0]
    assert row[1] == action
    assert row[6] == BODY_OF[action]


def test_body_mapping_ranges_literal() -> None:
    ranges = [(0, 4), (5, 10), (11, 23), (24, 31), (32, 37), (38, 47), (48, 51)]
    for body, (lo, hi) in enumerate(ranges):
        labels = np.arange(lo, hi + 1)
        # predict the first action of the next body group (wraps): body always wrong
        wrong = (hi + 1) % 52
        m = official_metrics(one_hot_scores([wrong] * len(labels)), labels)
        assert m["body_top1"] == pytest.approx(0.0)
        # predict the first action of the same group: body always right
        m = official_metrics(one_hot_scores([lo] * len(labels)), labels)
        assert m["body_top1"] == pytest.approx(100.0)


def test_pred_11_for_true_23_is_body_correct() -> None:
    m = official_metrics(one_hot_scores([11]), [23])
    assert m["action_top1"] == pytest.approx(0.0)
    assert m["body_top1"] == pytest.approx(100.0)
    assert m["body_f1_macro"] == pytest.approx(100.0)


@pytest.mark.skipif(not CLASSES_TSV.exists(), reason="shared/ma52/classes.tsv not available")
def test_mapping_matches_shared_class_table() -> None:
    # first table of the file (fine_idx, fine_name, body_idx, ...) ends at the first blank line
    lines = [ln for ln in CLASSES_TSV.read_text().splitlines() if not ln.startswith("#")]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("fine_idx"))
    end = lines.index("", start)
    rows = [ln.split("\t") for ln in lines[start + 1 : end]]
    assert len(rows) == 52
    for r in rows:
        action, body = int(r[0]), int(r[2])
        got = topk_submission_rows(["v.mp4"], one_hot_scores([action]))[0]
        assert got[6] == body


# ------------------------------------------------------------------ beyond the paper
def test_per_class_accuracy_and_confusion() -> None:
    labels = [0, 0, 0, 2, 2, 5]
    pred = [0, 1, 0, 2, 0, 1]
    pc = per_class_accuracy(pred, labels, 6)
    assert pc == {0: pytest.approx(200 / 3), 2: pytest.approx(50.0), 5: pytest.approx(0.0)}
    cm = confusion(pred, labels, 6)
    assert cm.shape == (6, 6)
    assert cm[0, 0] == 2 and cm[0, 1] == 1 and cm[2, 2] == 1 and cm[2, 0] == 1 and cm[5, 1] == 1
    assert cm.sum() == 6
    np.testing.assert_array_equal(cm, confusion_matrix(labels, pred, labels=range(6)))


def test_confusion_random_vs_sklearn() -> None:
    rng = np.random.default_rng(7)
    y, p = rng.integers(0, 52, 300), rng.integers(0, 52, 300)
    np.testing.assert_array_equal(confusion(p, y, 52), confusion_matrix(y, p, labels=range(52)))


def test_participants_hand_built() -> None:
    #        A: 3/4 correct = 75, B: 0/2 = 0, C: 1/1 = 100, "": excluded (both wrong)
    parts = ["A", "A", "A", "A", "B", "B", "C", "", ""]
    labels = [1, 2, 3, 4, 5, 6, 7, 8, 9]
    pred = [1, 2, 3, 0, 0, 0, 7, 0, 0]
    pm = participant_metrics(pred, labels, parts)
    assert pm["per_participant"] == {"A": pytest.approx(75.0), "B": pytest.approx(0.0), "C": pytest.approx(100.0)}
    assert pm["num_participants"] == 3
    assert pm["num_unknown_excluded"] == 2
    assert pm["mean"] == pytest.approx(175 / 3)
    # population std: deviations 50/3, -175/3, 125/3
    assert pm["std"] == pytest.approx(math.sqrt((2500 + 30625 + 15625) / 9 / 3))
    assert pm["worst_id"] == "B" and pm["worst_acc"] == pytest.approx(0.0)
    assert pm["num_worst10"] == 1  # ceil(0.3)
    assert pm["worst10_acc"] == pytest.approx(0.0)


def test_worst10_eleven_participants() -> None:
    # participant p<i> has 10 clips, i of them correct -> accuracy 10*i; ceil(1.1) = 2 worst
    parts, labels, pred = [], [], []
    for i in range(11):
        for j in range(10):
            parts.append(f"p{i:02d}")
            labels.append(0)
            pred.append(0 if j < i else 1)
    pm = participant_metrics(pred, labels, parts)
    assert pm["num_worst10"] == 2
    assert pm["worst10_acc"] == pytest.approx(5.0)  # mean(0, 10)
    assert pm["worst_id"] == "p00"
    assert pm["mean"] == pytest.approx(50.0)


def test_worst10_thirty_participants_is_exactly_three() -> None:
    # 30 participants, 2 clips each: p00, p01 -> 0 %, p02, p03 -> 50 %, rest 100 %.
    parts, labels, pred = [], [], []
    n_correct = {0: 0, 1: 0, 2: 1, 3: 1}
    for i in range(30):
        for j in range(2):
            parts.append(f"p{i:02d}")
            labels.append(3)
            pred.append(3 if j < n_correct.get(i, 2) else 4)
    pm = participant_metrics(pred, labels, parts)
    assert pm["num_worst10"] == 3
    assert pm["worst10_acc"] == pytest.approx(50 / 3)  # mean(0, 0, 50); 4 worst would give 25
    assert pm["worst_id"] == "p00"  # tie with p01 broken by the smaller id


def test_participants_all_unknown_raises() -> None:
    with pytest.raises(ValueError, match="known participant"):
        participant_metrics([0, 1], [0, 1], ["", ""])


def test_participants_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        participant_metrics([0, 1], [0, 1], ["a"])


# ------------------------------------------------------------------ evaluate_scores / output
def test_evaluate_scores_bundle_and_json() -> None:
    rng = np.random.default_rng(11)
    scores = rng.normal(size=(40, 52))
    labels = rng.integers(0, 52, 40)
    parts = [f"{i % 5:04d}" for i in range(39)] + [""]
    res = evaluate_scores(torch.from_numpy(scores), labels, parts)
    assert isinstance(res, EvalResult)
    assert res.official == official_metrics(scores, labels)
    pred = scores.argmax(axis=1)
    assert res.per_class == per_class_accuracy(pred, labels, 52)
    np.testing.assert_array_equal(res.confusion, confusion(pred, labels, 52))
    assert res.participants is not None and res.participants["num_participants"] == 5
    js = res.to_json()
    assert json.loads(json.dumps(js)) == js
    assert isinstance(js["confusion"], list)
    with pytest.raises(AttributeError):
        res.official = {}  # type: ignore[misc]
    assert evaluate_scores(scores, labels).participants is None
    assert evaluate_scores(scores, labels).to_json()["participants"] is None


def test_paper_columns_and_table() -> None:
    assert [k for k, _ in PAPER_COLUMNS] == list(KEYS)
    assert [n for _, n in PAPER_COLUMNS] == [
        "Body Top-1",
        "Action Top-1",
        "Action Top-5",
        "Body F1_macro",
        "Body F1_micro",
        "Action F1_macro",
        "Action F1_micro",
        "F1_mean",
    ]
    # paper Table 1, PIUmr row
    paper = dict(zip(KEYS, [80.95, 63.18, 89.87, 75.51, 80.95, 52.79, 63.18, 68.11], strict=True))
    header, values = format_table(paper).splitlines()
    names = [c.strip() for c in header.split("|")]
    assert names == [n for _, n in PAPER_COLUMNS]
    assert [c.strip() for c in values.split("|")] == ["80.95", "63.18", "89.87", "75.51", "80.95", "52.79", "63.18", "68.11"]
    with pytest.raises(KeyError):
        format_table({"body_top1": 1.0})


def test_submission_rows() -> None:
    assert SUBMISSION_HEADER == [
        "vid",
        "action_pred_1",
        "action_pred_2",
        "action_pred_3",
        "action_pred_4",
        "action_pred_5",
        "body_pred_1",
        "body_pred_2",
        "body_pred_3",
        "body_pred_4",
        "body_pred_5",
    ]
    s = np.zeros((2, 52))
    s[0, [51, 49, 35, 14, 19]] = [5, 4, 3, 2, 1]
    s[1, [9, 10, 0, 23, 48]] = [0.9, 0.8, 0.7, 0.6, 0.5]
    rows = topk_submission_rows(["test0000.mp4", "test0001.mp4"], torch.from_numpy(s))
    assert rows[0] == ["test0000.mp4", 51, 49, 35, 14, 19, 6, 6, 4, 2, 2]
    assert rows[1] == ["test0001.mp4", 9, 10, 0, 23, 48, 1, 1, 0, 2, 6]
    assert all(type(v) is int for v in rows[0][1:])
    assert len(rows[0]) == len(SUBMISSION_HEADER)


def test_submission_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        topk_submission_rows(["a/test0000.mp4"], np.zeros((1, 52)))
    with pytest.raises(ValueError):
        topk_submission_rows(["a.mp4", "b.mp4"], np.zeros((1, 52)))
    with pytest.raises(ValueError):
        topk_submission_rows(["a.mp4"], np.zeros((1, 7)))


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError):
        official_metrics(np.zeros((2, 52)), [0])  # length mismatch
    with pytest.raises(ValueError):
        official_metrics(np.zeros((1, 52)), [52])  # label out of range
    with pytest.raises(ValueError):
        official_metrics(np.zeros((1, 53)), [0])  # more than 52 classes
    with pytest.raises(ValueError):
        official_metrics(np.full((1, 52), np.nan), [0])
    with pytest.raises(ValueError):
        official_metrics(np.zeros((0, 52)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError):
        official_metrics(np.zeros((1, 52)), [0.5])
