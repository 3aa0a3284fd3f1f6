"""``piumr train``: its options (each declared once in ``flags.TRAIN_OPTIONS``, which maps it to its config
key) -> a config -> ``piumr.train.train``; ``--resume`` goes to ``resume.resume_run``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from piumr.backbones import BACKBONES
from piumr.config import (
    CHECKPOINT_EVERY_MIN, MAX_CHECKPOINT_EVERY_MIN, PERSON_DISJOINT, Fusion, OnError, Split,
)
from piumr.errors import require_extra

from .errors import console, user_errors, warn_cpu_time
from .flags import TRAIN_OPTIONS, build_config, config_overrides, refuse_conflicts, typed_options
from .options import (
    ARTIFACTS, PRESET_METAVAR, DataOpt, OnStallOpt, check_on_stall, DeviceOpt, GroupingOpt, HoldOutOpt, SetOpt, ThreadsOpt, check_data, check_file,
    check_preset, metavar,
    parse_minutes,
)
from .resume import resume_run
from .speed import CompileOpt, FastDepthwiseOpt, SpeedOpt

out = console()


def train(
    preset: Annotated[Optional[str], typer.Option(metavar=PRESET_METAVAR, help="config preset (default paper)")] = None,
    data: DataOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="run folder (default artifacts/runs/<preset>-<time>)")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="continue the run in this folder")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="start over in a non-empty --out: the old run is moved "
                                                        "to <out>.old-<time>")] = False,
    epochs: Annotated[Optional[int], typer.Option()] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="global batch size")] = None,
    lr: Annotated[Optional[float], typer.Option()] = None,
    milestones: Annotated[Optional[str], typer.Option(help="epochs where the lr is multiplied by 0.1, e.g. 30,60 "
                                                           "('' = none)")] = None,
    checkpoint_every_min: Annotated[float, typer.Option(
        help=f"minutes between mid-epoch checkpoints (0 = epoch ends only; at most {MAX_CHECKPOINT_EVERY_MIN:g})",
        parser=parse_minutes, metavar="FLOAT")] = CHECKPOINT_EVERY_MIN,
    frames: Annotated[Optional[int], typer.Option()] = None,
    crop: Annotated[Optional[int], typer.Option()] = None,
    backbone: Annotated[Optional[str], typer.Option(
        metavar=metavar(BACKBONES), help="with --preset paper: the backbone's own clip length and crop")] = None,
    pretrained: Annotated[Optional[Path], typer.Option(
        help="local Kinetics checkpoint: X3D .pyth, torchvision .pth, VideoMAE model folder or file")] = None,
    tfam_stage: Annotated[Optional[int], typer.Option(help="stage TFAM follows (default: the backbone's, docs/backbones.md)")] = None,
    no_tfam: Annotated[bool, typer.Option("--no-tfam", help="drop TFAM")] = False,
    no_girl: Annotated[bool, typer.Option("--no-girl", help="drop GIRL (CE only)")] = False,
    tfam_frequency: Annotated[Optional[bool], typer.Option("--tfam-frequency/--no-tfam-frequency")] = None,
    tfam_temporal: Annotated[Optional[bool], typer.Option("--tfam-temporal/--no-tfam-temporal")] = None,
    fusion: Annotated[Optional[str], typer.Option(metavar=metavar(Fusion), help="how TFAM fuses its branches")] = None,
    girl_var_grad: Annotated[bool, typer.Option("--girl-var-grad", help="let GIRL's variance term carry gradient")] = False,
    girl_detach_weights: Annotated[bool, typer.Option("--girl-detach-weights",
                                                      help="GIRL's Gaussian weights as constants (default: gradient through them, as eq. 6)")] = False,
    girl_grouping: GroupingOpt = None,
    set_: SetOpt = None,
    split: Annotated[Optional[str], typer.Option(metavar=metavar(Split),
                                                 help="official lists or person-disjoint folds")] = None,
    fold: Annotated[Optional[int], typer.Option()] = None,
    hold_out: HoldOutOpt = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    workers: Annotated[Optional[int], typer.Option(help="data loader processes")] = None,
    amp: Annotated[Optional[bool], typer.Option("--amp/--no-amp", help="bf16 autocast on GPU")] = None,
    grad_clip: Annotated[Optional[float], typer.Option()] = None,
    eval_every: Annotated[Optional[int], typer.Option()] = None,
    max_steps_per_epoch: Annotated[Optional[int], typer.Option()] = None,
    on_error: Annotated[Optional[str], typer.Option(metavar=metavar(OnError), help="what a broken clip does")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="also write the log's numbers as TensorBoard "
                                                                    "scalars to <run>/tensorboard (needs the "
                                                                    "tensorboard extra)")] = False,
    compile_: CompileOpt = None,
    fast_depthwise: FastDepthwiseOpt = None,
    speed: SpeedOpt = None,
    device: DeviceOpt = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    threads: ThreadsOpt = None,
    on_stall: OnStallOpt = "warn",
) -> None:
    """Train PIUmr (or an ablation) and keep best/last checkpoints, logs and metrics.

    A new run needs an empty --out (--fresh moves an old run aside); --resume DIR continues a run and
    accepts --epochs, --lr, --milestones and --workers (recorded as amendments). Exit status: 0 done (or
    already finished); 2 a bad option, data or run folder (occupied, locked, unwritable); 3 the GPU ran out
    of memory; 4 the run stopped on a fault (divergence, a failed write, a vanished run folder, a stall with
    --on-stall stop), after its last checkpoint.
    """
    params = dict(locals())
    with user_errors():
        if preset is not None:
            check_preset(preset)
        typed = typed_options(TRAIN_OPTIONS, params)
        if tensorboard:  # before torch loads
            require_extra("tensorboard", "tensorboard", "--tensorboard")
        if resume is not None:
            if out_dir is not None and out_dir.resolve() != resume.resolve():
                raise ValueError(f"--out {out_dir} cannot be combined with --resume {resume} (a resumed run stays "
                                 "in its folder)")
            res = resume_run(resume, typed, device=device, progress=not quiet, threads=threads,
                             checkpoint_every_min=checkpoint_every_min, on_stall=check_on_stall(on_stall))
            out.print(f"run folder: {res.out_dir}  (best val F1_mean {res.best_metric:.2f})")
            return
        check_data(data)
        check_file(pretrained, "--pretrained", "file or folder", folder_ok=True)  # folder: a VideoMAE model
        refuse_conflicts(TRAIN_OPTIONS, typed)
        values = config_overrides(TRAIN_OPTIONS, typed)
        cfg = build_config(preset or "paper", values, values.pop("model.backbone", None))
        if fold is not None and cfg.data.split != PERSON_DISJOINT:
            raise ValueError(f"--fold {fold} applies to --split {PERSON_DISJOINT} only "
                             f"(this run uses {cfg.data.split!r})")
        run_dir = out_dir or ARTIFACTS / "runs" / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    from piumr.runtime import configure_threads, pick_device
    from piumr.train import train as run_train

    with user_errors():
        n_threads = configure_threads(threads, cfg.data.num_workers)
        warn_cpu_time(f"each training step of batch {cfg.optim.batch_size}", cfg.model, cfg.optim.batch_size, True,
                       n_threads, pick_device(device).type)
        res = run_train(cfg, run_dir, device=device, progress=not quiet, fresh=fresh,
                        checkpoint_every_min=checkpoint_every_min, on_stall=check_on_stall(on_stall))
        out.print(f"run folder: {res.out_dir}  (best val F1_mean {res.best_metric:.2f}, {res.seconds:.0f} s)")
