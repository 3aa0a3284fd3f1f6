"""Encoding (bit-exact yuv420p H.264), splits, list files and orchestration: ``generate`` and the
parameter-keyed cache ``ensure_synth``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

from piumr.config import DataConfig
from piumr.errors import DatasetError
from piumr.files import dir_mode, write_json_atomic
from piumr.runtime import die_with_parent
from piumr.data.ma52 import ACTION_NAMES as _ACTION_NAMES
from piumr.data.ma52 import ACTION_TO_BODY as _ACTION_TO_BODY
from piumr.data.ma52 import BODY_NAMES as _BODY_NAMES
from piumr.data.manifest import ClassInfo, write_manifest
from piumr.data.synth.actions import select_classes
from piumr.data.synth.geometry import F32, U8
from piumr.data.synth.persons import PersonAttrs, make_person
from piumr.data.synth.rendering import render_clip
from piumr.data.synth.tasks import GENERATOR_VERSION, TASKS
__all__ = ["GENERATOR_VERSION", "MARKER", "TASKS", "SynthInfo", "generate", "synth_key", "ensure_synth"]

MARKER = ".piumr_synth.json"  # written first into the folder: the set in it is ours (generator, version, parameters)
#: what ``generate(manifest=True)`` adds to a set; its marker's ``"manifest": true`` says they are the set's own
MANIFEST_FILES = ("manifest.csv", "classes.csv")
#: a generated manifest's ``domain``: a person's camera is "near" from this ``cam_scale`` up, else "far"
NEAR_CAMERA = 0.89
_DATA = DataConfig()  # the dataset-size defaults live in DataConfig (synth_*)


def _crlf(lines: Sequence[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("utf-8")


def _rgb_to_yuv420p(video: U8) -> U8:
    """BT.601 limited-range RGB -> planar yuv420p, shape (T, H*3/2, W), in plain numpy.

    Done here rather than by libswscale because swscale's SIMD paths made the encoded bytes
    depend on buffer alignment (intermittently different files for the same frames).
    """
    T, H, W, _ = video.shape
    rgb = video.astype(np.float32) / np.float32(255.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + 65.481 * r + 128.553 * g + 24.966 * b
    cb = 128.0 - 37.797 * r - 74.203 * g + 112.0 * b
    cr = 128.0 + 112.0 * r - 93.786 * g - 18.214 * b

    def sub(c: F32) -> F32:
        out: F32 = (c[:, 0::2, 0::2] + c[:, 1::2, 0::2] + c[:, 0::2, 1::2] + c[:, 1::2, 1::2]) * np.float32(0.25)
        return out

    out = np.empty((T, H * 3 // 2, W), dtype=np.uint8)
    out[:, :H] = np.clip(np.rint(y), 0, 255).astype(np.uint8)
    out[:, H:H + H // 4] = np.clip(np.rint(sub(cb)), 0, 255).astype(np.uint8).reshape(T, H // 4, W)
    out[:, H + H // 4:] = np.clip(np.rint(sub(cr)), 0, 255).astype(np.uint8).reshape(T, H // 4, W)
    return out


def _encode(path: Path, video: U8, fps: int) -> None:
    """Write an H.264 (libx264, yuv420p) mp4, byte-identical for identical input.

    Determinism needs one thread AND ``mbtree=0``: with macroblock-tree rate control this
    libx264 build produced different bitstreams for the same frames depending on heap contents.
    """
    T, H, W, _ = video.shape
    with av.open(str(path), mode="w", format="mp4") as container:
        options = {"crf": "20", "preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}
        stream = container.add_stream("libx264", rate=fps, options=options)
        stream.width = W
        stream.height = H
        stream.pix_fmt = "yuv420p"
        stream.thread_count = 1
        yuv = _rgb_to_yuv420p(video)
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(yuv[i], format="yuv420p")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


@dataclass(frozen=True)
class _ClipJob:
    path: str
    person: PersonAttrs
    label: int
    frames: int
    size: int
    fps: int
    clip_seed: int
    task: int = 1


def _run_job(job: _ClipJob) -> str:
    motion = TASKS[job.task].motion(job.label)  # task v2: persons' rhythm 1.0 (v1 persons)
    video = render_clip(job.person, job.label, job.frames, job.size, job.clip_seed, motion=motion)
    _encode(Path(job.path), video, job.fps)
    return job.path


@dataclass(frozen=True)
class SynthInfo:
    """What :func:`generate` wrote."""

    out: Path
    classes: tuple[int, ...]
    persons: tuple[str, ...]
    counts: dict[str, int]
    cross_subject_train_persons: tuple[str, ...]
    cross_subject_val_persons: tuple[str, ...]
    reused: bool = False  # the folder already held this set, complete: nothing was written


@dataclass(frozen=True)
class _Clip:
    person: int
    clip_no: int
    label: int
    split: str

    @property
    def name(self) -> str:
        return f"{self.person:04d}_{_ACTION_TO_BODY[self.label]:02d}_{self.clip_no:04d}.mp4"


def _plan(persons: int, clips_per_person: int, classes: Sequence[int], seed: int) -> list[_Clip]:
    """Assign labels and official-like splits to every clip (class-stratified per person)."""
    pattern = ("train", "val", "train", "test")
    clips: list[_Clip] = []
    for pid in range(1, persons + 1):
        r = np.random.default_rng([seed, 3, pid])
        order = [int(c) for c in r.permutation(np.asarray(classes))]
        labels = [order[i % len(order)] for i in range(clips_per_person)]
        # stratify: walk clips grouped by class, dealing train/val/train/test
        by_class = sorted(range(clips_per_person), key=lambda i: (classes.index(labels[i]), i))
        split_of: dict[int, str] = {}
        for j, i in enumerate(by_class):
            # any 4 consecutive pattern entries hold train, val and test; fewer clips: train, val, test
            split_of[i] = pattern[(j + pid) % len(pattern)] if clips_per_person >= 4 else ("train", "val", "test")[j]
        for i in range(clips_per_person):
            clips.append(_Clip(pid, i + 1, labels[i], split_of[i]))
    return clips


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)  # a link of an interrupted earlier generation into this (checked) folder
    try:
        os.link(src, dst)
    except OSError as e:  # file systems without hard links: fall back to a copy, loudly
        warnings.warn(f"hard link {dst} failed ({e}); copying instead", RuntimeWarning, stacklevel=2)
        shutil.copy2(src, dst)


def _iter_results(jobs: list[_ClipJob], workers: int) -> Iterator[str]:
    if workers <= 1:
        for job in jobs:
            yield _run_job(job)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
        yield from ex.map(_run_job, jobs, chunksize=max(1, min(16, len(jobs) // (workers * 8) or 1)))


def _check_params(persons: int, clips_per_person: int, frames: int, size: int, fps: int, task: int = 1,
                  classes_per_body: int = 1) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(map(str, TASKS))}, got {task}")
    fixed = TASKS[task].per_body
    if fixed and not 1 <= classes_per_body <= len(fixed):
        raise ValueError(f"task {task} has {len(fixed)} classes per body part ({', '.join(fixed)}): "
                         f"classes_per_body must be in 1..{len(fixed)}, got {classes_per_body}")
    if not 2 <= persons <= 9999:
        raise ValueError(f"persons must be in 2..9999, got {persons}")
    if not 2 <= clips_per_person <= 9999:
        raise ValueError(f"clips_per_person must be in 2..9999, got {clips_per_person}")
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (yuv420p), got {size}")
    if fps < 1:
        raise ValueError(f"fps must be >= 1, got {fps}")


def _render_all(jobs: list[_ClipJob], workers: int, progress: bool) -> None:
    """Render and encode every clip (``workers`` processes), with a progress bar if asked."""
    if not progress:
        for _ in _iter_results(jobs, workers):
            pass
        return
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn()) as bar:
        task = bar.add_task("synthetic MA-52", total=len(jobs))
        for _ in _iter_results(jobs, workers):
            bar.advance(task)


def _cross_subject(out: Path, clips: list[_Clip], persons: int, seed: int,
                   counts: dict[str, int]) -> tuple[list[int], list[int]]:
    """Write ``out/cross_subject``: person-disjoint, self-contained root with hard links.

    Adds its clip counts to ``counts``; returns (train persons, val persons)."""
    r = np.random.default_rng([seed, 4])
    pids = [int(x) for x in r.permutation(np.arange(1, persons + 1))]
    n_val = max(1, round(persons / 3))
    val_p = sorted(pids[:n_val])
    train_p = sorted(pids[n_val:])
    cs = out / "cross_subject"
    for split, members in (("train", set(train_p)), ("val", set(val_p))):
        sel = [c for c in clips if c.person in members]
        for c in sel:
            _link(out / c.split / c.name, cs / split / c.name)
        (cs / f"{split}_list_videos.txt").write_bytes(_crlf([f"{c.name} {c.label}" for c in sel]))
        counts[f"cross_subject_{split}"] = len(sel)
    return train_p, val_p


def _write_manifest(out: Path, clips: Sequence[_Clip], classes: tuple[int, ...], people: Sequence[PersonAttrs]) -> None:
    """``manifest.csv`` + ``classes.csv`` of a generated set: its K classes as labels 0..K-1 (MA-52 names,
    body parts as groups), one row per clip of the official splits; ``domain`` is the person's camera distance
    (``near`` from ``NEAR_CAMERA`` up, else ``far``)."""
    bodies = sorted({_ACTION_TO_BODY[c] for c in classes})
    info = ClassInfo(tuple(_ACTION_NAMES[c] for c in classes), tuple(bodies.index(_ACTION_TO_BODY[c]) for c in classes),
                     tuple(_BODY_NAMES[b] for b in bodies))
    rows = [{"path": f"{c.split}/{c.name}", "label": str(classes.index(c.label)), "person": f"{c.person:04d}",
             "group": _BODY_NAMES[_ACTION_TO_BODY[c.label]],
             "domain": "near" if people[c.person - 1].cam_scale >= NEAR_CAMERA else "far", "split": c.split}
            for c in clips]
    write_manifest(out / "manifest.csv", rows, info)


def _add_manifest(out: Path, marker: dict[str, Any], found: dict[str, Any], clips: Sequence[_Clip],
                  classes: tuple[int, ...], seed: int, persons: int) -> None:
    """``--manifest`` on a complete set already in ``out``: its manifest files are written when neither is
    there (the marker records them first); both there are kept as they are; one alone is refused."""
    there = [n for n in MANIFEST_FILES if (out / n).exists()]
    if len(there) == len(MANIFEST_FILES):
        return
    if there:
        raise DatasetError(f"--out {out}: {there[0]} is there but not the other manifest file; remove {there[0]} "
                           "to have both written again, or give an empty or new folder")
    if found.get("manifest") is not True:
        write_json_atomic(out / MARKER, {**marker, "manifest": True})
    _write_manifest(out, clips, classes, [make_person(seed, pid) for pid in range(1, persons + 1)])


def generate(
    out: Path,
    *,
    persons: int = _DATA.synth_persons,
    clips_per_person: int = _DATA.synth_clips_per_person,
    classes_per_body: int = _DATA.synth_classes_per_body,
    frames: int = _DATA.synth_frames,
    size: int = _DATA.synth_size,
    seed: int = _DATA.synth_seed,
    workers: int = 2,
    progress: bool = True,
    fps: int = 15,
    manifest: bool = False,
    task: int = _DATA.synth_task,
) -> SynthInfo:
    """Generate the synthetic MA-52 dataset into ``out`` (see the module docstring for the layout).

    ``out`` must be missing or empty, or hold a set this function made (its ``MARKER`` file) with the same
    parameters and nothing else: a complete one is kept as it is (``reused``), an interrupted one is made
    again. Anything else raises ``DatasetError`` naming the folder: nothing there is overwritten.
    ``workers`` and ``progress`` do not affect the output. ``manifest`` also writes ``manifest.csv`` +
    ``classes.csv`` (the same clips, labels numbered 0..K-1 over the generated classes; docs/data.md).
    ``task`` 2 renders task v2 (``temporal``: the first ``classes_per_body`` <= 3 of once / twice / stay per
    body part, the same MA-52 labels as ``select_classes``) with the same persons, splits and encoding;
    its marker and metadata say version "2" and ``"task": 2``. Raises ValueError for invalid parameters.
    """
    _check_params(persons, clips_per_person, frames, size, fps, task, classes_per_body)
    classes = select_classes(classes_per_body)
    out = Path(out)
    clips = _plan(persons, clips_per_person, classes, seed)
    marker = {"generator": "piumr.data.synth", "version": TASKS[task].version, "seed": seed,
              "params": {"persons": persons, "clips_per_person": clips_per_person,
                         "classes_per_body": classes_per_body, "frames": frames, "size": size, "fps": fps}}
    if task != 1:  # task v1's marker is unchanged: sets made before tasks existed are still recognised
        marker["task"] = task
    found = _ours(out, marker, clips)
    if found is not None and (out / "synth_meta.json").is_file():  # complete: kept as it is
        if manifest:
            _add_manifest(out, marker, found, clips, classes, seed, persons)
        return _existing(out)
    if manifest or (found is not None and found.get("manifest") is True):
        marker["manifest"] = True  # its manifest files are its own (a rerun finds them)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MARKER, marker)
    for sub in ("train", "val", "test", "cross_subject/train", "cross_subject/val"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    people = [make_person(seed, pid) for pid in range(1, persons + 1)]
    jobs = [
        _ClipJob(str(out / c.split / c.name), people[c.person - 1], c.label, frames, size, fps,
                 int(np.random.default_rng([seed, 2, c.person, c.clip_no]).integers(0, 2**63 - 1)), task)
        for c in clips
    ]

    _render_all(jobs, workers, progress)
    counts: dict[str, int] = {}
    for split in ("train", "val", "test"):
        sel = [c for c in clips if c.split == split]
        (out / f"{split}_list_videos.txt").write_bytes(_crlf([f"{c.name} {c.label}" for c in sel]))
        counts[split] = len(sel)
    train_p, val_p = _cross_subject(out, clips, persons, seed, counts)
    cs = out / "cross_subject"
    label_bytes = _crlf([f"{i}\t{n}" for i, n in enumerate(_ACTION_NAMES)])
    (out / "label_name.txt").write_bytes(label_bytes)
    (cs / "label_name.txt").write_bytes(label_bytes)

    meta: dict[str, Any] = {
        **marker,
        "classes": [{"label": c, "name": _ACTION_NAMES[c], "body": _ACTION_TO_BODY[c],
                     **({"shows": TASKS[task].shows[c]} if c in TASKS[task].shows else {})} for c in classes],
        "counts": counts,
        "cross_subject": {"train_persons": [f"{x:04d}" for x in train_p],
                          "val_persons": [f"{x:04d}" for x in val_p]},
        "test_naming": "PPPP_BB_NNNN.mp4 with true labels",
        "persons": [dict(asdict(pp), id=f"{pp.pid:04d}") for pp in people],
    }
    (out / "synth_meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    if manifest:
        _write_manifest(out, clips, classes, people)
    return SynthInfo(
        out=out,
        classes=classes,
        persons=tuple(f"{x:04d}" for x in range(1, persons + 1)),
        counts=counts,
        cross_subject_train_persons=tuple(f"{x:04d}" for x in train_p),
        cross_subject_val_persons=tuple(f"{x:04d}" for x in val_p),
    )


def _expected(clips: list[_Clip]) -> set[str]:
    """Every path (relative to the set's folder) ``generate`` writes for ``clips``."""
    names = {MARKER, "synth_meta.json", "label_name.txt", "train", "val", "test", "cross_subject",
             "cross_subject/train", "cross_subject/val", "cross_subject/label_name.txt"}
    names |= {f"{s}_list_videos.txt" for s in ("train", "val", "test")}
    names |= {f"cross_subject/{s}_list_videos.txt" for s in ("train", "val")}
    names |= {f"{c.split}/{c.name}" for c in clips} | {f"cross_subject/{s}/{c.name}" for c in clips for s in
                                                        ("train", "val")}
    return names


def _ours(out: Path, marker: dict[str, Any], clips: list[_Clip]) -> dict[str, Any] | None:
    """The marker found in ``out`` when it holds the set ``marker`` describes, complete (``synth_meta.json``: keep
    it) or interrupted (made again); None when ``out`` is missing or empty. ``DatasetError`` for any other folder:
    a file, a non-empty folder piumr did not make, or a set of other parameters. The manifest files are the
    set's own when its marker says so (``"manifest": true``)."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise DatasetError(f"--out {out}: not a folder")
    entries = {str(p.relative_to(out)) for p in out.rglob("*")}
    if not entries:
        return None
    found: Any = None
    for name in (MARKER, "synth_meta.json"):  # sets made before the marker existed have only the metadata
        try:
            found = json.loads((out / name).read_text(encoding="utf-8"))
            break
        except (OSError, ValueError):
            continue
    if not isinstance(found, dict) or found.get("generator") != marker["generator"]:
        raise DatasetError(f"--out {out} is not empty and holds no synthetic set made by piumr synth ({MARKER}); "
                           "nothing was written: give an empty or new folder")
    keys = ("version", "task", "seed", "params")
    mine = {k: found.get(k, 1 if k == "task" else None) for k in keys}
    if mine != {k: marker.get(k, 1) for k in keys}:
        raise DatasetError(f"--out {out} holds a synthetic set of other settings (task {mine['task']}, version "
                           f"{mine['version']}, seed {mine['seed']}, {mine['params']}); nothing was written: give "
                           "another folder")
    other = sorted(entries - _expected(clips) - (set(MANIFEST_FILES) if found.get("manifest") is True else set()))
    if other:
        raise DatasetError(f"--out {out} holds files piumr synth did not write ({', '.join(other[:3])}); nothing "
                           "was written: give an empty or new folder")
    return found


def _existing(out: Path) -> SynthInfo:
    """The ``SynthInfo`` of the complete set in ``out`` (read from its ``synth_meta.json``)."""
    meta = json.loads((out / "synth_meta.json").read_text(encoding="utf-8"))
    return SynthInfo(out=out, classes=tuple(int(c["label"]) for c in meta["classes"]),
                     persons=tuple(str(p["id"]) for p in meta["persons"]), counts=dict(meta["counts"]),
                     cross_subject_train_persons=tuple(meta["cross_subject"]["train_persons"]),
                     cross_subject_val_persons=tuple(meta["cross_subject"]["val_persons"]), reused=True)


def split_counts(*, persons: int = _DATA.synth_persons, clips_per_person: int = _DATA.synth_clips_per_person,
                 classes_per_body: int = _DATA.synth_classes_per_body, seed: int = _DATA.synth_seed,
                 **_: Any) -> dict[str, int]:
    """Clips per list of the dataset ``generate`` would write (the ``counts`` of ``synth_meta.json``), without
    rendering anything: ``train``, ``val``, ``test``, ``cross_subject_train``, ``cross_subject_val``."""
    clips = _plan(persons, clips_per_person, select_classes(classes_per_body), seed)
    counts = {split: sum(c.split == split for c in clips) for split in ("train", "val", "test")}
    n_val = max(1, round(persons / 3))  # as in _cross_subject
    counts["cross_subject_train"] = (persons - n_val) * clips_per_person
    counts["cross_subject_val"] = n_val * clips_per_person
    return counts


_OUTPUT_PARAMS = ("persons", "clips_per_person", "classes_per_body", "frames", "size", "seed", "fps", "task")
_RUN_PARAMS = ("workers", "progress")


def synth_key(**params: Any) -> str:
    """Cache directory name for these generation parameters (defaults filled in): ``synth-v<version>-<hash>``;
    task 1's names are those from before tasks existed (``task`` enters the hash only when it is not 1)."""
    defaults: dict[str, Any] = {"persons": 24, "clips_per_person": 40, "classes_per_body": 2,
                                "frames": 32, "size": 112, "seed": 0, "fps": 15, "task": 1}
    unknown = set(params) - set(_OUTPUT_PARAMS) - set(_RUN_PARAMS)
    if unknown:
        raise TypeError(f"unknown synth parameters: {sorted(unknown)}")
    full = {k: int(params.get(k, defaults[k])) for k in _OUTPUT_PARAMS}
    task = full.pop("task")
    version = TASKS[task].version if task in TASKS else f"task{task}"
    blob = json.dumps({"version": version, **full, **({"task": task} if task != 1 else {})}, sort_keys=True).encode()
    return f"synth-v{version}-{hashlib.sha256(blob).hexdigest()[:16]}"


def ensure_synth(cache_dir: Path, **params: Any) -> Path:
    """Return the dataset directory for ``params`` under ``cache_dir``, generating it if absent.

    Generation happens in a temporary sibling directory that is renamed into place only once
    complete, so an interrupted run never leaves a half dataset under the final name (stale
    ``.tmp-*`` directories may remain and can be deleted). If another process finishes first,
    its copy is used.
    """
    cache_dir = Path(cache_dir)
    final = cache_dir / synth_key(**params)
    if (final / "synth_meta.json").is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=cache_dir))
    tmp.chmod(dir_mode())  # mkdtemp creates 0700; the dataset folder gets the mode any new folder would get
    try:
        generate(tmp, **params)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "synth_meta.json").is_file():
                raise
            # a concurrent generator won the race; its dataset is identical
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final
