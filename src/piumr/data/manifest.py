"""Any labelled video dataset as a manifest: a CSV of clips plus a ``classes.csv`` beside it.

``manifest.csv`` (UTF-8, header row, one clip per row)::

    path,label,person,group,domain,split
    clips/p01_a.mp4,0,p01,head,lab,train

``path`` (absolute, or relative to the manifest's folder and inside it) and ``label`` (an index of
``classes.csv`` or a class name; a cell that could be either, with classes named by numbers, is refused) are
required; ``person``, ``group``, ``domain`` and ``split`` (train | val | test) are optional
columns. ``classes.csv``: ``label,name`` and optionally ``group`` (the coarse class of each label,
MA-52's body part). The reader produces the same :class:`~piumr.data.ma52.ClipRecord` s as the MA-52
list reader (``action`` = label, ``body`` = group index, ``participant`` = person), so everything after
reading is one path. Each problem raises :class:`DatasetError` naming the file and line. Pure Python:
no video is opened.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from piumr.data.ma52 import (
    ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, MANIFEST_NAME, SPLITS, ClipRecord, DatasetError, _check_exists,
    _prepare_failures,
)
from piumr.files import write_text_atomic

__all__ = ["CLASSES_NAME", "COLUMNS", "ClassInfo", "MA52_CLASSES", "Manifest", "cache_keys", "clip_key",
           "read_classes", "read_manifest", "write_cache_manifest", "write_manifest"]

CLASSES_NAME = "classes.csv"
COLUMNS: tuple[str, ...] = ("path", "label", "person", "group", "domain", "split")
_REQUIRED = ("path", "label")
_INDEX = re.compile(r"[0-9]+")  # ASCII digits only


@dataclass(frozen=True)
class ClassInfo:
    """Names of a dataset's classes: ``names[label]``, ``coarse[label]`` = group index, ``groups[group]``,
    and the words a user reads for the two levels (MA-52: action / body; a manifest: label / group)."""

    names: tuple[str, ...]
    coarse: tuple[int, ...]
    groups: tuple[str, ...]
    label_word: str = "label"
    group_word: str = "group"


MA52_CLASSES = ClassInfo(ACTION_NAMES, ACTION_TO_BODY, BODY_NAMES, "action", "body")


@dataclass(frozen=True)
class Manifest:
    """A read manifest: its file, classes, columns present and records (file order)."""

    path: Path
    classes: ClassInfo
    columns: tuple[str, ...]
    records: tuple[ClipRecord, ...]
    splits: tuple[str | None, ...]  # the ``split`` value of each record (None: no split column)

    def has(self, column: str) -> bool:
        """Whether the manifest has ``column``."""
        return column in self.columns


def _rows(path: Path, allowed: tuple[str, ...], required: tuple[str, ...],
          ) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header (checked first: ``allowed`` and ``required`` columns) and (line number, row) of a CSV; ragged
    rows and unreadable files raise naming the line."""
    reader: Any = None
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)  # malformed quoting is an error, not a guess
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}:1: empty file (expected a header row)")
            names = [h.strip() for h in header]
            _check_header(path, names, allowed, required)
            rows: list[tuple[int, dict[str, str]]] = []
            for cells in reader:
                line = reader.line_num
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(names):
                    raise DatasetError(f"{path}:{line}: {len(cells)} fields, the header has {len(names)}")
                rows.append((line, {n: c.strip() for n, c in zip(names, cells, strict=True)}))
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e})") from e
    except csv.Error as e:  # e.g. a NUL byte, an unclosed quote at the end, a huge field
        raise DatasetError(f"{path}:{reader.line_num if reader else 1}: not valid CSV ({e})") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from e
    return names, rows


def _check_header(path: Path, names: list[str], allowed: tuple[str, ...], required: tuple[str, ...]) -> None:
    for n in names:
        if n not in allowed:
            raise DatasetError(f"{path}:1: unknown column {n!r}; the columns are {', '.join(allowed)}")
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}:1: a column is named twice ({', '.join(names)})")
    for n in required:
        if n not in names:
            raise DatasetError(f"{path}:1: no {n!r} column (required: {', '.join(required)})")


def read_classes(path: Path) -> ClassInfo:
    """Read ``classes.csv``: ``label,name[,group]``; labels run 0..K-1 in order, names are unique. Without a
    ``group`` column each class is its own group."""
    return _read_classes(path)[0]


def _read_classes(path: Path) -> tuple[ClassInfo, bool]:
    """``read_classes`` and whether the file declares groups."""
    if not path.is_file():
        raise DatasetError(f"{path}: no classes file (columns label,name[,group]; see docs/data.md)")
    names, rows = _rows(path, ("label", "name", "group"), ("label", "name"))
    labels: list[str] = []
    groups: list[str] = []
    coarse: list[int] = []
    for line, row in rows:
        if row["label"] != str(len(labels)):
            raise DatasetError(f"{path}:{line}: expected label {len(labels)} (labels run 0, 1, ... in order), "
                               f"got {row['label']!r}")
        if not row["name"]:
            raise DatasetError(f"{path}:{line}: empty class name")
        if row["name"] in labels:
            raise DatasetError(f"{path}:{line}: class name {row['name']!r} already on line "
                               f"{rows[labels.index(row['name'])][0]}")
        group = row.get("group", row["name"])
        if not group:
            raise DatasetError(f"{path}:{line}: empty group")
        if group not in groups:
            groups.append(group)
        labels.append(row["name"])
        coarse.append(groups.index(group))
    if len(labels) < 2:
        raise DatasetError(f"{path}: {len(labels)} class(es); a classifier needs at least 2")
    return ClassInfo(tuple(labels), tuple(coarse), tuple(groups)), "group" in names


def _groups_from_rows(path: Path, classes: ClassInfo, rows: list[tuple[int, dict[str, str]]]) -> ClassInfo:
    """The label -> group mapping a manifest's ``group`` column gives (classes.csv declares none); a label
    seen in two groups raises naming both lines. Labels never listed form a group of their own."""
    found: dict[int, tuple[str, int]] = {}
    for line, row in rows:
        where = f"{path}:{line}"
        _clip(where, row["path"], path.parent)
        label = _label(where, row["label"], classes)
        if not row["group"]:
            raise DatasetError(f"{where}: empty group")
        first = found.setdefault(label, (row["group"], line))
        if first[0] != row["group"]:
            raise DatasetError(f"{where}: label {label} ({classes.names[label]}) is in group {row['group']!r} "
                               f"here but in group {first[0]!r} on line {first[1]}")
    groups: list[str] = []
    for label in range(len(classes.names)):
        g = found[label][0] if label in found else classes.names[label]
        if g not in groups:
            groups.append(g)
    coarse = tuple(groups.index(found[lb][0] if lb in found else classes.names[lb]) for lb in range(len(classes.names)))
    return ClassInfo(classes.names, coarse, tuple(groups))


def _label(where: str, text: str, classes: ClassInfo) -> int:
    """The class of a ``label`` cell: an index of ``classes.csv`` or one of its names. A cell that is both an
    index and the name of another class (classes named "1", "2", ...) is refused, never guessed."""
    named = classes.names.index(text) if text in classes.names else None
    if _INDEX.fullmatch(text) and int(text) < len(classes.names):
        label = int(text)
        if named is not None and named != label:
            raise DatasetError(f"{where}: label {text!r} is ambiguous: index {label} of classes.csv is class "
                               f"{classes.names[label]!r}, but class {named} is named {text!r}; rename the classes "
                               "in classes.csv so that no name is another class's index (e.g. 'class 1')")
        return label
    if named is not None:
        return named
    if _INDEX.fullmatch(text):
        raise DatasetError(f"{where}: label {int(text)} is outside 0..{len(classes.names) - 1} (classes.csv)")
    raise DatasetError(f"{where}: label {text!r} is neither a class index (ASCII digits) nor a class name of "
                       "classes.csv")


def _clip(where: str, name: str, folder: Path) -> Path:
    """The clip a ``path`` cell names: an absolute path as it is, a relative one under the manifest's
    ``folder``. A relative path that leaves the folder (``..``) or a drive raise."""
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if not name:
        raise DatasetError(f"{where}: empty path")
    if Path(name).is_absolute():
        return Path(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise DatasetError(f"{where}: path {name!r} points outside the manifest's folder (a relative path stays "
                           "inside it; give an absolute path for a clip elsewhere)")
    return folder / posix.as_posix()


def clip_key(clip: Path, folder: Path) -> str:
    """A clip's key: its path relative to ``folder`` (the data root) when it lies there, else its absolute
    path; two clips of one dataset never share a key."""
    full, root = Path(os.path.abspath(clip)), Path(os.path.abspath(folder))
    return full.relative_to(root).as_posix() if full.is_relative_to(root) else full.as_posix()


def read_manifest(path: Path, check_files: bool = True) -> Manifest:
    """Parse and check a manifest and its ``classes.csv`` into :class:`ClipRecord` s.

    Checks, each a :class:`DatasetError` naming the file and line: header (unknown, missing or doubled
    columns), field count, label (index in range or a class name, never both), a relative path leaving the
    folder, duplicate path (a relative and an absolute path naming one clip too), missing file
    (``check_files``), ``group`` disagreeing with ``classes.csv``, ``split`` not one of train/val/test, an
    empty manifest.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: manifest does not exist")
    classes, declared = _read_classes(path.parent / CLASSES_NAME)
    names, rows = _rows(path, COLUMNS, _REQUIRED)
    if "group" in names and not declared:
        classes = _groups_from_rows(path, classes, rows)
    records: list[ClipRecord] = []
    splits: list[str | None] = []
    seen: dict[str, int] = {}
    # in a prepared cache (piumr prepare --data manifest.csv) clip files carry PREPARED_SUFFIX; clips that
    # failed to convert stay listed and fail when loaded (like a broken raw file)
    cache = path.parent / MANIFEST_NAME
    known_broken = _prepare_failures(cache if cache.is_file() else None) if check_files else set()
    for line, row in rows:
        where = f"{path}:{line}"
        clip = _clip(where, row["path"], path.parent)
        rel = clip_key(clip, path.parent)
        same = os.path.abspath(clip)  # "a.mp4" and "/<folder>/a.mp4" are one clip
        if same in seen:
            raise DatasetError(f"{where}: duplicate path {row['path']!r} (first on line {seen[same]})")
        seen[same] = line
        label = _label(where, row["label"], classes)
        group = classes.coarse[label]
        if row.get("group") and row["group"] != classes.groups[group]:
            raise DatasetError(f"{where}: group {row['group']!r} disagrees with classes.csv, where label {label} "
                               f"({classes.names[label]}) is in group {classes.groups[group]!r}")
        split = row.get("split")
        if split is not None and split not in SPLITS:
            raise DatasetError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        if check_files and rel not in known_broken:
            _check_exists(where, clip, cache.is_file())
        records.append(ClipRecord(clip, label, group, row.get("person") or None, path, line,
                                  domain=row.get("domain") or None))
        splits.append(split)
    if not records:
        raise DatasetError(f"{path}: the manifest lists no clip")
    return Manifest(path, classes, tuple(names), tuple(records), tuple(splits))


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def write_manifest(path: Path, rows: Sequence[dict[str, str]], classes: ClassInfo) -> Path:
    """Write ``rows`` (dicts of :data:`COLUMNS`, every row the same keys) to the manifest ``path`` and
    ``classes`` to ``classes.csv`` beside it, atomically; returns ``path``."""
    columns = [c for c in COLUMNS if rows and c in rows[0]]
    write_text_atomic(path.parent / CLASSES_NAME, _csv(
        ("label", "name", "group"),
        [(i, n, classes.groups[classes.coarse[i]]) for i, n in enumerate(classes.names)]))
    return write_text_atomic(path, _csv(columns, [[r[c] for c in columns] for r in rows]))


#: the folder of a prepared cache that holds the clips a manifest names by an absolute path outside its folder
ABSOLUTE_DIR = "absolute"


def cache_keys(man: Manifest) -> list[str]:
    """Where each clip of ``man`` goes in a prepared cache (a path under the cache, without the suffix): its path
    relative to the manifest's folder, or ``absolute/<its absolute path>`` for a clip outside that folder.
    Two rows that would share a cache file raise naming both lines."""
    folder = man.path.parent
    keys: list[str] = []
    first: dict[str, int | None] = {}
    for r in man.records:
        key = clip_key(r.path, folder)
        if Path(key).is_absolute():
            key = f"{ABSOLUTE_DIR}/{Path(key).relative_to(Path(key).anchor).as_posix()}"
        if key in first:
            raise DatasetError(f"{man.path}:{r.line}: this clip and the one on line {first[key]} would both be "
                               f"prepared into {key}; rename the folder {ABSOLUTE_DIR}/ beside the manifest")
        first[key] = r.line
        keys.append(key)
    return keys


def write_cache_manifest(man: Manifest, keys: Sequence[str], out: Path) -> None:
    """``manifest.csv`` + ``classes.csv`` of a prepared cache in ``out``: ``man``'s rows with ``path`` = each
    clip's cache key (``cache_keys``); the user's file is copied as it is when every key is its path as written."""
    names, rows = _rows(man.path, COLUMNS, _REQUIRED)
    shutil.copyfile(man.path.parent / CLASSES_NAME, out / CLASSES_NAME)
    if all(row["path"] == key for (_, row), key in zip(rows, keys, strict=True)):
        shutil.copyfile(man.path, out / man.path.name)
        return
    write_text_atomic(out / man.path.name, _csv(names, [[key if n == "path" else row[n] for n in names]
                                                        for (_, row), key in zip(rows, keys, strict=True)]))
