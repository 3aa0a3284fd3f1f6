"""Options shared by several commands, their help generated from the code's own lists, and the cheap
checks of paths and names that run before any heavy import (torch, video decoders)."""

from __future__ import annotations

import math
import os
import shutil
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer
import typer._click._textwrap as typer_textwrap

from piumr.backbones import BACKBONES
from piumr.config import MAX_CHECKPOINT_EVERY_MIN, PRESETS, Grouping, ListSplit, get_preset
from piumr.files import is_submission_zip, path_problem, refuse_foreign
from piumr.source import resolve_source
from piumr.stall import ON_STALL, OnStall


class _WholeWords(typer_textwrap.TextWrapper):
    """Help wrapping that never splits a word: not at hyphens, not inside a long path (it gets a line)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{**kwargs, "break_on_hyphens": False, "break_long_words": False})

    def _handle_long_word(self, reversed_chunks: list[str], cur_line: list[str], cur_len: int, width: int) -> None:
        textwrap.TextWrapper._handle_long_word(self, reversed_chunks, cur_line, cur_len, width)


# click's help formatter builds its wrapper from this module attribute (typer 0.29, pinned)
typer_textwrap.TextWrapper = _WholeWords  # type: ignore[misc]

#: every Typer app: plain (click) help, so full flag names, no type placeholder on switches, words kept whole
HELP_SETTINGS: dict[str, Any] = {"max_content_width": 120}


def metavar(values: Any) -> str:
    """``<a|b|c>`` for a ``Literal`` type or a sequence of names: the choices shown in ``--help``. The value
    stays a ``str`` checked by the config, so a wrong one is a one-line error naming the flag."""
    names = get_args(values) or tuple(values)
    return f"<{'|'.join(str(n) for n in names)}>"


#: where runs, results and (by default) checkpoints go, relative to the working directory
ARTIFACTS = Path("artifacts")
PRESET_NAMES = tuple(PRESETS)
BACKBONE_NAMES: tuple[str, ...] = BACKBONES
LIST_SPLITS: tuple[str, ...] = get_args(ListSplit)

ThreadsOpt = Annotated[Optional[int], typer.Option(
    help="intra-op CPU threads (default: OMP_NUM_THREADS if set, else the physical cores left after the data "
         "loader workers; never more than that)")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:N or auto (default: cuda if available)")]
GroupingOpt = Annotated[Optional[str], typer.Option(
    metavar=metavar(Grouping), help="GIRL's groups: random pseudo-groups (paper) or person (one per participant; "
                                    "every batch then holds G participants, equal shares)")]
SetOpt = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE", help="any config field as KEY=VALUE (VALUE read as JSON, else as text), e.g. --set girl.exclude_self=false "
                  "--set model.tfam.fusion_lambda=batch; repeatable")]
PRESET_METAVAR = metavar(PRESET_NAMES)
PRESET_HELP = "config preset (config.py PRESETS)"
PresetOpt = Annotated[str, typer.Option(metavar=PRESET_METAVAR, help=PRESET_HELP)]


def parse_minutes(text: str) -> float:
    """``--checkpoint-every-min``: minutes from 0 to ``MAX_CHECKPOINT_EVERY_MIN``; ``typer.BadParameter``
    (a usage error naming the flag) for text that is not a number (``nan``, ``inf``, ``abc``) or out of range."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number of minutes") from None
    if not math.isfinite(value):
        raise typer.BadParameter(f"{text!r} is not a number of minutes (give 0 to {MAX_CHECKPOINT_EVERY_MIN:g})")
    if not 0 <= value <= MAX_CHECKPOINT_EVERY_MIN:
        raise typer.BadParameter(f"{text} is outside 0..{MAX_CHECKPOINT_EVERY_MIN:g} minutes")
    return value


def check_preset(name: str) -> None:
    """``KeyError`` listing the presets when ``name`` is not one (before any heavy import)."""
    get_preset(name)


DATA_KINDS = "an MA-52 folder, a prepared cache, a manifest .csv (docs/data.md) or 'synth'"
DataOpt = Annotated[Optional[str], typer.Option(metavar="<root|manifest.csv|synth>", help=f"{DATA_KINDS}")]
HoldOutOpt = Annotated[Optional[str], typer.Option(
    metavar="domain=NAME", help="a manifest's domain NAME is the validation set; train on the other domains")]
ManifestOpt = Annotated[bool, typer.Option("--manifest", help="also write manifest.csv + classes.csv (docs/data.md)")]


def check_data(data: Optional[str], flag: str = "--data") -> None:
    """``FileNotFoundError`` naming ``flag`` when ``data`` is neither ``synth``, an existing folder nor an
    existing manifest (``.csv`` file; its rows are checked when it is read)."""
    if data is None or resolve_source(data).kind == "synth":
        return
    root = Path(data).expanduser()
    problem = path_problem(root)
    if problem is not None and problem != "no such file or folder":
        raise FileNotFoundError(f"{flag} {data}: {problem} (give an MA-52 folder, a prepared cache, or 'synth')")
    if not root.exists():
        raise FileNotFoundError(f"{flag} {data}: data root does not exist (give {DATA_KINDS})")
    if resolve_source(data).kind == "missing":  # there, but neither a folder nor a manifest .csv
        raise FileNotFoundError(f"{flag} {data}: not a folder nor a manifest .csv (give {DATA_KINDS})")


def check_file(path: Optional[Path], flag: str, what: str = "file", *, folder_ok: bool = False) -> None:
    """``FileNotFoundError`` naming ``flag`` when ``path`` is given and is not an existing file (or, with
    ``folder_ok``, folder)."""
    if path is not None and not (path.is_file() or (folder_ok and path.is_dir())):
        problem = path_problem(path)
        raise FileNotFoundError(f"{flag} {path}: " + (f"no such {what}" if problem in (None, "no such file or folder")
                                                      else f"{problem}, not a {what}"))


def resolve_checkpoint(checkpoint: Optional[Path], artifacts: Path) -> Path:
    """``checkpoint`` if it is a file, its ``best.safetensors`` if it is a run folder, else (when not given) the
    most recently written ``best.safetensors`` under ``artifacts``; ``FileNotFoundError`` naming the flag and
    the file missing, or saying how to get one."""
    if checkpoint is not None and checkpoint.is_dir():
        best, last = checkpoint / "best.safetensors", checkpoint / "last.safetensors"
        if best.is_file():
            return best
        if last.is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: a run folder without best.safetensors (no "
                                    f"validation has finished yet); give --checkpoint {last} for its latest weights")
        if (checkpoint / "config.json").is_file() or (checkpoint / "log.jsonl").is_file():
            raise FileNotFoundError(f"--checkpoint {checkpoint}: a run folder with no checkpoint yet (neither "
                                    "best.safetensors nor last.safetensors)")
        raise FileNotFoundError(f"--checkpoint {checkpoint}: a folder without best.safetensors; give a checkpoint "
                                "file or a run folder")
    if checkpoint is not None:
        check_file(checkpoint, "--checkpoint", "checkpoint")
        return checkpoint
    found = sorted(artifacts.rglob("best.safetensors"), key=lambda p: p.stat().st_mtime) if artifacts.is_dir() else []
    if not found:
        raise FileNotFoundError(
            f"no checkpoint given and none found under {artifacts}/; train one first "
            "(e.g. `piumr train --preset smoke --data synth`) or pass --checkpoint PATH")
    return found[-1]


def check_inputs(paths: Optional[list[Path]], submission: Optional[Path] = None) -> None:
    """When not one of ``paths`` exists: ``FileNotFoundError`` naming them (before any heavy import). Some
    missing among existing ones are reported per input by ``piumr.predict.expand_inputs`` instead. Clips and
    a ``--submission`` together are refused (a submission scores --data's test list, the clips would be
    dropped)."""
    if paths and submission is not None:
        raise ValueError(f"--submission {submission} scores the test list of --data; it cannot be combined with "
                         f"clips to predict ({paths[0]}{', ...' if len(paths) > 1 else ''}): run them separately")
    if paths and all(path_problem(p) for p in paths):
        raise FileNotFoundError("no clip to predict: " + "; ".join(f"{p}: {path_problem(p)}" for p in paths))


def check_predict(clips: Optional[list[Path]], submission: Optional[Path], data: Optional[Path]) -> None:
    """``piumr predict``'s inputs: clips, a manifest (``--data``) or a submission's MA-52 root; one-line
    errors before any heavy import."""
    manifest = data is not None and resolve_source(data).kind == "manifest"
    if submission is None and not clips and not manifest:
        raise ValueError("give one or more clips or folders, a manifest (--data manifest.csv) or --submission")
    check_inputs(clips, submission)
    if submission is not None and data is None:
        raise ValueError("--submission needs --data (the MA-52 root holding test_list_videos.txt)")
    if submission is not None and manifest:
        raise ValueError(f"--submission writes a Codabench file for an MA-52 root's test list; --data {data} is a "
                         "manifest: predict its clips without --submission")
    if submission is not None:  # piumr replaces only a submission it wrote
        refuse_foreign(submission, is_submission_zip, "--submission", "a piumr submission (a zip holding only "
                                                                      "prediction.csv)")
    check_data(str(data) if data is not None else None)


def check_threads(threads: Optional[int]) -> None:
    """``--threads`` below 1: ``ValueError`` naming the flag (before torch is imported; ``runtime.thread_budget``
    applies the rest of the rule)."""
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")


#: what ``piumr synth`` costs, measured on its generator (libx264, yuv420p; one process on an idle core,
#: docs/cli.md): encoded bytes per pixel of a frame, seconds per million pixels rendered and encoded, and
#: seconds per clip whatever its size
SYNTH_BYTES_PER_PIXEL, SYNTH_SECONDS_PER_MPIXEL, SYNTH_SECONDS_PER_CLIP = 0.2, 0.12, 0.005
#: what ``piumr synth`` starts without ``--force``: at most this much disk and this much time
SYNTH_BUDGET_BYTES, SYNTH_BUDGET_SECONDS = 50e9, 4 * 3600.0
#: the options that set a synthetic set's size, in the order of its clip count x pixels
SYNTH_SIZE_FLAGS = (("--persons", "synth_persons"), ("--clips-per-person", "synth_clips_per_person"),
                    ("--frames", "synth_frames"), ("--size", "synth_size"))


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_seconds(s: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if s >= size:
            return f"{s / size:,.1f} {unit}"
    return f"{s:.0f} s"


@dataclass(frozen=True)
class SynthEstimate:
    """What a ``piumr synth`` set costs (an estimate from ``SYNTH_*``): clips, bytes on disk, seconds of wall
    time with ``workers`` processes on an idle machine."""

    clips: int
    bytes: float
    seconds: float
    workers: int

    def describe(self) -> str:
        return (f"{self.clips:,} clips, about {human_bytes(self.bytes)} on disk and {human_seconds(self.seconds)} "
                f"with {self.workers} worker(s)")


def synth_estimate(data: Any, workers: int) -> SynthEstimate:
    """The cost of the synthetic set ``data`` (a ``DataConfig``) made by ``workers`` processes."""
    clips = data.synth_persons * data.synth_clips_per_person
    pixels = data.synth_frames * data.synth_size ** 2
    usable = max(1, min(workers, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else
                        os.cpu_count() or 1))
    seconds = clips * (SYNTH_SECONDS_PER_CLIP + pixels / 1e6 * SYNTH_SECONDS_PER_MPIXEL) / usable
    return SynthEstimate(clips, clips * pixels * SYNTH_BYTES_PER_PIXEL, seconds, usable)


def check_synth_budget(est: SynthEstimate, data: Any, out: Path) -> None:
    """``ValueError`` naming the size options when ``est`` is over the budget (``SYNTH_BUDGET_*``) or over the
    free space where ``out`` goes; ``--force`` skips this check."""
    folder = Path(out).expanduser().absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free if folder.is_dir() else None
    over = [f"the budget of {human_bytes(SYNTH_BUDGET_BYTES)}"] if est.bytes > SYNTH_BUDGET_BYTES else []
    over += [f"the budget of {human_seconds(SYNTH_BUDGET_SECONDS)}"] if est.seconds > SYNTH_BUDGET_SECONDS else []
    over += [f"the {human_bytes(free)} free under {folder}"] if free is not None and est.bytes > free else []
    if over:
        sizes = " x ".join(f"{flag} {getattr(data, key)}" for flag, key in SYNTH_SIZE_FLAGS)
        listed = over[0] if len(over) == 1 else f"{', '.join(over[:-1])} and {over[-1]}"
        raise ValueError(f"{sizes}: {est.describe()} (estimate), over {listed}; lower them, or pass --force to "
                         "generate it anyway")


OnStallOpt = Annotated[str, typer.Option(
    "--on-stall", metavar="warn|stop",
    help="what a training does when its cross-entropy is still at chance (>= 0.97 ln K) 200 steps after warm-up (or "
         "at its last step): warn (one line; a stall row in log.jsonl) or stop (also exit 4)")]


def check_on_stall(value: str) -> OnStall:
    """``--on-stall``'s value, or ``ValueError`` naming the flag and the value."""
    if value not in ON_STALL:
        raise ValueError(f"--on-stall must be warn or stop, got {value!r}")
    return "warn" if value == "warn" else "stop"
