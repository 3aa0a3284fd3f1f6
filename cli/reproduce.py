"""``piumr reproduce``: paper tables and figures (thin: parse options -> ``piumr.reproduce``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer
from pydantic import ValidationError

from piumr.backbones import BACKBONES
from piumr.config import MAX_SEED, PERSON_DISJOINT, SHIFT_ARMS, SHIFT_FACTORS, SHIFT_SUITE, SYNTH, Split
from piumr.source import resolve_source

from .errors import console, user_errors
from .errors import err as _err
from .flags import build_config, describe
from .options import (
    HELP_SETTINGS, PRESET_HELP, PRESET_METAVAR, DeviceOpt, OnStallOpt, ThreadsOpt, check_data, check_on_stall,
    check_preset, metavar,
)

reproduce_app = typer.Typer(
    help="Regenerate the paper's tables and figures (see reproduce/README.md). Runs are shared between "
         "experiments; a rerun skips finished runs and resumes interrupted ones.",
    no_args_is_help=True, rich_markup_mode=None, context_settings=HELP_SETTINGS)
_out = console()


def parse_seeds(seeds: list[str] | None, extra: list[str] | None) -> tuple[int, ...]:
    """Seeds from ``--seeds 0 1 2`` (the trailing values arrive as ``extra``), ``--seeds 0,1,2`` or repeated
    ``--seeds``; default ``(0,)``. Raises ``ValueError`` on an empty list or a non-integer."""
    if seeds is None:
        if extra:
            raise ValueError(f"unexpected argument(s): {' '.join(extra)}")
        return (0,)
    tokens = [t for s in [*seeds, *(extra or [])] for t in s.replace(",", " ").split()]
    if not tokens:
        raise ValueError("--seeds is empty: give at least one seed, e.g. --seeds 0 1 2")
    try:
        chosen = tuple(int(t) for t in tokens)
    except ValueError:
        raise ValueError(f"--seeds takes integers, got {' '.join(tokens)!r}") from None
    for s in chosen:
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"--seeds {s}: a seed is an integer from 0 to {MAX_SEED}")
    return chosen


DataOpt = Annotated[Optional[str], typer.Option(
    metavar="<root|synth>",
    help="MA-52 root, a prepared cache, or 'synth' (required to run; --plan without it assumes MA-52)")]
PresetOpt = Annotated[str, typer.Option(metavar=PRESET_METAVAR, help=PRESET_HELP)]
SeedsOpt = Annotated[Optional[list[str]], typer.Option(
    metavar="<seed>...", help="seeds: --seeds 0 1 2 (or 0,1,2); several seeds give mean ± std per cell [default: 0]")]
ExtraArg = Annotated[Optional[list[str]], typer.Argument(hidden=True)]
EpochsOpt = Annotated[Optional[int], typer.Option(help="override the preset's epochs")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="output root (default artifacts/reproduce/<data-tag>); experiments go to <out>/<name>, runs to <out>/runs")]
PlanOpt = Annotated[bool, typer.Option(
    "--plan", help="print what would run and the estimated GPU hours on the data given; run nothing")]
StepsOpt = Annotated[Optional[int], typer.Option(help="cap optimiser steps per epoch (quick runs)")]
QuietOpt = Annotated[bool, typer.Option(help="no progress bars")]
SplitOpt = Annotated[Optional[str], typer.Option(
    metavar=metavar(Split), help="cross-subject: person-disjoint, adds seen-persons columns [default: the preset's]")]
JobsOpt = Annotated[int, typer.Option(
    help="trainings run at once, in separate processes (each gets physical cores / jobs threads)")]
BackboneOpt = Annotated[Optional[str], typer.Option(
    metavar=metavar(BACKBONES), help="train every row on this backbone instead of the preset's; with --preset paper at "
         "its own clip length and crop")]


def _run(names: list[str], data: str | None, preset: str, seeds: list[str] | None, extra: list[str] | None,
         epochs: int | None, out: Path | None, plan: bool, device: str | None, max_steps_per_epoch: int | None,
         quiet: bool, threads: int | None = None, split: str | None = None, jobs: int = 1,
         default_seeds: tuple[int, ...] = (0,), table1_with: tuple[str, ...] = (),
         backbone: str | None = None) -> None:
    with user_errors():  # names, paths and seeds before the heavy imports
        check_preset(preset)
        check_data(data)
        if seeds is not None or extra:
            parse_seeds(seeds, extra)
        if data is None and not plan:
            raise ValueError("--data is required to run (an MA-52 root, a prepared cache, or 'synth'); "
                             "--plan without --data assumes MA-52")
    from piumr.files import check_writable
    from piumr.reproduce import expand_names, make_settings, plan_table, print_result, run_many
    from piumr.reproduce import plan as make_plan
    from piumr.runtime import configure_threads, pick_device

    with user_errors():
        if split is not None and split not in get_args(Split):
            raise ValueError(f"--split must be {' or '.join(get_args(Split))}, got {split!r}")
        chosen = parse_seeds(seeds, extra) if seeds is not None or extra else default_seeds
        try:
            settings = make_settings(data=data, preset=preset, seeds=chosen, epochs=epochs, out=out,
                                     device=device, max_steps_per_epoch=max_steps_per_epoch, progress=not quiet,
                                     console=_err, split=split, jobs=jobs, table1_with=table1_with, backbone=backbone)
        except ValidationError as e:  # one line naming the flag the user typed, not pydantic's report
            raise ValueError(describe(e)) from None
        expand_names(names)  # unknown names fail here, before anything runs
        pick_device(device)  # an unknown or absent device fails here, before anything runs
        if not plan:  # a read-only or full --out, or a file in its place, fails here, before anything runs
            check_writable(settings.root)
        configure_threads(threads, settings.base.data.num_workers)
        if plan:
            table, line = plan_table(settings, make_plan(settings, names))
            _out.print(table)
            _out.print(line)
            return
        t0 = time.time()
        run_many(settings, names, on_done=lambda res: print_result(res, _out))
        _out.print(f"all done in {time.time() - t0:.0f} s; results under {settings.root}")


def _command(name: str, help_text: str, targets: list[str]) -> Callable[..., None]:
    def cmd(data: DataOpt = None, preset: PresetOpt = "paper", seeds: SeedsOpt = None, extra: ExtraArg = None,
            epochs: EpochsOpt = None, out: OutOpt = None, plan: PlanOpt = False, device: DeviceOpt = None,
            max_steps_per_epoch: StepsOpt = None, quiet: QuietOpt = False, threads: ThreadsOpt = None,
            split: SplitOpt = None, jobs: JobsOpt = 1, backbone: BackboneOpt = None) -> None:
        _run(targets, data, preset, seeds, extra, epochs, out, plan, device, max_steps_per_epoch, quiet, threads,
             split, jobs, backbone=backbone)

    cmd.__doc__ = help_text
    cmd.__name__ = name.replace("-", "_")
    reproduce_app.command(name, help=help_text)(cmd)
    return cmd


@reproduce_app.command("table1")
def table1(
    data: DataOpt = None, preset: PresetOpt = "paper", seeds: SeedsOpt = None, extra: ExtraArg = None,
    epochs: EpochsOpt = None, out: OutOpt = None, plan: PlanOpt = False, device: DeviceOpt = None,
    max_steps_per_epoch: StepsOpt = None, quiet: QuietOpt = False, threads: ThreadsOpt = None,
    split: SplitOpt = None, jobs: JobsOpt = 1, backbone: BackboneOpt = None,
    with_: Annotated[Optional[list[str]], typer.Option(
        "--with", metavar=metavar(BACKBONES), help="also train this backbone plain and + TFAM + GIRL "
                       "repeatable")] = None,
) -> None:
    """Table 1: X3D baseline and PIUmr trained here (and --with backbones), the paper's other methods as reported rows."""
    _run(["table1"], data, preset, seeds, extra, epochs, out, plan, device, max_steps_per_epoch, quiet, threads,
         split, jobs, table1_with=tuple(with_ or ()), backbone=backbone)


_command("table2", "Table 2: TFAM x GIRL on/off (settings a-d).", ["table2"])
_command("ablation-tfam", "Table 3: TFAM branches and fusion with GIRL on (settings a-e).", ["ablation-tfam"])
_command("table3", "Alias of ablation-tfam (paper Table 3).", ["ablation-tfam"])
_command("fig4", "Fig. 4: t-SNE of val embeddings, baseline vs PIUmr, coloured by body group.", ["fig4"])
_command("fig5", "Fig. 5: inter-/intra-class cosine-similarity distributions, baseline vs PIUmr.", ["fig5"])
_command("fig6", "Fig. 6: 2-D loss landscape (filter-normalised random directions), baseline vs PIUmr.", ["fig6"])
_command("person-shift", "Person-disjoint split: mean, spread and worst-participant accuracy, baseline vs PIUmr.",
         ["person-shift"])
_command("girl-units", "GIRL's Gaussian weights: literal units (cos/tau around eta) vs shifted vs cosine, "
         "on the person-disjoint split (the measurement behind the defaults).", ["girl-units"])
_command("all", "Every table and figure above, plus person-shift (runs shared between them are trained once).",
         ["all"])


@reproduce_app.command("demo")
def demo(
    preset: PresetOpt = "demo",
    epochs: EpochsOpt = None,
    seeds: SeedsOpt = None,
    extra: ExtraArg = None,
    out: Annotated[Path, typer.Option("--out", help="output root")] = Path("artifacts/reproduce/demo"),
    plan: PlanOpt = False,
    device: DeviceOpt = None,
    quiet: QuietOpt = False,
    threads: ThreadsOpt = None,
    jobs: JobsOpt = 2,
) -> None:
    """CPU demo on synthetic data: Table 2's four settings on unseen and seen persons (2 seeds each) and Fig. 5.

    Generates task v2 (21 classes that differ only in time; preset 'demo'), decodes it once into memory,
    trains 8 small models 2 at a time on the person-disjoint split, prints the paired PIUmr - X3D difference
    and the effect size it can resolve, and writes JSON, LaTeX and PNG under --out (see docs/results.md)."""
    _run(["demo", "fig5"], SYNTH, preset, seeds, extra, epochs, out, plan, device, None, quiet, threads,
         PERSON_DISJOINT, jobs, default_seeds=(0, 1))


def _suite_threads(jobs: int, threads: int | None, report_only: bool) -> int:
    """Intra-op threads per suite training: ``--threads``, else the CPUs this process may use // ``--jobs``.
    Raises ``ValueError`` naming the flags when ``--jobs`` x threads would oversubscribe those CPUs."""
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if threads is not None and threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    per_job = threads if threads is not None else max(1, cpus // jobs)
    if not report_only and jobs * per_job > cpus:
        raise ValueError(f"--jobs {jobs} x --threads {per_job} = {jobs * per_job} threads on {cpus} CPUs would "
                         "oversubscribe them; lower --jobs or --threads")
    return per_job


def _train_suite(settings: Any, out: Path, jobs: int, threads: int, device: str) -> None:
    """``run_suite`` with a line per finished training (its unseen and seen action Top-1); ``suite.json`` records
    this command line."""
    import sys

    from piumr.shift.suite import run_suite

    command = "piumr reproduce " + " ".join(sys.argv[2:])
    run_suite(settings, out, jobs=jobs, threads=threads, device=device, command=command,
              on_done=lambda t, r, i, n: _out.print(
        f"[{i}/{n}] {t.name} seed {t.seed}: unseen "
        + " ".join(f"{k[7:]} {100 * sum(v['action']) / len(v['action']):.1f}" for k, v in r.items()
                   if k.startswith("unseen/"))
        + f" seen {100 * sum(r['seen']['action']) / len(r['seen']['action']):.1f} ({r['train_s']:.0f} s)"
        + (" STALLED" if r.get("stalled") else "")))


@reproduce_app.command("shift-suite")
def shift_suite(
    data: Annotated[str, typer.Option(metavar="<synth>", help="only 'synth': task v2 rendered in memory")] = SYNTH,
    jobs: JobsOpt = 2,
    seeds: SeedsOpt = None,
    extra: ExtraArg = None,
    factors: Annotated[Optional[str], typer.Option(help="comma list of tempo,size,appearance,style,mixed [all]")] = None,
    arms: Annotated[Optional[str], typer.Option(help=f"comma list of {','.join(SHIFT_ARMS)} [all]")] = None,
    epochs: Annotated[int, typer.Option(help="epochs per training")] = int(SHIFT_SUITE["epochs"]),
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("artifacts/shift-suite"),
    report_only: Annotated[bool, typer.Option(help="train nothing; rewrite the report from the runs present")] = False,
    control: Annotated[str, typer.Option(metavar="<data|augment>", help=(
        "positive control: 'data' trains on persons whose factor covers the held-out range too; 'augment' "
        "applies the factor's augmentation"))] = "data",
    threads: ThreadsOpt = None,
    device: DeviceOpt = None,
    on_stall: OnStallOpt = "warn",
) -> None:
    """Person-shift suite (docs/shift_suite.md, protocol docs/shift_suite_protocol.md): per factor, baseline / +TFAM /
    +GIRL / PIUmr / positive control / A/A and the baselines GroupDRO / V-REx / CORAL / MixStyle / augmentation on 10
    paired seeds; resumable; writes JSON, LaTeX, figures, a leaderboard and summary.json under --out. On one GPU
    (--device cuda) --jobs trainings share it, each in its own process."""
    import sys

    with user_errors():
        if resolve_source(data).kind != "synth":
            raise ValueError(f"--data {data}: the shift suite runs on synthetic data only ('synth')")
        chosen = parse_seeds(seeds, extra) if seeds is not None or extra else tuple(range(int(SHIFT_SUITE["seeds"])))
        build_config("smoke", {"optim.epochs": epochs})  # the suite's trainings: --epochs within the config's bounds
        per_job = _suite_threads(jobs, threads, report_only)
        for flag, given, allowed in (("--factors", factors, SHIFT_FACTORS), ("--arms", arms, SHIFT_ARMS)):
            bad = [x for x in (given or "").split(",") if given and x not in allowed]
            if bad:
                raise ValueError(f"{flag}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    from piumr.shift.report import write_report
    from piumr.shift.suite import SuiteSettings, pending, tasks
    from piumr.runtime import pick_device

    with user_errors():
        dev = "cpu" if report_only else str(pick_device(device))
        base = SuiteSettings()
        settings = SuiteSettings(
            epochs=epochs, seeds=chosen,
            factors=tuple(factors.split(",")) if factors else base.factors,
            arms=tuple(arms.split(",")) if arms else base.arms, control=control, on_stall=check_on_stall(on_stall))
        settings.check()
        t0 = time.time()
        if not report_only:
            _train_suite(settings, out, jobs, per_job, dev)
        full = SuiteSettings(epochs=epochs)
        rep = write_report(out, command="piumr reproduce shift-suite " + " ".join(sys.argv[3:]),
                           expected_runs=len(tasks(full)), missing_runs=len(pending(full, out)))
        meta = rep["meta"]
        _out.print(f"{meta['runs_done']} run files; the protocol's design ({meta['runs_expected']} runs): "
                   + (f"{meta['runs_missing']} missing" if meta["runs_missing"] else "complete")
                   + f"; report under {out} ({time.time() - t0:.0f} s)")


@reproduce_app.command("person-gap")
def person_gap(
    factor: Annotated[str, typer.Option(help="the shifted factor: tempo, size, appearance, style or mixed")] = "tempo",
    seeds: SeedsOpt = None,
    extra: ExtraArg = None,
    arms: Annotated[Optional[str], typer.Option(
        help="comma list, the reference first [baseline,piumr,coral: X3D, PIUmr and the suite's best baseline]")]
    = None,
    jobs: JobsOpt = 2,
    threads: ThreadsOpt = None,
    out: Annotated[Path, typer.Option("--out", help="output folder")] = Path("artifacts/reproduce/person-gap"),
    plan: PlanOpt = False,
    report_only: Annotated[bool, typer.Option(help="train nothing; rewrite the report from the runs present")] = False,
    device: DeviceOpt = None,
    on_stall: OnStallOpt = "warn",
) -> None:
    """The person gap on synthetic data (README command 1): one factor of the person-shift suite (default tempo),
    X3D, PIUmr and the suite's best domain-generalisation baseline on 3 paired seeds; prints seen- and
    unseen-person action Top-1, the gap and each difference to X3D with 95 % intervals and where a run on another
    CPU should land; writes gap.json / .md / .tex / .png under --out. Resumable (the suite's run files)."""
    import sys

    from piumr.shift.gap import GAP_ARMS, GAP_SEEDS

    with user_errors():
        if factor not in SHIFT_FACTORS:
            raise ValueError(f"--factor {factor}: choose one of {', '.join(SHIFT_FACTORS)}")
        chosen = parse_seeds(seeds, extra) if seeds is not None or extra else GAP_SEEDS
        names = tuple(arms.split(",")) if arms else GAP_ARMS
        bad = [a for a in names if a not in SHIFT_ARMS or a in ("control", "aa")]
        if bad or len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"--arms {arms}: give two or more distinct arms of "
                             f"{', '.join(a for a in SHIFT_ARMS if a not in ('control', 'aa'))}")
        per_job = _suite_threads(jobs, threads, report_only or plan)
    from piumr.shift.gap import gap_lines, gap_settings, write_gap_report
    from piumr.shift.suite import pending, tasks
    from piumr.runtime import pick_device

    settings = gap_settings(factor, chosen, names, on_stall=check_on_stall(on_stall))
    todo = pending(settings, out)
    if plan:
        _out.print(f"{len(todo)} of {len(tasks(settings))} trainings to run ({', '.join(names)} x seeds "
                   f"{', '.join(map(str, chosen))}; {jobs} at a time, {per_job} thread(s) each); about 50 CPU s each "
                   "on a 2-core AMD EPYC (Zen 5); report under " + str(out))
        return
    with user_errors():
        dev = "cpu" if report_only else str(pick_device(device))
        settings.check()
        t0 = time.time()
        if not report_only:
            _train_suite(settings, out, jobs, per_job, dev)
        res = write_gap_report(out, command="piumr reproduce person-gap " + " ".join(sys.argv[3:]), factor=factor,
                               arms=names)
    _out.print(f"Person gap on '{factor}' (synthetic task v2, not MA-52), CPU {res['meta']['machine']}:")
    for line in gap_lines(res):
        _out.print(line, soft_wrap=True, markup=False, highlight=False)
    _out.print(f"written under {out}: gap.json, gap.md, gap.tex, gap.png ({time.time() - t0:.0f} s)")
