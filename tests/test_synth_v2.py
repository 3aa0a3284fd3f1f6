"""Task v2 in the MA-52 mp4 format: ``generate(..., task=2)`` (the demo's data); tiny sizes, a few seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest

from piumr.config import DataConfig, get_preset
from piumr.data.splits import synth_params
from piumr.data.synth import generate, make_person, render_clip, synth_key
from piumr.data.synth.generation import MARKER
from piumr.data.synth.temporal import V2_CLASSES, V2_NAMES, v2_motion
from piumr.errors import DatasetError

V2 = dict(persons=2, clips_per_person=21, classes_per_body=3, frames=8, size=32, seed=3, progress=False)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _labels(root: Path) -> dict[str, int]:
    out = {}
    for split in ("train", "val", "test"):
        for line in (root / f"{split}_list_videos.txt").read_text().splitlines():
            name, lab = line.split()
            out[f"{split}/{name}"] = int(lab)
    return out


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]).astype(np.float64)


def test_task2_is_deterministic_with_21_classes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", task=2, workers=1, **V2)  # type: ignore[arg-type]
    generate(tmp_path / "b", task=2, workers=2, **V2)  # type: ignore[arg-type]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # byte-identical mp4s, whatever the worker count
    assert a.classes == tuple(sorted(V2_CLASSES)) and len(a.classes) == 21
    assert set(_labels(tmp_path / "a").values()) == set(V2_CLASSES)  # 21 clips per person: every class
    meta = json.loads((tmp_path / "a" / "synth_meta.json").read_text())
    assert meta["task"] == 2 and meta["version"] == "2"
    assert [c["shows"] for c in meta["classes"]] == [V2_NAMES[c] for c in a.classes]
    marker = json.loads((tmp_path / "a" / MARKER).read_text())
    assert marker["task"] == 2 and marker["version"] == "2"


def test_task2_clips_show_the_temporal_motions(tmp_path: Path) -> None:
    """Each mp4 is the task-v2 motion of its label (the renderer with ``v2_motion``, the persons of ``make_person``):
    closer to that rendering than to task v1's motion of the same label, person and clip seed."""
    generate(tmp_path / "v2", task=2, workers=1, **V2)  # type: ignore[arg-type]
    generate(tmp_path / "v1", task=1, workers=1, **V2)  # type: ignore[arg-type]
    labels = _labels(tmp_path / "v2")
    assert labels == _labels(tmp_path / "v1")  # same plan: persons, labels and splits
    assert _digest(tmp_path / "v2") != _digest(tmp_path / "v1")
    for rel, lab in list(labels.items())[:10]:
        got = _decode(tmp_path / "v2" / rel)
        person = make_person(3, int(Path(rel).name[:4]))
        clip_seed = int(np.random.default_rng([3, 2, person.pid, int(Path(rel).stem[-4:])]).integers(0, 2**63 - 1))
        want = render_clip(person, lab, 8, 32, clip_seed, motion=v2_motion(lab)).astype(np.float64)
        v1 = render_clip(person, lab, 8, 32, clip_seed).astype(np.float64)
        assert np.abs(got - want).mean() < np.abs(got - v1).mean(), rel


def test_task_in_cache_key_and_marker(tmp_path: Path) -> None:
    kw = dict(persons=4, clips_per_person=6, classes_per_body=3, frames=8, size=32, seed=0)
    assert synth_key(**kw) == synth_key(**kw, task=1)  # task v1's cache names are unchanged
    assert synth_key(**kw).startswith("synth-v1-")
    assert synth_key(**kw, task=2).startswith("synth-v2-") and synth_key(**kw, task=2) != synth_key(**kw)
    generate(tmp_path / "s", task=1, workers=1, progress=False, **kw)  # type: ignore[arg-type]
    assert "task" not in json.loads((tmp_path / "s" / MARKER).read_text())  # v1's marker as before
    with pytest.raises(DatasetError, match="task 1"):  # a v1 set is not taken for the v2 set of the same sizes
        generate(tmp_path / "s", task=2, workers=1, progress=False, **kw)  # type: ignore[arg-type]


def test_task2_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes_per_body"):
        generate(tmp_path / "x", task=2, classes_per_body=4, progress=False)
    with pytest.raises(ValueError, match="task"):
        generate(tmp_path / "x", task=3, progress=False)
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="classes per body"):
        DataConfig(synth_task=2, synth_classes_per_body=4)


def test_demo_preset_asks_for_task2() -> None:
    d = get_preset("demo").data
    assert synth_params(d)["task"] == 2 and d.synth_classes_per_body == 3
    assert synth_params(DataConfig())["task"] == 1  # the default stays task v1


def test_every_task_is_one_entry_of_the_table() -> None:
    """The generator dispatches every task through ``tasks.TASKS``; the config allows exactly those tasks and
    bounds classes per body part by the same fixed sets."""
    from piumr.config import SYNTH_TASK_CLASSES
    from piumr.data.synth.tasks import TASKS
    from piumr.data.synth.temporal import PATTERNS

    bounds = DataConfig.model_fields["synth_task"].metadata
    lo, hi = (next(getattr(m, k) for m in bounds if hasattr(m, k)) for k in ("ge", "le"))
    assert set(TASKS) == set(range(lo, hi + 1))
    assert SYNTH_TASK_CLASSES == {t: s.per_body for t, s in TASKS.items() if s.per_body} == {2: PATTERNS}
    assert TASKS[1].motion(0) is None and TASKS[2].motion(min(V2_NAMES)) is not None
    assert dict(TASKS[2].shows) == V2_NAMES and not TASKS[1].shows
    with pytest.raises(ValueError, match=r"task 2 has 3 classes per body part \(once, twice, stay\): classes per "
                                         r"body 4 must be 1\.\.3"):
        DataConfig(synth_task=2, synth_classes_per_body=4)
