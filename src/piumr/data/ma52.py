"""MA-52 facts and list files: class names, the 52 -> 7 body hierarchy, layout, splits, folds.

The official dataset ships flat folders of mp4 clips plus three list files
(``<file>.mp4 <action_label>`` per line, CRLF). Everything here is pure Python:
no video is opened. A prepared cache (see :mod:`piumr.data.prepare`) has the same
layout, so every function here accepts either a raw root or a cache root.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from piumr.config import DataConfig, ListSplit
from piumr.errors import DatasetError as DatasetError  # re-exported: raised by this module
from piumr.files import path_problem
from piumr.source import CACHE_MANIFEST

Split = ListSplit
SPLITS: tuple[Split, ...] = ("train", "val", "test")

# label_name.txt of VUT-HFUT/Micro-Action, in official index order.
ACTION_NAMES: tuple[str, ...] = (
    "shaking body", "sitting straightly", "shrugging", "turning around", "rising up",
    "bowing head", "head up", "tilting head", "turning head", "nodding", "shaking head",
    "scratching arms", "playing objects", "putting hands together", "rubbing hands",
    "pointing oneself", "clenching fist", "stretching arms", "retracting arms", "waving",
    "spreading hands", "hands touching fingers", "other finger movements",
    "illustrative gestures",
    "shaking legs", "curling legs", "spread legs", "closing legs", "crossing legs",
    "stretching feet", "retracting feet", "tiptoe",
    "scratching or touching neck", "scratching or touching chest",
    "scratching or touching back", "scratching or touching shoulder", "arms akimbo",
    "crossing arms",
    "playing or tidying hair", "scratching or touching hindbrain",
    "scratching or touching forehead", "scratching or touching face", "rubbing eyes",
    "touching nose", "touching ears", "covering face", "covering mouth", "pushing glasses",
    "patting legs", "touching legs", "scratching legs", "scratching feet",
)
BODY_NAMES: tuple[str, ...] = (
    "body", "head", "upper limb", "lower limb", "body-hand", "head-hand", "leg-hand",
)
# fine2coarse() of the official evaluation code: first action label of each body group.
_BODY_STARTS: tuple[int, ...] = (0, 5, 11, 24, 32, 38, 48)
ACTION_TO_BODY: tuple[int, ...] = tuple(
    sum(1 for s in _BODY_STARTS if a >= s) - 1 for a in range(len(ACTION_NAMES))
)
NUM_ACTIONS = len(ACTION_NAMES)
NUM_BODIES = len(BODY_NAMES)

LIST_NAMES: dict[Split, str] = {s: f"{s}_list_videos.txt" for s in SPLITS}
LABEL_FILE = "label_name.txt"
# A prepared cache (piumr.data.prepare) is recognised by this manifest; its clip files are
# the raw file name plus PREPARED_SUFFIX, in the same split folders.
MANIFEST_NAME = CACHE_MANIFEST
PREPARED_SUFFIX = ".jpgs"

_TRAIN_NAME = re.compile(r"^(?P<person>[0-9]{4})_(?P<body>[0-9]{2})_(?P<clip>[0-9]+)\.[A-Za-z0-9]+$")


def body_of(action: int) -> int:
    """Body group (0..6) of an action label (0..51), as the official evaluation maps it."""
    if not 0 <= action < NUM_ACTIONS:
        raise ValueError(f"action label {action} is outside 0..{NUM_ACTIONS - 1}")
    return ACTION_TO_BODY[action]


@dataclass(frozen=True)
class ClipRecord:
    """One clip of a split list or manifest row. ``participant`` is None for test clips (names carry no id);
    ``action`` / ``body`` are a manifest's label / group index; ``domain`` is set by manifests only."""

    path: Path
    action: int
    body: int
    participant: str | None
    list_file: Path | None
    line: int | None
    domain: str | None = None


@dataclass(frozen=True)
class Layout:
    """Where the pieces of an MA-52 root are. Missing video folders are None."""

    root: Path
    videos: dict[Split, Path | None]
    lists: dict[Split, Path]
    label_names: Path | None
    manifest: Path | None  # set when root is a prepared cache

    def video_dir(self, split: Split) -> Path:
        """The split's video folder, or ``root/split`` when none exists yet."""
        found = self.videos.get(split)
        return found if found is not None else self.root / split


def find_layout(root: Path, list_dir: Path | None = None) -> Layout:
    """Locate video folders (``train|videos_train`` ...) and list files of an MA-52 root.

    List files are looked up in ``list_dir`` (if given), then ``root``, then
    ``root/annotations``. Raises :class:`DatasetError` if root is missing or has no list.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist or is not a folder")
    if list_dir is not None and not Path(list_dir).is_dir():
        raise DatasetError(f"{list_dir}: list folder does not exist")
    search = [Path(d) for d in (list_dir, root, root / "annotations") if d is not None]
    lists: dict[Split, Path] = {}
    for split in SPLITS:
        hit = next((d / LIST_NAMES[split] for d in search if (d / LIST_NAMES[split]).is_file()), None)
        if hit is not None:
            lists[split] = hit
    if not lists:
        wanted = ", ".join(LIST_NAMES.values())
        raise DatasetError(f"{root}: no list file ({wanted}) in {', '.join(map(str, search))}")
    labels = next((d / LABEL_FILE for d in search if (d / LABEL_FILE).is_file()), None)
    videos: dict[Split, Path | None] = {s: _video_folder(root, s) for s in SPLITS}
    manifest = root / MANIFEST_NAME
    return Layout(root, videos, lists, labels, manifest if manifest.is_file() else None)


def _video_folder(root: Path, split: Split) -> Path | None:
    for name in (split, f"videos_{split}"):
        if (root / name).is_dir():
            return root / name
    return None


def read_split(
    root: Path, split: Split, list_dir: Path | None = None, check_files: bool = True
) -> list[ClipRecord]:
    """Parse and validate one official list file into :class:`ClipRecord` s (list order).

    Accepts CRLF or LF, a last line without newline and blank lines. Each problem
    (bad line, label outside 0..51, body digits disagreeing with the label, duplicate,
    path escaping the root, missing file when ``check_files``) raises
    :class:`DatasetError` naming the list file and line.
    """
    if split not in SPLITS:
        raise DatasetError(f"{root}: unknown split {split!r}; choose one of {SPLITS}")
    layout = find_layout(root, list_dir)
    if split not in layout.lists:
        raise DatasetError(f"{layout.root}: no {LIST_NAMES[split]} found")
    list_file = layout.lists[split]
    video_dir = layout.video_dir(split)
    if check_files and layout.videos[split] is None:
        raise DatasetError(f"{layout.root}: no video folder {split}/ or videos_{split}/")
    records: list[ClipRecord] = []
    seen: dict[str, int] = {}
    # In a prepared cache, clips that failed to convert stay in the list (like a broken raw
    # file would) and fail when loaded; they are not "missing".
    known_broken = _prepare_failures(layout.manifest) if check_files else set()
    for line_no, text in _lines(list_file):
        name, action = _parse_line(list_file, line_no, text)
        where = f"{list_file}:{line_no}"
        if name in seen:
            raise DatasetError(f"{where}: duplicate entry {name!r} (first on line {seen[name]})")
        seen[name] = line_no
        participant = _check_name(where, split, name, action)
        path = video_dir / name
        if check_files and f"{split}/{name}" not in known_broken:
            _check_exists(where, path, layout.manifest is not None)
        records.append(ClipRecord(path, action, body_of(action), participant, list_file, line_no))
    if not records:
        raise DatasetError(f"{list_file}: the list is empty")
    return records


def _lines(list_file: Path) -> list[tuple[int, str]]:
    """(1-based line number, stripped text) of the non-blank lines."""
    try:
        text = list_file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{list_file}: not UTF-8 text ({e})") from e
    except OSError as e:
        raise DatasetError(f"{list_file}: cannot read ({e})") from e
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return [(i + 1, ln.strip()) for i, ln in enumerate(lines) if ln.strip()]


_LABEL = re.compile(r"-?[0-9]+")  # ASCII digits only (int() would also take "٣", "+3", " 3" or "1_0")


def _parse_line(list_file: Path, line_no: int, text: str) -> tuple[str, int]:
    parts = text.rsplit(maxsplit=1)
    where = f"{list_file}:{line_no}"
    if len(parts) != 2:
        raise DatasetError(f"{where}: expected '<file> <label>', got {text!r}")
    name, label = parts
    if not _LABEL.fullmatch(label):
        raise DatasetError(f"{where}: label {label!r} is not an integer written in ASCII digits 0-9")
    action = int(label)
    if not 0 <= action < NUM_ACTIONS:
        raise DatasetError(f"{where}: label {action} is outside 0..{NUM_ACTIONS - 1}")
    return name, action


def _check_name(where: str, split: Split, name: str, action: int) -> str | None:
    """Reject paths leaving the video folder; return the participant id (train/val)."""
    posix, win = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise DatasetError(f"{where}: entry {name!r} points outside the dataset root")
    if split == "test":
        return None
    match = _TRAIN_NAME.match(posix.name)
    if match is None:
        raise DatasetError(f"{where}: {split} entry {name!r} is not named PPPP_BB_NNNN.mp4")
    if int(match["body"]) != body_of(action):
        raise DatasetError(
            f"{where}: {name!r} has body digits {match['body']} but label {action} "
            f"({ACTION_NAMES[action]}) belongs to body group {body_of(action)}"
        )
    return match["person"]


def _prepare_failures(manifest: Path | None) -> set[str]:
    """Keys (``split/name``) a prepared cache lists as failed; empty for a raw root."""
    if manifest is None:
        return set()
    try:
        failed = json.loads(manifest.read_text(encoding="utf-8")).get("failed", {})
    except (OSError, json.JSONDecodeError) as e:
        raise DatasetError(f"{manifest}: cannot read the cache manifest ({e})") from e
    return set(failed)


def _check_exists(where: str, path: Path, prepared: bool) -> None:
    target = path.with_name(path.name + PREPARED_SUFFIX) if prepared else path
    if not target.is_file():
        problem = path_problem(target)
        if problem == "no such file or folder":
            raise DatasetError(f"{where}: file {target} does not exist")
        raise DatasetError(f"{where}: {target}: {problem or 'a folder, not a clip file'}")


def read_label_names(path: Path) -> tuple[str, ...]:
    """Read ``label_name.txt`` (``index<TAB>name``); indices must run 0..n-1 in order."""
    names: list[str] = []
    for line_no, text in _lines(path):
        parts = text.split("\t", 1) if "\t" in text else text.split(maxsplit=1)
        if len(parts) != 2 or parts[0] != str(len(names)):
            raise DatasetError(f"{path}:{line_no}: expected '{len(names)}<TAB>name', got {text!r}")
        names.append(parts[1].strip())
    return tuple(names)


def cross_subject_folds(
    records: Sequence[ClipRecord], k: int = DataConfig().folds, seed: int = DataConfig().fold_seed
) -> list[tuple[list[ClipRecord], list[ClipRecord]]]:
    """k person-disjoint (train, held-out) folds over the participants of ``records``.

    Participants are shuffled with ``seed`` and then assigned, largest first, to the
    fold with the fewest clips so far (greedy balancing by clip count). Each record
    appears in exactly one held-out set; record order is preserved within a fold.
    """
    if k < 2:
        raise ValueError(f"need k >= 2 folds, got {k}")
    counts: dict[str, int] = {}
    for r in records:
        if r.participant is None:
            raise DatasetError(f"{r.list_file}:{r.line}: {r.path.name} has no participant id")
        counts[r.participant] = counts.get(r.participant, 0) + 1
    if len(counts) < k:
        raise DatasetError(f"{len(counts)} participants cannot fill {k} person-disjoint folds")
    people = sorted(counts)
    random.Random(seed).shuffle(people)
    people.sort(key=lambda p: -counts[p])  # stable: shuffled order breaks ties
    load = [0] * k
    fold_of: dict[str, int] = {}
    for p in people:
        f = min(range(k), key=lambda i: (load[i], i))
        fold_of[p] = f
        load[f] += counts[p]
    folds = []
    for f in range(k):
        held = [r for r in records if fold_of[r.participant or ""] == f]
        train = [r for r in records if fold_of[r.participant or ""] != f]
        folds.append((train, held))
    return folds
