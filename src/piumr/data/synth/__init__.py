"""Synthetic MA-52: rendered seated figures doing micro-actions, in the exact MA-52 on-disk format.

Parts: ``persons`` (per-participant attributes), ``motions`` (per-clip time base and channel
curves), ``actions`` (one motion per MA-52 class, class selection), ``geometry`` (skeleton maths),
``rendering`` (rasteriser, ``render_clip``), ``tasks`` (the task versions: what each renders and records,
``TASKS``), ``generation`` (encoding, splits, ``generate``, ``ensure_synth``; per task only through ``TASKS``).

MA-52 is gated, so the project's embedded default dataset is generated here. Every clip is a
real H.264 mp4 (libx264, yuv420p, ``size`` x ``size``, ``frames`` frames at ``fps``) showing a
cartoon seated figure (chair, head with hair/face/eyes/mouth, torso, upper arms, forearms,
hands with one finger, thighs, shins, feet) in front of a wall, performing one micro-action.

Labels are the real MA-52 action indices (0..51), so the 52-way head and the official 52 -> 7
body mapping work unchanged. By default only ``classes_per_body`` classes per body group are
rendered, chosen from a fixed per-group priority order (:data:`_PRIORITY`, the most visually
distinct motions first); ``classes_per_body=13`` gives all 52. Classes of one body group move the
same body part (whole torso / head / free hands / legs / hand on torso / hand on head / hand on
leg) and differ in direction, location, periodicity and temporal order (e.g. "spread legs" is
closed -> open, "closing legs" open -> closed), so body level is easier than action level.

Layout written by :func:`generate` (all text files CRLF)::

    out/train/PPPP_BB_NNNN.mp4 ...        official-like split (person-OVERLAPPING):
    out/val/PPPP_BB_NNNN.mp4 ...          every person has clips in train, val and test
    out/test/PPPP_BB_NNNN.mp4 ...         (test keeps the PPPP_BB_NNNN naming and TRUE labels:
                                           there is no hidden test server for synthetic data)
    out/train_list_videos.txt  out/val_list_videos.txt  out/test_list_videos.txt
    out/label_name.txt                    all 52 MA-52 names, ``index<TAB>name``
    out/synth_meta.json                   seed, parameters, classes, per-person attributes, counts
    out/cross_subject/                    a complete, self-contained MA-52 root, person-DISJOINT:
        train/ val/                       hard links (copies where the file system has none) to
        train_list_videos.txt             the clips above; every clip of a person goes to the
        val_list_videos.txt               same side; no val person appears in train
        label_name.txt

Cross-subject design: ``out/cross_subject`` is read exactly like any MA-52 root (list entries are
bare file names resolved in the root's own ``train/`` / ``val/`` folders), so no reader needs to
follow paths into sibling folders. Hard links cost no extra disk space.

Splits: ``PPPP`` = participant id 0001.., ``BB`` = body group of the label (00..06), ``NNNN`` =
the participant's clip number 0001... Each person performs the classes round-robin in a shuffled
order; each person's clips go, class-stratified, about 50/25/25 to train/val/test (as in MA-52).
The cross-subject split puts ``round(persons / 3)`` (at least 1) persons in val.

Person variation (fixed per participant, drawn from ``seed``): body size and limb proportions,
girth, head size, tempo (execution speed), amplitude, motion style (ease exponent for
transitions, peaked/flat oscillation shape, tremor harmonic, phase lag), handedness, preferred
turning side, resting posture (slouch, lean, head tilt, hand rest position), clothing and sleeve
length, skin, hair, glasses, chair and wall colours, camera offset/scale/roll, sensor noise.
Clip variation: start phase and onset time, +-10% tempo, +-15% amplitude, occasional side flip,
camera jitter, idle breathing sway, fresh pixel noise.

Determinism: the same parameters give byte-identical list files and byte-identical mp4 files
(libx264 with one thread and ``mbtree=0``; frames are converted to yuv420p in numpy, not by
swscale); ``workers`` and ``progress`` never change the output. Workers are processes from the
platform's default start method (fork on Linux); they only use numpy and PyAV.

Task v2 (``temporal``: 21 classes, 3 per body part, that differ only by repetition or order):
``generate(..., task=2)`` writes it in the same layout, with the same persons, splits and encoding
(``classes_per_body`` <= 3: once, twice, stay; the same MA-52 labels as ``select_classes``), marked
version "2" and ``"task": 2``; its controlled person shifts (``shift``: tempo, size, appearance, motion
style, mixed) are rendered in memory, no mp4. Task v1 (``task=1``, ``GENERATOR_VERSION`` "1", the
default) is unchanged: same files, same marker, same cache names.

:func:`ensure_synth` caches a dataset under a directory named from a hash of the parameters,
built in a temporary sibling directory and renamed into place only when complete.
"""

from piumr.data.synth.actions import select_classes
from piumr.data.synth.generation import GENERATOR_VERSION, SynthInfo, ensure_synth, generate, split_counts, synth_key
from piumr.data.synth.persons import PersonAttrs, make_person
from piumr.data.synth.rendering import render_clip

__all__ = ["SynthInfo", "PersonAttrs", "GENERATOR_VERSION", "generate", "ensure_synth", "render_clip", "make_person",
           "select_classes", "split_counts", "synth_key"]
