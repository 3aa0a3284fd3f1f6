"""The synthetic task versions, one :class:`SynthTask` each in :data:`TASKS`, keyed by ``task``
(``DataConfig.synth_task``, ``piumr synth --task``): everything ``generation`` does differently per task is a
field here, so a new task is one entry (and its motions module), not a branch in the generator.

- task 1 (``actions``): one motion per MA-52 class, ``classes_per_body`` of each body group's priority list;
- task 2 (``temporal``): per body part once / twice / stay, classes that differ only in time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from piumr.data.manifest import MA52_CLASSES, ClassInfo
from piumr.data.synth.motions import _Ctx, _Motion
from piumr.data.synth.temporal import GENERATOR_VERSION_V2, PATTERNS, V2_NAMES, v2_motion

__all__ = ["GENERATOR_VERSION", "SynthTask", "TASKS", "task_classes"]

#: the generator version of task v1 (the mp4 set of ``generation.generate(task=1)``)
GENERATOR_VERSION = "1"

MotionFn = Callable[[_Ctx, _Motion], None]


def _own_motion(label: int) -> MotionFn | None:
    """Task v1: every class moves as its ``actions`` motion (``render_clip``'s default)."""
    return None


@dataclass(frozen=True)
class SynthTask:
    """What one task version renders and records."""

    version: str  # the generator version in the set's marker, metadata and cache name
    motion: Callable[[int], MotionFn | None]  # label -> the clip's motion (None: the class's task-v1 motion)
    per_body: tuple[str, ...] = ()  # the classes each body part has, when fixed (bounds classes_per_body)
    shows: Mapping[int, str] = field(default_factory=dict)  # label -> what it shows (synth_meta.json "shows")


TASKS: dict[int, SynthTask] = {
    1: SynthTask(GENERATOR_VERSION, _own_motion),
    2: SynthTask(GENERATOR_VERSION_V2, v2_motion, PATTERNS, V2_NAMES),
}


def task_classes(task: int) -> ClassInfo:
    """The class names a model trained on synthetic task ``task`` outputs: MA-52's labels and body groups, each
    label named by what it shows in that task (task v2: "head bows: twice"; task v1 and unknown tasks: MA-52's
    names, which task v1 renders)."""
    shows = TASKS[task].shows if task in TASKS else {}
    if not shows:
        return MA52_CLASSES
    return ClassInfo(tuple(shows.get(c, n) for c, n in enumerate(MA52_CLASSES.names)), MA52_CLASSES.coarse,
                     MA52_CLASSES.groups, MA52_CLASSES.label_word, MA52_CLASSES.group_word)
