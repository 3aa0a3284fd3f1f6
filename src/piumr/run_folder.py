"""The rules of a training run folder: one owner at a time, no silent overwrite, an honest log.

* ``RunLock``: an exclusive ``flock`` on ``<run>/.lock`` (the file names the holder's pid). The kernel
  releases it when its process dies, even by kill -9, so a lock left by a dead process is stale and
  taken over (the holder named in the file is reported). A process forked by the holder (a loader
  worker) closes its copy of the lock at once, so the lock dies with the holder alone.
* ``claim``: a new run needs an empty folder; a non-empty one is refused unless ``fresh``, which moves
  it aside to ``<run>.old-<YYYYmmdd-HHMMSS>`` (the old run is kept), and only when it holds a run (a
  piumr ``config.json``): a dataset or any other folder is never moved.
* ``trim_log``: on resume, ``log.jsonl`` rows after the checkpoint's step (and a half-written last
  line) are dropped, so a resumed run never logs a step twice.
* ``amendments``: what may change when a run is resumed (``AMENDABLE``); anything else is refused.
* ``write_config`` / ``read_config``: ``config.json`` = the run's current config, plus the list of its
  amendments (key ``"amendments"``) once it has any.
* ``open_run``: all of the above for one training: lock or claim, the checkpoint to continue from, and
  the amendments of a resumed run's config.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from piumr.checkpoint import Checkpoint, read_checkpoint
from piumr.config import SpeedConfig, TrainConfig
from piumr.errors import RunFolderError
from piumr.files import write_text_atomic
from piumr.source import resolve_source

__all__ = ["AMENDABLE", "Amendment", "AmendmentError", "Opened", "RunLock", "amendments", "claim", "is_empty",
           "open_run", "read_config", "trim_log", "write_config"]

LOCK = ".lock"
CONFIG = "config.json"
# config keys a resumed run may change: the length of the run, the learning-rate schedule, the
# number of loader processes and what is logged (neither changes any result)
AMENDABLE = ("optim.epochs", "optim.lr", "optim.milestones", "optim.gamma", "data.num_workers", "tensorboard",
             *(f"speed.{k}" for k in SpeedConfig.model_fields))  # how a step runs, not what it computes


class AmendmentError(ValueError):
    """A change that a resumed run refuses; ``key`` is the dotted config key (the CLI names its flag)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def is_empty(folder: Path) -> bool:
    """True when ``folder`` is missing or holds nothing but a lock file."""
    return not folder.is_dir() or all(p.name == LOCK for p in folder.iterdir())


def _aside(folder: Path) -> Path:
    """A free ``<folder>.old-<time>[-n]`` next to ``folder``; ``RunFolderError`` for a folder without a name
    (``--out ''``, ``.``, ``/``: the current folder is never moved aside)."""
    if not folder.name:
        raise RunFolderError(f"--out {str(folder)!r} with --fresh: the current folder (or /) is never moved aside; "
                             "give --out a named run folder")
    base = folder.with_name(f"{folder.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    dest, n = base, 1
    while dest.exists():
        dest, n = base.with_name(f"{base.name}-{n}"), n + 1
    return dest


_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()  # the locks this process holds


def _drop_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's lock descriptors (the parent keeps its lock)."""
    for lock in list(_HELD):
        if lock.fd is not None:
            try:
                os.close(lock.fd)
            except OSError:
                pass  # already closed: nothing to drop
            lock.fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_inherited_locks)


class RunLock:
    """Exclusive ownership of a run folder by one process (see the module docstring).

    ``acquire`` creates the folder if needed; ``RunFolderError`` names the folder and the pid that holds it,
    or the reason the folder cannot be written. ``stale`` is the pid of a dead holder taken over (or None).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.fd: int | None = None
        self.stale: str | None = None
        self.created: list[Path] = []  # folders this lock created, deepest first (removed again if left empty)

    def acquire(self) -> RunLock:
        try:
            missing = self.folder
            while not missing.exists() and missing != missing.parent:
                self.created.append(missing)
                missing = missing.parent
            self.folder.mkdir(parents=True, exist_ok=True)
            for _ in range(5):  # the file may be replaced between open and flock: retry on a new inode
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
                    os.close(fd)
                    raise RunFolderError(f"{self.folder}: another training ({holder}) is running in this run "
                                         "folder; wait for it to finish or use another --out") from None
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
                os.close(fd)
            else:
                raise RunFolderError(f"{self.folder}: could not take the lock {self.path} (it keeps changing)")
            old = os.read(fd, 200).decode("utf-8", "replace").strip()
            self.stale = old or None
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
            self.fd = fd
            _HELD.add(self)
        except OSError as e:
            raise RunFolderError(f"{self.folder}: cannot write to the run folder ({e.strerror or e})") from None
        return self

    def release(self) -> None:
        """Remove the lock file (if it is still ours), unlock, and remove the folders ``acquire`` created
        when nothing was written into them (a run that failed before writing anything leaves no trace)."""
        if self.fd is None:
            return
        try:
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                os.unlink(self.path)
        except OSError:
            pass  # the folder vanished or was moved: nothing of ours left to remove
        os.close(self.fd)
        self.fd = None
        _HELD.discard(self)
        for folder in self.created:
            try:
                folder.rmdir()  # only empty folders go
            except OSError:
                break

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


#: files whose presence makes a folder a dataset (MA-52 lists, a generated set, a prepared cache), never a run
_DATASET_FILES = ("train_list_videos.txt", "val_list_videos.txt", "test_list_videos.txt", "synth_meta.json",
                  "piumr_manifest.json")


def _not_a_run(folder: Path) -> str | None:
    """Why ``--fresh`` must not move ``folder`` aside (it holds a dataset, or no piumr run), None when it
    holds a run: a ``config.json`` that is a piumr run config."""
    found = [name for name in _DATASET_FILES if (folder / name).exists()]
    if found:
        return f"holds a dataset ({', '.join(found)}), not a run"
    try:
        read_config(folder)
    except RunFolderError:
        what = ", ".join(sorted(p.name for p in folder.iterdir() if p.name != LOCK)[:4])
        return f"is not empty ({what}, ...) and holds no piumr run (no run {CONFIG})"
    return None


def claim(folder: Path, *, fresh: bool = False) -> tuple[RunLock, Path | None]:
    """Lock ``folder`` for a new run: it must be empty, or ``fresh`` moves its content aside.

    Returns the held lock and where an old run was moved (None when nothing was moved).
    """
    lock = RunLock(folder).acquire()
    if is_empty(folder):
        return lock, None
    if not fresh:
        lock.release()
        found = [name for name in _DATASET_FILES if (folder / name).exists()]
        if found:
            raise RunFolderError(f"{folder} holds a dataset ({', '.join(found)}), not a run: give an empty or new "
                                 "--out")
        what = ", ".join(sorted(p.name for p in folder.iterdir() if p.name != LOCK)[:4])
        raise RunFolderError(f"{folder} already holds a run ({what}, ...); continue it with --resume {folder}, "
                             f"or start over with --fresh (moves it to {folder.name}.old-<time>)")
    not_a_run = _not_a_run(folder)
    if not_a_run is not None:
        lock.release()
        raise RunFolderError(f"{folder} {not_a_run}; --fresh moves only a run folder aside: give an empty or new "
                             "--out")
    try:
        dest = _aside(folder)
        os.rename(folder, dest)
        (dest / LOCK).unlink(missing_ok=True)
    except OSError as e:
        lock.release()
        raise RunFolderError(f"{folder}: could not move the old run aside ({e.strerror or e})") from None
    except BaseException:
        lock.release()
        raise
    lock.release()
    return RunLock(folder).acquire(), dest


def _log_rows(path: Path) -> list[tuple[str, dict[str, Any] | None]]:
    """(line, row) of each line of ``log.jsonl`` (row None: not JSON, e.g. half-written by a kill; a JSON value
    other than an object is kept as an empty row). ``RunFolderError`` naming the file and line for a row whose
    ``step`` is not a count (``null``, ``"abc"``: an edited log)."""
    if not path.is_file():
        return []
    rows: list[tuple[str, dict[str, Any] | None]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            rows.append((line, None))
            continue
        row = row if isinstance(row, dict) else {}
        if "step" in row and (not isinstance(row["step"], int) or isinstance(row["step"], bool)):
            raise RunFolderError(f"{path}: line {number}: step is {row['step']!r}, not a count (an edited log? "
                                 "correct or remove that line, then resume)")
        rows.append((line, row))
    return rows


def trim_log(path: Path, step: int) -> int:
    """Keep the rows of ``log.jsonl`` up to ``step`` (rows without a step are kept, an unreadable line is
    dropped); rewrites the file atomically. Returns the number of rows dropped. A row whose ``step`` is not a
    count (``null``, ``"abc"``: an edited file) is a ``RunFolderError`` naming the file and line."""
    kept, dropped = [], 0
    for line, row in _log_rows(path):
        if row is None or row.get("step", 0) > step:
            dropped += 1
            continue
        kept.append(line)
    if dropped:
        write_text_atomic(path, "".join(line + "\n" for line in kept))
    return dropped


@dataclass
class Opened:
    """A run folder opened for training: the config to train, the checkpoint to continue from (None: from
    the start), the lock (held by the main process) and the config's amendments (earlier ones and new)."""

    cfg: TrainConfig
    ckpt: Checkpoint | None
    lock: RunLock | None
    history: list[dict[str, Any]]
    changes: list[Amendment]
    resumed: bool = False

    def start(self) -> tuple[int, int, int]:
        """(epoch, batches of it already trained, step) where training goes on."""
        if self.ckpt is None:
            return 0, 0, 0
        batches = int(self.ckpt.meta.get("extra", {}).get("epoch_batches", 0))
        return int(self.ckpt.meta["epoch"]) + (0 if batches else 1), batches, int(self.ckpt.meta["step"])


@dataclass(frozen=True)
class Amendment:
    """One change of a resumed run's config."""

    key: str
    old: Any
    new: Any

    def to_json(self, epoch: int, step: int) -> dict[str, Any]:
        return {"key": self.key, "old": self.old, "new": self.new, "epoch": epoch, "step": step,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def amendments(old: TrainConfig, new: TrainConfig, *, epochs_done: int) -> list[Amendment]:
    """The changes from ``old`` (the run's config) to ``new``; ``AmendmentError`` for a key outside
    ``AMENDABLE`` or fewer ``epochs`` than the run has already done."""
    a, b = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    changes = [Amendment(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    for c in changes:
        if c.key not in AMENDABLE:
            raise AmendmentError(c.key, f"{c.key} cannot change when a run is resumed (it was {c.old!r}); start a "
                                        "new run for it")
    if new.optim.epochs < epochs_done:
        raise AmendmentError("optim.epochs", f"{new.optim.epochs}: the run has already done {epochs_done} epoch(s)")
    return changes


def read_config(folder: Path) -> tuple[TrainConfig, list[dict[str, Any]]]:
    """``config.json`` of a run folder: (config, its amendments so far); ``RunFolderError`` if unreadable."""
    path = folder / CONFIG
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        history = payload.pop("amendments", []) if isinstance(payload, dict) else []
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise RunFolderError(f"{path}: not a piumr run config (\"amendments\" is {history!r}, a list of "
                                 "changes expected)")
        return TrainConfig.model_validate(payload), history
    except FileNotFoundError:
        raise RunFolderError(f"{folder}: no run to resume here (no last.safetensors or {CONFIG})") from None
    except RunFolderError:
        raise
    except (ValueError, ValidationError, AttributeError) as e:
        first = str(e).splitlines()[0]
        raise RunFolderError(f"{path}: not a piumr run config ({first})") from None


def write_config(folder: Path, cfg: TrainConfig, history: list[dict[str, Any]]) -> None:
    """``config.json``: ``cfg``, with ``"amendments": history`` when there are any."""
    payload = cfg.model_dump(mode="json")
    if history:
        payload["amendments"] = history
    write_text_atomic(folder / CONFIG, json.dumps(payload, indent=2) + "\n")


def _same_run(last: Path, saved: TrainConfig, run: TrainConfig, history: list[dict[str, Any]]) -> None:
    """``RunFolderError`` when ``last``'s config is not one the run in ``config.json`` has had (a checkpoint of
    another run copied in: resuming it would rewrite the run's config to match): a setting a resumed run cannot
    change differs, or an ``AMENDABLE`` one holds a value no amendment in ``history`` gave or replaced (a
    checkpoint written before the run's last amendment holds that amendment's old value)."""
    a, b = _flat(run.model_dump(mode="json")), _flat(saved.model_dump(mode="json"))
    had = {(h.get("key"), json.dumps(v, sort_keys=True)) for h in history for v in (h.get("old"), h.get("new"))}
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
              and (k not in AMENDABLE or (k, json.dumps(b.get(k), sort_keys=True)) not in had)]
    if differ:
        k, more = differ[0], f" and {len(differ) - 1} more setting(s)" if len(differ) > 1 else ""
        never = f" (no resume of this run changed it: {CONFIG} records no such amendment)" if k in AMENDABLE else ""
        raise RunFolderError(f"{last}: not this run's checkpoint: its {k} is {b.get(k)!r}, {CONFIG} says "
                             f"{a.get(k)!r}{more}{never}; put the run's own last.safetensors back, or start a new run")


def _warn_inexact(last: Path, ckpt: Checkpoint, console: Console) -> None:
    """One warning line when ``last`` cannot resume exactly: no optimiser or no RNG state (e.g. a
    ``best.safetensors`` copied over it)."""
    missing = [what for what, absent in (("optimiser", ckpt.optim_state is None),
                                        ("RNG", not ckpt.rng.get("tensors"))) if absent]
    if missing:
        console.print(f"[yellow]warning:[/] {last} holds no {' or '.join(missing)} state (a best.safetensors copied "
                      "over it?): the run goes on from its weights, but not exactly as it would have",
                      highlight=False)


def _refuse_data_inside(cfg: TrainConfig, out_dir: Path) -> None:
    """A new run's folder must not hold its own training data (``--fresh`` would move the data aside)."""
    if resolve_source(cfg.data.root).kind == "synth":
        return
    root, out = Path(cfg.data.root).resolve(), out_dir.resolve()
    if root == out or out in root.parents:
        raise RunFolderError(f"--out {out_dir} holds the training data (--data {cfg.data.root}); a run folder "
                             "cannot hold its data: give another --out")


def open_run(cfg: TrainConfig, out_dir: Path, *, main: bool, resume: bool, fresh: bool, console: Console) -> Opened:
    """Lock ``out_dir`` (the ``main`` process only; a new run claims it), read the checkpoint a resume
    continues from and check ``cfg``'s changes against the run's config (``AmendmentError``)."""
    lock = None
    if main:
        if resume:
            lock = RunLock(out_dir).acquire()
        else:
            _refuse_data_inside(cfg, out_dir)
            lock, moved = claim(out_dir, fresh=fresh)
            if moved is not None:
                console.print(f"moved the previous run in {out_dir} to {moved}")
        if lock.stale:
            console.print(f"[yellow]took over the lock of a training that is no longer running ({lock.stale})[/]")
    if not resume:
        return Opened(cfg, None, lock, [], [])
    try:
        if lock is not None:  # temporary files of writes a kill interrupted (no one else writes here now)
            for tmp in [*out_dir.glob(".*.tmp"), *out_dir.glob(".tmp*")]:  # ours; other libraries' (".tmpXXXXXX")
                if tmp.is_file():
                    tmp.unlink()
        last = out_dir / "last.safetensors"
        ckpt = read_checkpoint(last) if last.is_file() else None
        has_config = (out_dir / CONFIG).is_file()
        base, history = read_config(out_dir) if has_config else (cfg, [])
        if ckpt is not None:
            if has_config:
                _same_run(last, ckpt.config, base, history)
            if main:
                _warn_inexact(last, ckpt, console)
            base = ckpt.config
        _log_rows(out_dir / "log.jsonl")  # an edited log is refused before anything is written
        epochs_done = int(ckpt.meta["epoch"]) + 1 if ckpt is not None else 0
        changes = amendments(base, cfg, epochs_done=epochs_done)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Opened(cfg, ckpt, lock, history, changes, resumed=True)
