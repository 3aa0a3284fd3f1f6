"""The ``piumr`` command line: thin Typer commands that parse options and call ``piumr.*``."""

from __future__ import annotations

import json
import time
import typing
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional, TypeVar

import typer
from rich.table import Table

from piumr.config import (
    MAX_SHORT_SIDE, MAX_VIEWS, MAX_WORKERS, MIN_SHORT_SIDE, SYNTH, DataConfig, ListSplit,
)

from .bench_loader import bench_loader
from .display import show_prediction
from .doctor import doctor
from .errors import activation_bytes, console, err, user_errors, warn_cpu_time
from .flags import SYNTH_OPTIONS, build_config, config_overrides, typed_options
from .options import (
    ARTIFACTS, HELP_SETTINGS, LIST_SPLITS, PRESET_METAVAR, SYNTH_BUDGET_BYTES, SYNTH_BUDGET_SECONDS, DeviceOpt,
    ManifestOpt, PresetOpt, ThreadsOpt, check_data, check_predict, check_preset, check_synth_budget, check_threads,
    human_bytes, human_seconds, metavar, resolve_checkpoint, synth_estimate,
)
from .plot import plot
from .train import train

if TYPE_CHECKING:  # the CLI imports torch-heavy modules inside commands, so --help stays fast
    from piumr.checkpoint import Checkpoint
    from piumr.model import PIUmrNet

warnings.filterwarnings("ignore", message=".*torch.jit.script.*", category=FutureWarning)
warnings.filterwarnings("ignore", message=".*saved_variables.*", category=DeprecationWarning)


app = typer.Typer(help="PIUmr: person-independent micro-action recognition (X3D + TFAM + GIRL).",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False,
                  rich_markup_mode=None, context_settings=HELP_SETTINGS)
bench_app = typer.Typer(help="Speed and memory benchmarks (print numbers; never timed tests).", no_args_is_help=True,
                        rich_markup_mode=None, context_settings=HELP_SETTINGS)
app.add_typer(bench_app, name="bench")


@app.callback()
def _edge(ctx: typer.Context) -> None:
    # the environment is read here, once per command (piumr.settings), and forgotten when it ends
    from piumr import settings

    with user_errors():
        now = settings.RuntimeSettings.from_env()
    settings.use(now)
    ctx.call_on_close(lambda: settings.use(None))
    warning = settings.apply_to_process(now)
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)

out = console()
#: the most memory ``piumr info``'s forward/backward check may hold (estimated first: ``activation_bytes``)
INFO_MEMORY_BUDGET = 3 * 2**30
app.command()(doctor)
app.command()(train)
app.command()(plot)


def _threads(threads: Optional[int], workers: int) -> int:
    """``piumr.runtime.configure_threads`` for a command that runs ``workers`` loader workers."""
    from piumr.runtime import configure_threads

    return configure_threads(threads, workers)


_L = TypeVar("_L", bound=str)


def _choice(flag: str, value: str, choices: tuple[_L, ...]) -> _L:
    """``value`` as one of ``choices`` (typed); ``ValueError`` naming the flag otherwise."""
    for c in choices:
        if value == c:
            return c
    raise ValueError(f"{flag} must be one of {', '.join(choices)}, not {value!r}")


@app.command()
def version() -> None:
    """Print the piumr version and the key package versions."""
    import torch

    import piumr

    out.print(f"piumr {piumr.__version__} (torch {torch.__version__}, cuda available: {torch.cuda.is_available()})")


@app.command()
def info(
    preset: PresetOpt = "paper",
    batch: Annotated[int, typer.Option(help="batch for the forward/backward check", min=1, max=4096)] = 2,
    threads: ThreadsOpt = None,
) -> None:
    """Build a preset's model and run one forward/backward pass on CPU: shapes and parameter counts
    (the paper preset takes a minute or more on 2 cores; the time and memory are estimated before it starts,
    and a batch over the memory budget is refused)."""
    with user_errors():
        cfg = build_config(preset, {})
        check_threads(threads)
    import torch

    from piumr import build_model
    from piumr.recipe import build_criterion, train_step

    with user_errors():
        n_threads = _threads(threads, 0)
        need = activation_bytes(cfg.model, batch)
        if need > INFO_MEMORY_BUDGET:
            fits = max(1, int(batch * INFO_MEMORY_BUDGET / need))
            raise ValueError(f"--batch {batch}: a training pass of {preset} holds about {need / 2**30:.1f} GiB of "
                             f"activations (estimate), over info's {INFO_MEMORY_BUDGET / 2**30:.0f} GiB budget (on CPU "
                             f"its time grows far beyond the FLOP estimate); give --batch {fits} or less")
        warn_cpu_time(f"one forward/backward pass of {batch} clip(s)", cfg.model, batch, True, n_threads, "cpu",
                      memory=need)
        torch.manual_seed(0)
        model = build_model(config=cfg.model).train()
        x = torch.randn(batch, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
        y = torch.arange(batch) % cfg.model.num_classes
        t = time.perf_counter()
        o, parts = train_step(model, build_criterion(cfg), None, x, y)  # the recipe's step, no update
        loss = parts.total
        dt = time.perf_counter() - t
        n_all = sum(p.numel() for p in model.parameters())
        n_tfam = sum(p.numel() for p in model.tfam.parameters()) if model.tfam is not None else 0
        table = Table(title=f"preset {preset}: {cfg.model.backbone} + TFAM({'on' if n_tfam else 'off'}) + GIRL")
        table.add_column("item")
        table.add_column("value", justify="right")
        for k, v in [("input", tuple(x.shape)), ("logits", tuple(o.logits.shape)),
                     ("embedding", tuple(o.embedding.shape)), ("parameters (all)", f"{n_all:,}"),
                     ("parameters (TFAM)", f"{n_tfam:,}"), ("loss (CE + GIRL)", f"{float(loss.detach()):.4f}"),
                     ("forward+backward", f"{dt:.2f} s on CPU" if not x.is_cuda else f"{dt:.2f} s")]:
            table.add_row(k, str(v))
        out.print(table)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Option("--out", help="folder to write the dataset to")],
    preset: Annotated[str, typer.Option(metavar=PRESET_METAVAR,
                                        help="take the synthetic-data sizes from this preset")] = "paper",
    persons: Annotated[Optional[int], typer.Option(help="participants")] = None,
    clips_per_person: Annotated[Optional[int], typer.Option(help="clips per participant")] = None,
    classes_per_body: Annotated[Optional[int], typer.Option(help="action classes per body group (13 = all 52)")] = None,
    frames: Annotated[Optional[int], typer.Option(help="frames per clip")] = None,
    size: Annotated[Optional[int], typer.Option(help="frame size in pixels")] = None,
    seed: Annotated[Optional[int], typer.Option(help="generator seed")] = None,
    task: Annotated[Optional[int], typer.Option(help="1: task v1; 2: task v2, once / twice / stay per body part "
                                                     "(classes that differ only in time; --classes-per-body 1..3)")] = None,
    workers: Annotated[int, typer.Option(help="parallel processes", min=1, max=MAX_WORKERS)] = 2,
    manifest: ManifestOpt = False,
    force: Annotated[bool, typer.Option("--force", help=(
        f"generate even a set estimated over {human_bytes(SYNTH_BUDGET_BYTES)} on disk, "
        f"{human_seconds(SYNTH_BUDGET_SECONDS)} or the free space"))] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Generate the synthetic MA-52-format dataset (real mp4 files + official-format lists). Its size on disk
    and time are estimated first; a set over the budget is refused unless --force."""
    params = dict(locals())
    with user_errors():  # sizes, threads and the budget before torch is imported
        check_preset(preset)
        check_threads(threads)
        d = build_config(preset, config_overrides(SYNTH_OPTIONS, typed_options(SYNTH_OPTIONS, params))).data
        est = synth_estimate(d, workers)
        if not force:
            check_synth_budget(est, d, out_dir)
        if est.seconds >= 5 or est.bytes >= 100e6:
            err.print(f"note: {est.describe()} (estimate)", highlight=False)
    from piumr.data.splits import synth_params
    from piumr.data.synth import generate

    with user_errors():
        _threads(threads, workers)
        t = time.perf_counter()
        res = generate(out_dir, workers=workers, progress=True, manifest=manifest, **synth_params(d))
        out.print(f"{'kept the same set already there' if res.reused else 'wrote'} {res} in {time.perf_counter() - t:.1f} s")


@app.command()
def prepare(
    data: Annotated[Path, typer.Option(help="MA-52 root (raw videos) or a manifest .csv")],
    out_dir: Annotated[Path, typer.Option("--out", help="cache folder to write")],
    short_side: Annotated[int, typer.Option(help="resize frames to this short side",
                                            min=MIN_SHORT_SIDE, max=MAX_SHORT_SIDE)] = DataConfig().short_side,
    workers: Annotated[int, typer.Option(help="parallel processes", min=0, max=MAX_WORKERS)] = 2,
    splits: Annotated[str, typer.Option(help=f"comma-separated splits out of {', '.join(LIST_SPLITS)}")
                      ] = ",".join(LIST_SPLITS),
    allow_failures: Annotated[bool, typer.Option("--allow-failures",
                                                 help="exit 0 even when some clips could not be converted")] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Convert raw clips once into a compact JPEG-frame cache (resumable, verified)."""
    with user_errors():
        check_data(str(data))
        wanted = tuple(_choice("--splits", s.strip(), typing.get_args(ListSplit)) for s in splits.split(","))
    from piumr.data import prepare_dataset
    from piumr.data.prepare import report_dict

    with user_errors():
        _threads(threads, workers)
        rep = prepare_dataset(data, out_dir, splits=wanted, short_side=short_side, workers=workers, progress=True)
        out.print_json(json.dumps(report_dict(rep)))
        if rep.failed:
            err.print(f"[yellow]{len(rep.failed)} clip(s) could not be converted (listed above)[/]")
            if not allow_failures:
                raise typer.Exit(1)


def _load(path: Path, given: Optional[Path], device: Optional[str]) -> tuple[PIUmrNet, Checkpoint]:
    """The checkpoint at ``path`` (``resolve_checkpoint`` of the ``--checkpoint`` ``given``) loaded onto ``device``
    (checked first)."""
    from piumr.checkpoint import load_model
    from piumr.runtime import pick_device

    dev = pick_device(device)
    if given is None:
        err.print(f"using the most recent checkpoint: {path}")
    elif path != given:
        err.print(f"using the run folder's best checkpoint: {path}")
    return load_model(path, map_location=dev)


@app.command()
def evaluate(
    checkpoint: Annotated[Optional[Path], typer.Option(help="a checkpoint file or a run folder (its best.safetensors; "
                                                            "default: latest under artifacts/)")] = None,
    data: Annotated[Optional[str], typer.Option(help="data root (default: the checkpoint's)")] = None,
    split: Annotated[str, typer.Option(metavar=metavar(ListSplit), help="which list to score")] = "val",
    views: Annotated[int, typer.Option(help="temporal views averaged per clip", min=1, max=MAX_VIEWS)] = 1,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="where metrics.json, predictions.csv, "
                                                    "confusion.png and per_class.csv go")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1)] = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Official MA-52 metrics (+ per-participant / worst-participant) of a checkpoint on a split, a row-normalised
    confusion-matrix figure and per-class precision / recall / F1."""
    with user_errors():
        path = resolve_checkpoint(checkpoint, ARTIFACTS)
        check_data(data)
    from piumr.evaluate import evaluate_checkpoint
    from piumr.metrics import format_table

    with user_errors():
        which = _choice("--split", split, typing.get_args(ListSplit))
        model, ck = _load(path, checkpoint, device)
        dev = next(model.parameters()).device
        d = ck.config.data if data is None else ck.config.data.model_copy(update={"root": data})
        _threads(threads, d.num_workers)
        dest = out_dir or path.parent / f"eval-{split}"
        res, scores = evaluate_checkpoint(model, ck.config, split=which, out_dir=dest, device=dev,
                                          views=views, batch_size=batch_size, data=d, source=path)
        out.print(format_table(res.official, res.words))
        if res.participants is not None:
            p = res.participants
            out.print(f"participants: {p['num_participants']}, mean {p['mean']:.2f}, std {p['std']:.2f}, "
                      f"worst {p['worst_id']} {p['worst_acc']:.2f}, worst-10% {p['worst10_acc']:.2f}")
        if res.domains:
            out.print("domains (top-1): " + ", ".join(f"{k} {v:.2f}" for k, v in res.domains.items()))
        if scores.skipped:
            err.print(f"[yellow]warning: {len(scores.skipped)} clip(s) of the {split} split could not be read and "
                      f"were left out (metrics over {len(scores.labels)} clips)[/]: " + ", ".join(scores.skipped),
                      highlight=False)
        out.print(f"wrote {dest / 'metrics.json'}, {dest / 'predictions.csv'}, {dest / 'confusion.png'} and "
                  f"{dest / 'per_class.csv'}")


@app.command()
def predict(
    clips: Annotated[Optional[list[Path]], typer.Argument(help="video files or folders")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(help="a checkpoint file or a run folder (its best.safetensors; "
                                                            "default: latest under artifacts/)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line instead of tables")] = False,
    views: Annotated[int, typer.Option(help="temporal views averaged per clip", min=1, max=MAX_VIEWS)] = 1,
    submission: Annotated[Optional[Path], typer.Option(help="write a Codabench submission zip for --data's test list")] = None,
    data: Annotated[Optional[Path], typer.Option(help="MA-52 root whose test list --submission scores, or a "
                                                      "manifest to predict (its test rows, else all)")] = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Top-5 actions (names, probabilities) and body group for each clip.

    Exit status: 0 every clip predicted; 1 some paths or clips failed (each named; the others were
    predicted); 2 nothing to predict (no clip found) or a bad option, checkpoint or --data; 3 the
    GPU ran out of memory. Warns (one line) when the checkpoint was not trained on MA-52's 52 classes.
    """
    with user_errors():
        path = resolve_checkpoint(checkpoint, ARTIFACTS)
        check_predict(clips, submission, data)
    from piumr.predict import (
        ClipFailure, expand_inputs, manifest_classes, manifest_inputs, predict_clips, trained_on, write_submission,
    )

    with user_errors():
        model, ck = _load(path, checkpoint, device)
        seen = trained_on(ck.meta, path, ck.config.data.synth_task)
        dev = next(model.parameters()).device
        _threads(threads, ck.config.data.num_workers if submission is not None else 0)
        listed = manifest_inputs(data)
        # a manifest's clips are named after its classes.csv: the checkpoint must output those classes
        names = seen.names if data is None or not listed else manifest_classes(
            data, seen.names, ck.config.model.num_classes, path)
        inputs = expand_inputs([*(clips or []), *listed])
        bad = [p for p in inputs if isinstance(p, ClipFailure)]
        if clips and len(bad) == len(inputs):
            for f in bad:
                show_prediction(f, as_json, seen)
            raise ValueError("no clip to predict in " + ", ".join(map(str, clips)))
        if seen.warning:
            err.print(f"[yellow]warning:[/] {seen.warning}", highlight=False)
        if submission is not None:
            assert data is not None  # checked above
            n = write_submission(model, ck.config, data, submission, dev, views=views)
            out.print(f"wrote {submission} ({n} rows, prediction.csv at the zip root)")
            return
        failures = 0
        for res in predict_clips(model, ck.config, inputs, dev, views=views, names=names):
            failures += isinstance(res, ClipFailure)
            show_prediction(res, as_json, seen)
        if failures:
            err.print(f"[bold red]error:[/] {failures} of {len(inputs)} input(s) failed (named above); "
                      "the others were predicted", highlight=False)
            raise typer.Exit(1)


def _bench(kind: Literal["train", "infer"], preset: str, batch: Optional[int], device: Optional[str], iters: int,
           variants: str, threads: Optional[int], backbone: Optional[str] = None,
           separate: Optional[bool] = None) -> None:
    with user_errors():
        cfg = build_config(preset, {}, backbone)
    from piumr.bench import cpu_peak_line, run_bench
    from piumr.runtime import pick_device

    with user_errors():
        dev = pick_device(device)
        n_threads = _threads(threads, 0)
        b = batch or (cfg.optim.batch_size if dev.type == "cuda" else 4)
        n_var = len(variants.split(","))
        warn_cpu_time(f"{n_var} variant(s) x {iters + 2} steps of batch {b}", cfg.model, n_var * (iters + 2) * b,
                       kind == "train", n_threads, dev.type)
        interleave = dev.type == "cpu" if separate is None else not separate
        rows = run_bench(cfg, kind, batch=b, device=str(dev), iters=iters, threads=n_threads,
                         variants=tuple(v.strip() for v in variants.split(",")), flops=True, interleave=interleave)
        base = rows[0]
        t = Table(title=f"bench {kind}: preset {preset}, {cfg.model.backbone}, batch {b}, "
                        f"{cfg.model.frames}x{cfg.model.crop}, {dev}, "
                        + (f"one process, {iters} interleaved rounds" if interleave else
                           f"one process per variant, {iters} steps each"))
        for c in ("variant", "ms/step", "clips/s", "vs first", "speed-up", "GFLOP/step", "GFLOP/s", "peak GiB"):
            t.add_column(c, justify="right")
        for r in rows:
            t.add_row(r.variant, f"{r.ms_per_step:.1f}", f"{r.clips_per_s:.2f}",
                      f"{r.ms_per_step / base.ms_per_step:.3f}x time", f"{base.ms_per_step / r.ms_per_step:.2f}x",
                      f"{r.gflop_per_step:.2f}", f"{r.gflop_per_s:.1f}",
                      "n/a" if r.peak_mem_gib != r.peak_mem_gib else f"{r.peak_mem_gib:.2f}")
        out.print(t)
        if dev.type == "cpu":
            out.print(cpu_peak_line(n_threads, rows), highlight=False)
        out.print_json(json.dumps([r.__dict__ for r in rows]))


SeparateOpt = Annotated[Optional[bool], typer.Option(
    "--separate/--interleave",
    help="one process per variant with its peak memory, or all variants in one process timed in interleaved rounds "
         "(robust to a busy machine; no peak memory) [default: interleave on the CPU, separate on a GPU]")]


@bench_app.command("train")
def bench_train(
    preset: PresetOpt = "paper",
    batch: Annotated[Optional[int], typer.Option(help="default: preset batch on GPU, 4 on CPU", min=1)] = None,
    device: DeviceOpt = None,
    iters: Annotated[int, typer.Option(min=1)] = 5,
    variants: Annotated[str, typer.Option(help="comma list of x3d (plain, torch's ops), x3d-fast, x3d+tfam, x3d+girl, "
                                               "piumr-ref (every speed lever off), piumr, piumr-fast (Triton)")]
    = "x3d,piumr-ref,piumr",
    threads: ThreadsOpt = None,
    backbone: Annotated[Optional[str], typer.Option(help="backbone instead of the preset's (x3d = the plain backbone)")] = None,
    separate: SeparateOpt = None,
) -> None:
    """Training step (forward+backward+AdamW): plain pytorchvideo X3D vs PIUmr on the old path (every speed lever
    off) and on the configured one (on the CPU: numba depthwise, matmul pointwise, fused AdamW), same run."""
    _bench("train", preset, batch, device, iters, variants, threads, backbone, separate)


@bench_app.command("infer")
def bench_infer(
    preset: PresetOpt = "paper",
    batch: Annotated[Optional[int], typer.Option(min=1)] = None,
    device: DeviceOpt = None,
    iters: Annotated[int, typer.Option(min=1)] = 5,
    variants: Annotated[str, typer.Option()] = "x3d,piumr-ref,piumr",
    threads: ThreadsOpt = None,
    backbone: Annotated[Optional[str], typer.Option(help="backbone instead of the preset's (x3d = the plain backbone)")] = None,
    separate: SeparateOpt = None,
) -> None:
    """Inference (no grad): plain pytorchvideo X3D vs PIUmr, same run."""
    _bench("infer", preset, batch, device, iters, variants, threads, backbone, separate)


bench_app.command("loader")(bench_loader)


def _register_reproduce() -> None:
    from .reproduce import reproduce_app

    app.add_typer(reproduce_app, name="reproduce")


_register_reproduce()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
