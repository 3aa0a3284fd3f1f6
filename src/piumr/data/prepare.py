"""Prepared cache: every clip decoded once, resized, stored as per-frame JPEGs.

Raw MA-52 clips are 1080x1296 H.264; decoding 16 frames costs ~0.2 s per clip per core, too slow to feed a GPU.
``prepare_dataset`` converts each clip into one file ``<out>/<split>/<name>.mp4.jpgs``::

    header  "<8sIIIId": magic b"PIUMRJPG", version, num_frames, height, width, fps
    offsets (num_frames + 1) little-endian uint64, relative to the end of the offsets
    data    num_frames concatenated baseline JPEGs (RGB, short side ``short_side``)

A loader seeks to the sampled frames only and batch-decodes them with :func:`torchvision.io.decode_jpeg`.
``piumr_manifest.json`` lists every clip (frame count, size, byte count, sha256, and the source clip's byte size and
mtime); the list files and label_name.txt are copied, so the cache is itself a dataset root for
:func:`piumr.data.ma52.find_layout`. From a manifest (``piumr.data.manifest``) a clip goes to
``<out>/<its manifest path>.jpgs`` (a clip named by an absolute path outside the manifest's folder:
``<out>/absolute/<that path>.jpgs``) and ``manifest.csv`` + ``classes.csv`` are copied (the paths of such clips
rewritten to their place in the cache): ``<out>/manifest.csv`` is then the prepared dataset.

Rules of a rerun into an existing cache: a clip whose source file changed size or mtime since it was converted is
converted again (so is one converted before sources were recorded); a cache belongs to one source root and one short
side: another ``--data`` root or ``--short-side`` is refused.

Interruptions: the manifest is saved every ``_SAVE_EVERY`` clips or ``_SAVE_SECONDS`` seconds, and
SIGINT or SIGTERM stops the work within about a clip's time: the workers are ended, the manifest of
the clips done so far (``adopt_written``: also those written just before the signal) is saved, and
:class:`piumr.errors.Interrupted` is raised; a rerun continues from there. Temporary files (``<file>.tmp<pid>``) of a process that is gone, e.g. one killed by -9,
are removed when a run starts and when it stops. Workers die with the process that started them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torchvision.io import ImageReadMode, decode_jpeg  # type: ignore[import-untyped]

from piumr.config import MAX_SHORT_SIDE, MIN_SHORT_SIDE
from piumr.data import video
from piumr.data.jpgs import ClipHeader, encode_clip, read_blobs, read_header, torchvision_jpeg
from piumr.data.ma52 import (
    LABEL_FILE, MANIFEST_NAME, PREPARED_SUFFIX, SPLITS, DatasetError, Layout, Split, find_layout, read_split,
)
from piumr.data.manifest import cache_keys, read_manifest, write_cache_manifest
from piumr.data.video import Backend, VideoError
from piumr.files import named
from piumr.errors import Interrupted
from piumr.data.cache_temps import remove_stale_temps
from piumr.runtime import Stop, die_with_parent, end_pool, stop_on_signals
from piumr.source import resolve_source

FORMAT = "piumr-jpeg-v1"
_SAVE_EVERY = 256  # clips between intermediate manifest writes
_SAVE_SECONDS = 10.0  # ... or seconds, whichever comes first


def _split_dir(name: str) -> str:
    return name[len("videos_"):] if name.startswith("videos_") else name


class PreparedCache:
    """Read-only access to a prepared cache folder (see module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST_NAME
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DatasetError(f"{manifest_path}: cannot read the cache manifest ({e})") from e
        if self.manifest.get("format") != FORMAT:
            raise DatasetError(f"{manifest_path}: unknown cache format {self.manifest.get('format')!r}")
        self.clips: dict[str, dict[str, Any]] = self.manifest["clips"]
        self.short_side = int(self.manifest["short_side"])
        self._by_name: dict[str, str | None] = {}
        for key in self.clips:
            name = key.rsplit("/", 1)[-1]
            self._by_name[name] = None if name in self._by_name else key  # None = ambiguous

    def __len__(self) -> int:
        return len(self.clips)

    def __contains__(self, path_or_name: object) -> bool:
        if not isinstance(path_or_name, (str, Path)):
            return False
        try:
            self.key(path_or_name)
        except KeyError:
            return False
        return True

    def key(self, path_or_name: str | Path) -> str:
        """Manifest key ``split/name`` of a raw path, a cache path, or a bare file name."""
        text = str(path_or_name)
        if text in self.clips:
            return text
        p = Path(text)
        name = p.name[: -len(PREPARED_SUFFIX)] if p.name.endswith(PREPARED_SUFFIX) else p.name
        if p.is_relative_to(self.root) and p.with_name(name).relative_to(self.root).as_posix() in self.clips:
            return p.with_name(name).relative_to(self.root).as_posix()  # a path under the cache (manifests)
        if p.parent.name:
            key = f"{_split_dir(p.parent.name)}/{name}"
            if key in self.clips:
                return key
        found = self._by_name.get(name)
        if found is None:
            raise KeyError(f"{self.root}: {text!r} {self._missing_reason(p, name)}")
        return found

    def _missing_reason(self, p: Path, name: str) -> str:
        failed: dict[str, str] = self.manifest.get("failed", {})
        key = f"{_split_dir(p.parent.name)}/{name}"
        if key in failed:
            return f"failed during prepare: {failed[key]}"
        return "matches clips in several splits" if name in self._by_name else "is not in the cache"

    def file(self, path_or_name: str | Path) -> Path:
        """The cache file holding a clip."""
        return self.root / (self.key(path_or_name) + PREPARED_SUFFIX)

    def num_frames(self, path_or_name: str | Path) -> int:
        """Frame count recorded in the manifest."""
        return int(self.clips[self.key(path_or_name)]["frames"])

    def read(self, path_or_name: str | Path, indices: Sequence[int]) -> torch.Tensor:
        """Decode frames ``indices`` -> uint8 ``(T, H, W, 3)``; only those JPEGs are read."""
        try:
            path = self.file(path_or_name)
        except KeyError as e:
            raise VideoError(str(e.args[0])) from e
        header = read_header(path)
        idx = [int(i) for i in indices]
        if not idx or min(idx) < 0 or max(idx) >= header.num_frames:
            raise VideoError(f"{path}: frames {idx} outside 0..{header.num_frames - 1}")
        video.check_budget(path, len(idx), header.height, header.width, video.decode_budget())
        wanted = sorted(set(idx))
        blobs = read_blobs(path, header, wanted)
        try:
            with torchvision_jpeg():
                images = decode_jpeg(blobs, mode=ImageReadMode.RGB)
        except RuntimeError as e:
            raise VideoError(f"{path}: corrupt JPEG data ({e})") from e
        frame_of = dict(zip(wanted, images))
        return torch.stack([frame_of[i] for i in idx]).permute(0, 2, 3, 1).contiguous()


def open_cache_if_any(root: Path) -> PreparedCache | None:
    """A :class:`PreparedCache` when ``root`` holds a manifest, else None (raw dataset)."""
    return PreparedCache(root) if (Path(root) / MANIFEST_NAME).is_file() else None


# ----------------------------------------------------------------------------- building


@dataclass
class PrepareReport:
    """Outcome of :func:`prepare_dataset`; ``failed`` maps clip key -> error message."""

    out: Path
    done: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    verified: int = 0
    frames: int = 0
    bytes: int = 0
    seconds: float = 0.0
    missing_splits: list[str] = field(default_factory=list)

    @property
    def num_failed(self) -> int:
        return len(self.failed)


@dataclass(frozen=True)
class _Task:
    key: str
    src: Path
    dst: Path
    expected_sha: str | None
    expected_source: dict[str, int] | None  # source size/mtime recorded when the cache file was written


@dataclass(frozen=True)
class _Result:
    key: str
    status: str  # "done" | "skipped" | "failed"
    entry: dict[str, Any] | None
    error: str | None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _entry(header: ClipHeader, data: bytes, source: dict[str, int]) -> dict[str, Any]:
    return {"frames": header.num_frames, "height": header.height, "width": header.width,
            "fps": header.fps, "bytes": len(data), "sha256": _sha256(data), "source": source}


def source_stat(path: Path) -> dict[str, int] | None:
    """``{"size", "mtime_ns"}`` of a source clip, None when it does not exist."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _existing_ok(task: _Task) -> dict[str, Any] | None:
    """Manifest entry of an already written, verified cache file converted from the source as it
    is now; None if it must be redone (no such file, corrupt, or the source changed since)."""
    if task.expected_sha is None or task.expected_source is None or not task.dst.is_file():
        return None
    if source_stat(task.src) != task.expected_source:
        return None
    try:
        header = read_header(task.dst)
    except VideoError:
        return None
    entry = _entry(header, task.dst.read_bytes(), task.expected_source)
    return entry if entry["sha256"] == task.expected_sha else None


def _convert(task: _Task, short_side: int, quality: int, backend: Backend) -> _Result:
    """Worker: decode + encode + atomically write one clip."""
    source = source_stat(task.src)  # before decoding: a change during conversion shows on the next run
    if source is None:
        return _Result(task.key, "failed", None, f"{task.src}: no such file")
    try:
        info = video.probe(task.src, "pyav")
        frames = video.read_frames(task.src, range(info.num_frames), backend=backend, short_side=short_side)
    except VideoError as e:
        return _Result(task.key, "failed", None, str(e))
    data = encode_clip(frames, info.fps, quality)
    task.dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = task.dst.with_name(f"{task.dst.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, task.dst)
    except BaseException as e:  # a full disk, or an interruption in the inline (one-process) case: no
        tmp.unlink(missing_ok=True)  # half-written temporary is left behind; the error goes on
        if isinstance(e, OSError):
            raise named(e, task.dst) from None
        raise
    return _Result(task.key, "done", _entry(read_header(task.dst), data, source), None)


def _init_worker(parent: int) -> None:
    """A conversion worker: dies with ``parent``; one thread; leaves SIGINT to the parent, which stops it."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    video.DECODER_THREADS = 1


def prepare_dataset(
    root: Path,
    out: Path,
    splits: Sequence[Split] = SPLITS,
    short_side: int = 256,
    workers: int = 2,
    progress: bool = True,
    list_dir: Path | None = None,
    quality: int = 90,
    backend: Backend = "auto",
) -> PrepareReport:
    """Convert the raw clips of ``splits`` under ``root`` (an MA-52 root, or a manifest: its rows of ``splits``,
    every row without a ``split`` column) into a cache at ``out``.

    Resumable: clips whose cache file exists and verifies (header, sha256 from an earlier manifest) and whose source
    file has the size and mtime recorded then are skipped; the others are converted (again). A clip that cannot be
    decoded is listed in ``report.failed``, not fatal. Ends by re-reading every file and checking its size and
    sha256 against the manifest. Raises :class:`DatasetError` when ``out`` holds a cache of another source root or
    short side, ``ValueError`` for a ``short_side`` outside ``MIN_SHORT_SIDE..MAX_SHORT_SIDE``.
    """
    if not MIN_SHORT_SIDE <= short_side <= MAX_SHORT_SIDE:
        raise ValueError(f"short_side {short_side} is outside {MIN_SHORT_SIDE}..{MAX_SHORT_SIDE} pixels")
    start = time.perf_counter()
    out = Path(out)
    man = read_manifest(Path(root), check_files=False) if resolve_source(root).kind == "manifest" else None
    layout = find_layout(root, list_dir) if man is None else None  # a bad root fails before out is made
    data_dir = Path(root).parent if man is not None else layout.root if layout is not None else Path(root)
    if out.resolve() in (Path(root).resolve(), data_dir.resolve()):
        raise ValueError(f"--out {out} is the data folder (--data {root}): the cache goes to a folder of its own")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _load_manifest(out, short_side, quality, man.path if man is not None else Path(root))
    report = PrepareReport(out=out)
    if layout is not None:
        tasks = _list_tasks(layout, splits, list_dir, out, manifest, report)
    elif man is not None:  # a manifest: its rows of ``splits`` (every row without a split column)
        keys = cache_keys(man)  # a clip outside the manifest's folder (an absolute path) goes under absolute/
        write_cache_manifest(man, keys, out)
        tasks = [_task(key, r.path, out, manifest)
                 for key, r, s in zip(keys, man.records, man.splits, strict=True) if s is None or s in splits]
    remove_stale_temps(out)
    since = time.time_ns()
    with stop_on_signals() as check:
        _convert_all(out, manifest, report, _run(tasks, short_side, quality, backend, workers, progress),
                     len(tasks), check, lambda: adopt_written(manifest, tasks, since))
    _verify(out, manifest, report)
    manifest["complete"] = True
    _save_manifest(out, manifest)
    report.seconds = time.perf_counter() - start
    return report


def adopt_written(manifest: dict[str, Any], tasks: Sequence[_Task], since: int) -> int:
    """Record the clips of ``tasks`` whose cache file this run wrote (modified at or after ``since``, ns) but whose
    result a signal kept from ``manifest`` (it came between the atomic rename and the record), when their source
    was last modified before ``since`` and the file reads back as a cache file; returns how many."""
    n = 0
    for t in tasks:
        source = source_stat(t.src)
        if (t.key in manifest["clips"] or not t.dst.is_file() or t.dst.stat().st_mtime_ns < since or source is None
                or source["mtime_ns"] >= since):
            continue
        try:
            manifest["clips"][t.key] = _entry(read_header(t.dst), t.dst.read_bytes(), source)
        except VideoError:
            continue  # not a finished cache file: converted again by the next run
        manifest["failed"].pop(t.key, None)
        n += 1
    return n


def _convert_all(out: Path, manifest: dict[str, Any], report: PrepareReport, results: Generator[_Result, None, None],
                 total: int, check: Callable[[], None], adopt: Callable[[], int] = lambda: 0) -> None:
    """Record every result, saving the manifest as it goes; on SIGINT/SIGTERM end the workers, record the files
    they finished whose results had not arrived (``adopt``), save what is done and raise ``Interrupted``."""
    saved, n = time.monotonic(), 0
    try:
        for n, result in enumerate(results, 1):
            _record(manifest, report, result)
            check()  # a signal whose Stop was swallowed (raised inside a __del__) stops here
            if n % _SAVE_EVERY == 0 or time.monotonic() - saved >= _SAVE_SECONDS:
                _save_manifest(out, manifest)
                saved = time.monotonic()
        check()
    except Stop as stop:
        results.close()  # ends the workers (see _results)
        adopt()  # a clip written in the instant before the signal, its result not yet recorded: kept, not redone
        manifest["complete"] = False
        _save_manifest(out, manifest)
        remove_stale_temps(out)
        name = signal.Signals(stop.signum).name
        raise Interrupted(f"prepare stopped by {name} after {n} of {total} clips; {out / MANIFEST_NAME} keeps the "
                          f"{len(manifest['clips'])} converted: run the same command again to continue",
                          stop.signum) from None


def _load_manifest(out: Path, short_side: int, quality: int, source: Path) -> dict[str, Any]:
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: unreadable manifest; delete it to rebuild ({e})") from e
        if manifest.get("format") != FORMAT or manifest.get("short_side") != short_side:
            raise DatasetError(
                f"{path}: cache was built with format {manifest.get('format')!r}, short side "
                f"{manifest.get('short_side')}; asked for {FORMAT!r}, {short_side}: use another --out"
            )
        old = manifest.get("source")
        if not isinstance(old, str) or Path(old).resolve() != source.resolve():
            raise DatasetError(
                f"{path}: this cache holds clips of {old}, not {source}; one cache holds one dataset "
                "root: use another --out"
            )
        manifest["failed"] = {}
        return manifest
    return {"format": FORMAT, "short_side": short_side, "quality": quality, "source": str(source.resolve()),
            "complete": False, "clips": {}, "failed": {}}


def _list_tasks(layout: Layout, splits: Sequence[Split], list_dir: Path | None, out: Path, manifest: dict[str, Any],
                report: PrepareReport) -> list[_Task]:
    """Tasks of an MA-52 root's ``splits``; copies its list files and label names into ``out``."""
    tasks: list[_Task] = []
    for split in splits:
        if split not in layout.lists:
            report.missing_splits.append(split)
            continue
        shutil.copyfile(layout.lists[split], out / layout.lists[split].name)
        (out / split).mkdir(exist_ok=True)
        tasks.extend(_tasks(layout.root, split, list_dir, out, manifest))
    if layout.label_names is not None:
        shutil.copyfile(layout.label_names, out / LABEL_FILE)
    return tasks


def _tasks(root: Path, split: Split, list_dir: Path | None, out: Path, manifest: dict[str, Any]) -> list[_Task]:
    return [_task(f"{split}/{rec.path.name}", rec.path, out, manifest)
            for rec in read_split(root, split, list_dir, check_files=False)]


def _task(key: str, source: Path, out: Path, manifest: dict[str, Any]) -> _Task:
    old = manifest["clips"].get(key)
    sha = old["sha256"] if old else None
    src = old.get("source") if old else None
    return _Task(key, source, out / (key + PREPARED_SUFFIX), sha, src if isinstance(src, dict) else None)


def _run(
    tasks: list[_Task], short_side: int, quality: int, backend: Backend, workers: int, progress: bool
) -> Generator[_Result, None, None]:
    """Yield results (any order) with a rich progress bar; ``workers <= 1`` runs inline."""
    columns = (TextColumn("prepare"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        job = bar.add_task("clips", total=len(tasks))
        for result in _results(tasks, short_side, quality, backend, workers):
            bar.advance(job)
            yield result


def _results(
    tasks: list[_Task], short_side: int, quality: int, backend: Backend, workers: int
) -> Iterable[_Result]:
    """Verified existing files first (main process), then conversions (worker processes)."""
    todo = []
    for task in tasks:
        old = _existing_ok(task)
        if old is None:
            todo.append(task)
        else:
            yield _Result(task.key, "skipped", old, None)
    if workers <= 1 or len(todo) <= 1:
        yield from (_convert(t, short_side, quality, backend) for t in todo)
        return
    ctx = get_context("spawn")  # fork after torch/FFmpeg threads start can deadlock
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        pending: list[Future[_Result]] = [pool.submit(_convert, t, short_side, quality, backend) for t in todo]
        for fut in as_completed(pending):
            yield fut.result()
    except BaseException:  # interrupted (or the consumer stopped): end the workers now, not after the queue
        end_pool(pool)
        raise
    pool.shutdown()


def _record(manifest: dict[str, Any], report: PrepareReport, result: _Result) -> None:
    if result.status == "failed":
        manifest["clips"].pop(result.key, None)
        manifest["failed"][result.key] = result.error
        report.failed[result.key] = result.error or "unknown error"
        return
    assert result.entry is not None
    manifest["clips"][result.key] = result.entry
    if result.status == "done":
        report.done += 1
    else:
        report.skipped += 1


def _verify(out: Path, manifest: dict[str, Any], report: PrepareReport) -> None:
    """Re-read every cache file: size and sha256 must match the manifest."""
    for key, entry in list(manifest["clips"].items()):
        path = out / (key + PREPARED_SUFFIX)
        data = path.read_bytes() if path.is_file() else b""
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            del manifest["clips"][key]
            manifest["failed"][key] = report.failed[key] = f"{path}: verification failed"
            continue
        report.verified += 1
        report.frames += int(entry["frames"])
        report.bytes += len(data)


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / (MANIFEST_NAME + ".tmp")
    try:
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, out / MANIFEST_NAME)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise named(e, out / MANIFEST_NAME) from None
        raise


def report_dict(report: PrepareReport) -> dict[str, Any]:
    """JSON-friendly view of a report (for the CLI)."""
    d = asdict(report)
    d["out"] = str(report.out)
    return d
