"""Task v2 (classes that differ only in time) and the controlled person shifts."""

from __future__ import annotations

import numpy as np
import pytest

from piumr.data.ma52 import ACTION_TO_BODY
from piumr.data.synth.motions import _Ctx
from piumr.data.synth.persons import make_person
from piumr.data.synth.shift import FACTORS, MIXED_HELD, RANGES, ShiftSizes, shifted_attrs, build_clips, fold_persons, shift_person
from piumr.data.synth.temporal import V2_CLASSES, V2_NAMES, _bumps


def test_v2_has_three_classes_per_body_part() -> None:
    assert len(V2_CLASSES) == 21 == len(V2_NAMES)
    bodies = [ACTION_TO_BODY[lab] for lab in V2_CLASSES]
    assert sorted(set(bodies)) == list(range(7))
    assert all(bodies.count(b) == 3 for b in range(7))


def test_v2_patterns_differ_in_time_not_in_pose() -> None:
    """once returns to rest, stay ends at the reached pose, twice has two separate peaks; all reach ~1."""
    for seed in range(5):
        p = make_person(0, seed + 1)
        once = _bumps(_Ctx(p, 32, np.random.default_rng(seed)), 1, stay=False)
        twice = _bumps(_Ctx(p, 32, np.random.default_rng(seed)), 2, stay=False)
        stay = _bumps(_Ctx(p, 32, np.random.default_rng(seed)), 1, stay=True)
        for w in (once, twice, stay):
            assert w.max() > 0.8 and w[0] < 0.3
        assert once[-1] < 0.3 and twice[-1] < 0.3 and stay[-1] > 0.7
        ups = np.flatnonzero((twice[1:] > 0.5) & (twice[:-1] <= 0.5))
        assert len(ups) == 2, twice.round(2)


def _in(x: float, union: tuple[tuple[float, float], ...]) -> bool:
    return any(a <= x <= b for a, b in union)


@pytest.mark.parametrize("factor", FACTORS)
def test_held_out_persons_leave_the_training_range_on_their_factor_only(factor: str) -> None:
    shifted = set(RANGES) if factor == "mixed" else {factor}
    checked = {"tempo": "tempo", "cam_scale": "size", "amplitude": "style", "ease": "style", "tremor": "style",
               "noise": "appearance"}
    for pid in range(1, 15):
        for held in (False, True):
            person = shift_person(factor, 0, pid, held)
            for attr, f in {**checked, "hold": "style"}.items():
                train, test = RANGES[f][attr]
                if factor == "mixed":  # mixed's own, milder held-out ranges (still outside the training range)
                    test = MIXED_HELD.get(attr, test)
                x = person.hold if attr == "hold" else getattr(person.attrs, attr)
                if held and f in shifted and attr in shifted_attrs(f):
                    assert _in(x, test) and not _in(x, train), (factor, attr, x)
                else:
                    assert _in(x, train), (factor, attr, x)


def test_folds_hold_out_disjoint_persons_and_bad_folds_are_refused() -> None:
    sizes = ShiftSizes(folds=4, test_persons_per_fold=10)
    groups = [set(fold_persons(sizes, k)) for k in range(4)]
    assert len(set().union(*groups)) == 40
    with pytest.raises(ValueError, match="fold 4 is out of range"):
        fold_persons(sizes, 4)
    with pytest.raises(ValueError, match="unknown shift factor"):
        shift_person("colour", 0, 1, True)


def test_build_clips_is_deterministic_and_person_disjoint() -> None:
    sizes = ShiftSizes(train_persons=3, test_persons_per_fold=2, folds=2, clips_per_person=21, frames=6, size=32)
    a = build_clips("mixed", sizes, fold=1)
    b = build_clips("mixed", sizes, fold=1)
    c = build_clips("mixed", sizes, fold=0)
    for k in ("train", "seen", "unseen"):
        assert np.array_equal(a[k].video, b[k].video) and np.array_equal(a[k].labels, b[k].labels)
    assert a["train"].video.shape[1:] == (6, 32, 32, 3)
    assert len(a["train"]) + len(a["seen"]) == 3 * 21
    assert set(a["seen"].persons) == set(a["train"].persons) == {1, 2, 3}
    assert set(a["unseen"].persons) == {1003, 1004} and set(c["unseen"].persons) == {1001, 1002}
    assert np.array_equal(a["train"].video, c["train"].video)  # the fold changes only the held-out persons


def test_a_fold_on_synthetic_v1_data_is_refused_not_ignored() -> None:
    """Before, ``--fold 3`` on the generated cross-subject root silently gave fold 0's persons."""
    from piumr.config import PRESETS, with_overrides
    from piumr.data.ma52 import DatasetError
    from piumr.data.splits import load_split

    cfg = with_overrides(PRESETS["tiny"], {"data.split": "cross-subject"}).data
    assert load_split(cfg, "val", progress=False)  # fold 0: the generated split
    bad = with_overrides(PRESETS["tiny"], {"data.split": "cross-subject", "data.fold": 3}).data
    with pytest.raises(DatasetError, match="--fold 3: synthetic data"):
        load_split(bad, "val", progress=False)


def test_style_shifts_brisk_movers_only_and_tremor_is_drawn_but_not_shifted() -> None:
    assert shifted_attrs("style") == ("amplitude", "ease", "hold")
    train, held = RANGES["style"]["tremor"]
    assert train == held
    for pid in range(1001, 1011):
        p = shift_person("style", 0, pid, True)
        assert p.attrs.amplitude >= 1.5 and p.attrs.ease >= 2.0 and p.hold <= 0.3 and p.attrs.tremor <= 0.05


def test_every_held_out_interval_lies_outside_its_training_interval() -> None:
    # suite v2's calibrated ranges (RANGES and mixed's MIXED_HELD) included: an overlap would score held-out
    # persons who are training persons on that attribute
    def overlaps(a: tuple[tuple[float, float], ...], b: tuple[tuple[float, float], ...]) -> bool:
        return any(lo1 < hi2 and lo2 < hi1 for lo1, hi1 in a for lo2, hi2 in b)  # touching ends are apart

    for f, attrs in RANGES.items():
        for attr, (train, held) in attrs.items():
            if attr in shifted_attrs(f):
                assert not overlaps(train, held), (f, attr)
                assert not overlaps(train, MIXED_HELD.get(attr, held)), ("mixed", attr)
    assert set(MIXED_HELD) <= {a for f in RANGES for a in shifted_attrs(f)}
