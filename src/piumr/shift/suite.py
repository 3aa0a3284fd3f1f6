"""The person-shift suite: per factor, every arm trained on the same seeds (``piumr reproduce shift-suite``).

Training persons are drawn from the training ranges of every factor, so one training serves every factor:
the arms baseline, tfam, girl, piumr and aa are trained once per seed and scored on every factor's held-out
persons; only the positive control differs per factor (its augmentation). A seed costs 5 + 5 trainings.

Layout under ``out`` (default ``artifacts/shift-suite``)::

    runs/<arm>/seed<k>.json            one training of a shared arm: per-clip correctness on ``seen`` and on
                                       ``unseen/<factor>`` for every factor, timings
    runs/control-<factor>/seed<k>.json the positive control of one factor (scored on that factor only)
    weights/<run>/seed<k>.safetensors  each trained model (a piumr checkpoint), to score it again on other
                                       held-out persons without retraining (runs trained before this existed
                                       have none)
    suite.json                         the settings the runs were made with (a rerun must match them)
    results.json, summary.json, table.tex, shift_suite.png, summary.md   (``piumr.shift.report.write_report``)

Seed k evaluates held-out fold ``k % folds``, so ``folds`` seeds cover every held-out person once. A run
file is written atomically once its training is done, so an interrupted suite resumes from the runs it
lacks. Runs go ``jobs`` at a time in separate processes (one thread each unless asked).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from piumr.config import SHIFT_SUITE
from piumr.data.synth.shift import FACTORS, GENERATOR_VERSION_V2, MIXED_HELD, RANGES, ClipSet, ShiftSizes, build_train, build_unseen
from piumr.errors import Interrupted
from piumr.files import write_json_atomic
from piumr.recipe import RECIPE_VERSION
from piumr.shift.arms import arm_spec
from piumr.shift.aug import CONTROLS_VERSION
from piumr.shift.train import ARMS, arm_config, suite_config, tfam_map, train_and_score
from piumr.run_folder import RunLock
from piumr.runtime import Stop, cpu_identity, die_with_parent, end_pool, stop_on_signals
from piumr.stall import ON_STALL

__all__ = ["CONTROL_KINDS", "PROTOCOL", "SUITE_VERSION", "protocol_commit", "SuiteSettings", "Task", "tasks", "pending",
           "run_suite", "load_runs"]

#: what a suite training does besides its config (``suite.json`` records it; a folder of another version takes no
#: new runs). 1: the A/A arm on another seed. 2: the A/A arm shares the baseline's seed (initialisation, data
#: order) and differs in its random stream; the shared augmentation draws from its own generator; the
#: domain-generalisation arms (``piumr.shift.arms``). 3: every arm's stream, the baseline's included, is offset
#: from the initialisation seed (``shift.train.stream_seed``; a deviation of the protocol, listed there)
SUITE_VERSION = 3


@dataclass(frozen=True)
class SuiteSettings:
    """What the suite trains: sizes of the data, epochs, seeds, factors and arms."""

    sizes: ShiftSizes = ShiftSizes()
    epochs: int = int(SHIFT_SUITE["epochs"])
    batch: int = int(SHIFT_SUITE["batch"])
    lr: float = float(SHIFT_SUITE["lr"])
    tfam_stage: int = int(SHIFT_SUITE["tfam_stage"])
    seeds: tuple[int, ...] = tuple(range(int(SHIFT_SUITE["seeds"])))
    factors: tuple[str, ...] = FACTORS
    arms: tuple[str, ...] = ARMS
    #: the positive control: "data" trains the baseline on persons whose factor covers the held-out range too
    #: (``build_train(widen=factor)``: it removes the shift by construction); "augment" trains the baseline on the
    #: usual persons with the factor's augmentation (``piumr.shift.aug.CONTROLS``)
    control: str = "data"
    #: what a training whose cross-entropy is still at chance 200 steps after warm-up does (``piumr.stall``):
    #: "warn" (its run file records ``stalled``; the report counts them) or "stop" (the suite stops)
    on_stall: str = "warn"
    #: a shared arm's training scores the held-out persons of every factor (True: one training serves the whole
    #: suite) or only of ``factors`` (the person-gap demo: a fifth of the scoring); a run file that lacks a factor
    #: asked for later is trained again (``pending``)
    score_all: bool = True

    def as_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("on_stall")  # how a stall is handled, not what is trained
        d.pop("score_all")  # what is scored, not what is trained
        d["generator_version"] = GENERATOR_VERSION_V2
        d["controls_version"] = CONTROLS_VERSION
        # the factors' ranges (tuples as lists), with the mixed factor's own held-out ranges
        d["ranges"] = json.loads(json.dumps({**RANGES, "mixed_held": MIXED_HELD}))
        d["recipe_version"] = RECIPE_VERSION  # runs of another recipe are another suite (piumr.recipe)
        d["suite_version"] = SUITE_VERSION
        return d

    def check(self) -> None:
        """Raises ``ValueError`` naming the bad factor, arm or seed list."""
        bad = [f for f in self.factors if f not in FACTORS]
        if bad:
            raise ValueError(f"--factors: unknown {', '.join(bad)}; choose from {', '.join(FACTORS)}")
        bad = [a for a in self.arms if a not in ARMS]
        if bad:
            raise ValueError(f"--arms: unknown {', '.join(bad)}; choose from {', '.join(ARMS)}")
        if self.control not in CONTROL_KINDS:
            raise ValueError(f"--control {self.control}: choose one of {', '.join(CONTROL_KINDS)}")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.on_stall not in ON_STALL:
            raise ValueError(f"--on-stall must be warn or stop, got {self.on_stall!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"--seeds must be distinct non-negative integers, got {list(self.seeds)}")


CONTROL_KINDS: tuple[str, ...] = ("data", "augment")


@dataclass(frozen=True)
class Task:
    """One training of the suite: a shared arm, or the control of ``factor``."""

    arm: str
    seed: int
    factor: str | None = None

    @property
    def name(self) -> str:
        return self.arm if self.factor is None else f"{self.arm}-{self.factor}"

    def path(self, out: Path) -> Path:
        return out / "runs" / self.name / f"seed{self.seed}.json"

    def weights(self, out: Path) -> Path:
        """The trained model (not committed: ``*.safetensors`` under artifacts/ is ignored by git)."""
        return out / "weights" / self.name / f"seed{self.seed}.safetensors"


def tasks(settings: SuiteSettings) -> list[Task]:
    """Every training: per seed, each shared arm once and the control once per factor."""
    return [t for s in settings.seeds for a in settings.arms
            for t in ([Task(a, s, f) for f in settings.factors] if a == "control" else [Task(a, s)])]


def _scored(path: Path) -> set[str]:
    """The factors whose held-out persons the run file ``path`` scored (none when it does not exist)."""
    if not path.is_file():
        return set()
    return {k[len("unseen/"):] for k in json.loads(path.read_text(encoding="utf-8")) if k.startswith("unseen/")}


def _asked(settings: SuiteSettings, task: Task) -> tuple[str, ...]:
    """The factors ``task`` must score: its control's factor, every factor, or (``score_all`` off) ``factors``."""
    return (task.factor,) if task.factor is not None else FACTORS if settings.score_all else settings.factors


def pending(settings: SuiteSettings, out: Path) -> list[Task]:
    """The tasks of ``settings`` still to train under ``out``: no run file, or one that lacks an asked factor."""
    return [t for t in tasks(settings) if not set(_asked(settings, t)) <= _scored(t.path(out))]


@lru_cache(maxsize=2)
def _train_data(sizes: ShiftSizes, widen: str | None = None) -> dict[str, ClipSet]:
    return build_train(sizes, widen)


@lru_cache(maxsize=len(FACTORS))
def _unseen(factor: str, sizes: ShiftSizes, fold: int) -> ClipSet:
    return build_unseen(factor, sizes, fold)


def _run_task(settings: SuiteSettings, task: Task, out: Path, threads: int = 1, device: str = "cpu") -> dict[str, Any]:
    """Train and score ``task`` on ``device`` with ``threads`` intra-op threads; write its run file. Returns the
    file's payload."""
    import torch

    torch.set_num_threads(threads)
    fold = task.seed % settings.sizes.folds
    have = set(_asked(settings, task)) | _scored(task.path(out))  # a run trained again keeps what it scored
    factors = tuple(f for f in FACTORS if f in have)
    widen = task.factor if settings.control == "data" else None
    data = {**_train_data(settings.sizes, widen), **{f"unseen/{f}": _unseen(f, settings.sizes, fold) for f in factors}}
    base = suite_config(settings.sizes, epochs=settings.epochs, batch=settings.batch, lr=settings.lr,
                        tfam_stage=settings.tfam_stage)
    cfg = arm_config(base, task.arm, task.seed)
    spec = arm_spec(task.arm)
    augment = task.factor if task.factor is not None and settings.control == "augment" else spec.augment
    res = train_and_score(cfg, data, augment=augment, stream=spec.stream, person_batches=spec.person_batches,
                          device=device, save_to=task.weights(out),
                          on_stall="stop" if settings.on_stall == "stop" else "warn",
                          name=f"shift suite {task.name} seed {task.seed}")
    payload = {"arm": task.arm, "factor": task.factor, "seed": task.seed, "fold": fold, "config_seed": cfg.seed,
               "control": settings.control if task.factor else None,
               "tfam_map": list(tfam_map(cfg)) if cfg.model.tfam.enabled else None, "device": device,
               "recipe_version": RECIPE_VERSION, "suite_version": SUITE_VERSION, "cpu": cpu_identity(), **res}
    write_json_atomic(task.path(out), payload, indent=None)
    return payload


def _check_settings(settings: SuiteSettings, out: Path, command: str | None = None) -> None:
    """Write ``suite.json``, or refuse (``ValueError``) when ``out`` holds runs of other settings; ``command`` (the
    command line that trains) is appended to its ``commands`` with the time, so a report rewritten later still
    names every training command."""
    path = out / "suite.json"
    mine = settings.as_json()
    keep = ("sizes", "epochs", "batch", "lr", "tfam_stage", "generator_version", "ranges", "controls_version", "control",
            "recipe_version", "suite_version")
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        if {k: old.get(k) for k in keep} != {k: mine[k] for k in keep}:
            raise ValueError(f"{out}: holds runs made with other settings ({path}); give another --out")
        merged = {**old, "seeds": sorted(set(old["seeds"]) | set(settings.seeds)),
                  "factors": [f for f in FACTORS if f in set(old["factors"]) | set(settings.factors)],
                  "arms": [a for a in ARMS if a in set(old["arms"]) | set(settings.arms)]}
    else:  # the first run: the protocol's commit as the suite starts (docs/shift_suite_protocol.md)
        merged = {**mine, "protocol_commit": protocol_commit()}
    if command:
        merged["commands"] = [*merged.get("commands", []), {"command": command, "started": timestamp()}]
    write_json_atomic(path, merged)


#: the suite's analysis plan, fixed before its final runs
PROTOCOL = "docs/shift_suite_protocol.md"


def protocol_commit() -> str | None:
    """The last commit of ``PROTOCOL`` in the source checkout this package runs from (``+uncommitted`` appended
    when the file differs from it); None outside a git checkout or without the file."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    if not (root / PROTOCOL).is_file():
        return None
    try:
        h = subprocess.run(["git", "log", "-1", "--format=%h", "--", PROTOCOL], cwd=root, capture_output=True,
                           text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", PROTOCOL], cwd=root).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return None
    return (h or "uncommitted") + ("+uncommitted" if dirty and h else "")


def run_suite(settings: SuiteSettings, out: Path, *, jobs: int = 1, threads: int = 1, device: str = "cpu",
              on_done: Callable[[Task, dict[str, Any], int, int], None] | None = None,
              command: str | None = None) -> list[Task]:
    """``_run_suite`` holding ``out``'s lock (``RunLock``, as a training run folder): one suite at a time trains
    into ``out``; a second is refused (``RunFolderError`` naming the first's pid) before it writes anything."""
    settings.check()
    with RunLock(out):
        return _run_suite(settings, out, jobs=jobs, threads=threads, device=device, on_done=on_done, command=command)


def _run_suite(settings: SuiteSettings, out: Path, *, jobs: int = 1, threads: int = 1, device: str = "cpu",
               on_done: Callable[[Task, dict[str, Any], int, int], None] | None = None,
               command: str | None = None) -> list[Task]:
    """Run every missing training of ``settings`` under ``out`` (``jobs`` processes of ``threads`` threads, each
    training on ``device``: on one GPU, ``jobs`` small trainings share it); returns what ran. SIGINT or SIGTERM
    ends the trainings under way and raises ``Interrupted`` saying how many finished (kept) and how to resume."""
    settings.check()
    out.mkdir(parents=True, exist_ok=True)
    _check_settings(settings, out, command)
    todo = pending(settings, out)
    results = _results(settings, todo, out, jobs, threads, device)
    done = 0
    try:
        with stop_on_signals() as check:
            try:
                for i, (t, res) in enumerate(results):
                    done = i + 1
                    check()  # a signal whose Stop was swallowed on the way stops here
                    if on_done:
                        on_done(t, res, i + 1, len(todo))
            except BrokenProcessPool:
                check()  # the workers were ended by the signal that stops this process (sent to its group)
                raise
    except Stop as stop:
        results.close()  # ends the workers (see _results)
        raise Interrupted(f"shift suite stopped by {signal.Signals(stop.signum).name} after {done} of {len(todo)} "
                          f"trainings (their runs are kept under {out / 'runs'}; the ones under way are lost): run "
                          "the same command again to resume", stop.signum) from None
    finally:
        results.close()
    return todo


def _init_worker(parent: int) -> None:
    """A suite worker dies with the suite, leaves SIGINT to it and ends on SIGTERM (``end_pool``)."""
    die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _results(settings: SuiteSettings, todo: list[Task], out: Path, jobs: int, threads: int,
             device: str) -> Generator[tuple[Task, dict[str, Any]], None, None]:
    """Each task of ``todo`` with its run's payload, in order: in this process, or in ``jobs`` processes (ended
    at once, with their queue, when the caller stops early)."""
    if jobs <= 1:
        for t in todo:
            yield t, _run_task(settings, t, out, threads, device)
        return
    # CUDA cannot be used in a forked child of a process that touched it: GPU workers are spawned
    ctx = multiprocessing.get_context("spawn" if device.startswith("cuda") else None)
    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        futures = [(t, ex.submit(_run_task, settings, t, out, threads, device)) for t in todo]
        for t, fut in futures:
            yield t, fut.result()
    except BaseException:  # interrupted (or the caller stopped): end the workers now, not after the queue
        end_pool(ex)
        raise
    ex.shutdown()


def load_runs(out: Path, factors: Sequence[str] = FACTORS) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """factor -> arm -> seed -> run with ``seen`` and that factor's ``unseen`` set, from the run files under ``out``."""
    runs: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for f in factors:
        for arm in ARMS:
            folder = out / "runs" / (f"control-{f}" if arm == "control" else arm)
            for p in sorted(folder.glob("seed*.json")):
                d = json.loads(p.read_text(encoding="utf-8"))
                if f"unseen/{f}" in d:
                    view = {k: v for k, v in d.items() if not k.startswith("unseen/")}
                    runs.setdefault(f, {}).setdefault(arm, {})[int(d["seed"])] = {**view, "unseen": d[f"unseen/{f}"]}
    return runs


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
