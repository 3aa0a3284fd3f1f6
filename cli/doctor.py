"""``piumr doctor``: what to run before committing a GPU for a day, and what to attach to a bug report."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import err, user_errors
from .options import ThreadsOpt

_out = Console()


def _rate(row: dict[str, Any]) -> str:
    if "error" in row:
        return str(row["error"])
    if "skipped" in row:
        return str(row["skipped"])
    return f"{row['clips_per_s']:.2f} clips/s, {row['ms_per_step']:.1f} ms/step, peak {row['peak_mem_gib']:.2f} GiB"


def _hours(p: dict[str, Any] | None) -> str:
    if p is None:
        return "-"
    return f"epoch {p['epoch_s'] / 60:.1f} min, {p['epochs']} epochs {p['full_run_h']:.1f} h ({p['train_clips']} clips)"


def _print(rep: dict[str, Any]) -> None:
    """The report as one readable table (the JSON holds everything)."""
    v = rep["versions"]
    t = Table(title=f"piumr doctor: preset {rep['preset']} on {rep['device']}", show_header=False)
    t.add_column("item")
    t.add_column("value")
    m = rep["measurement"]
    t.add_row("measurement", f"{m['kind']}: batch {m['batch']}, {m['warmup']} + {m['iters']} steps per variant, "
                             f"loader {m['loader_seconds']:g} s" + (" (short CPU measurement; --full for the long one)"
                                                                    if m["kind"] == "short" else ""))
    pk = v["packages"]
    t.add_row("python", f"{v['python']} ({v['platform']})")
    t.add_row("torch / CUDA / cuDNN", f"{pk['torch']['version']} / {v['cuda_build']} / {v['cudnn']}")
    for name in ("torchvision", "triton", "pytorchvideo", "decord", "av"):
        t.add_row(name, str(pk[name]["version"]) + ("" if pk[name]["importable"] else "  (NOT importable)"))
    for d in rep["devices"]:
        extra = f", {d['memory_gib']} GiB, sm {d['capability']}" if d["type"] == "cuda" else f", {d['cores']} cores"
        t.add_row(f"device {d['type']}", f"{d['name']}{extra}, bf16 {'yes' if d['bf16'] else 'no'}")
    data = rep["data"]
    cache = data["cache"]
    t.add_row("data", f"{data['path']} ({data['kind']}{'' if data.get('generated', True) else ', not generated yet'}; "
                      f"{data['splits']})")
    t.add_row("cache", "none (raw videos)" if cache is None else
              f"{cache['clips']} clips, {'verified' if cache['verified'] else 'NOT verified'}")
    for name in ("x3d", "piumr", "piumr-fast"):
        t.add_row(f"train {name}", _rate(rep["train"][name]))
    lo = rep["loader"]
    t.add_row("loader", _rate(lo) if "clips_per_s" not in lo else
              f"{lo['clips_per_s']:.2f} clips/s, {int(lo['workers'])} workers")
    t.add_row("bottleneck", rep["bottleneck"]["slower"])
    t.add_row("projection (found data)", _hours(rep["projection"]["found"]))
    t.add_row("projection (MA-52)", _hours(rep["projection"]["ma52"]))
    full = rep.get("full")
    if full is None and m["kind"] == "full" and not rep["device"].startswith("cuda"):
        t.add_row("GPU checks", "not run: kernels, bf16 steps and inference need a CUDA GPU")
    if full is not None:
        bad = sum(not r["ok"] for r in full["kernels"])
        t.add_row("kernels vs reference", f"{len(full['kernels']) - bad}/{len(full['kernels'])} shapes ok")
        st = full["paper_steps"]
        t.add_row("paper bf16 steps", f"{st['steps']} steps, loss {st['first_mean']:.3f} -> {st['last_mean']:.3f}")
        for name, row in full["inference"].items():
            t.add_row(f"infer {name}", _rate(row))
    t.add_row("problems", "\n".join(rep["problems"]) or "none")
    t.add_row("time", f"{rep['seconds']:.1f} s")
    _out.print(t)


def doctor(
    data: Annotated[Optional[str], typer.Option(help="MA-52 root, prepared cache, manifest .csv or 'synth' (default: the preset's)")] = None,
    preset: Annotated[str, typer.Option(help="config preset to measure")] = "paper",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON (docs/doctor.md)")] = False,
    full: Annotated[bool, typer.Option("--full", help="the long measurement (on CPU: batch 4, 5 steps, minutes; its "
                                                      "estimate is printed first) and on CUDA the GPU checks: kernels, "
                                                      "50 bf16 paper steps, inference")] = False,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda, cuda:1 (default: cuda if available)")] = None,
    batch: Annotated[Optional[int], typer.Option(min=1, help="training-speed batch (default: preset's on GPU, 4 with "
                                                             "--full on CPU, else 1 on CPU)")] = None,
    iters: Annotated[Optional[int], typer.Option(min=1, help="timed training steps per variant [default: 5; 1 on "
                                                             "CPU without --full]")] = None,
    warmup: Annotated[Optional[int], typer.Option(min=0, help="untimed steps before them [default: 2; 1 on CPU "
                                                              "without --full]")] = None,
    loader_seconds: Annotated[Optional[float], typer.Option(min=0.0, help="seconds of loader measurement [default: "
                                                                          "10; 3 on CPU without --full]")] = None,
    hash_clips: Annotated[int, typer.Option(help="prepared-cache files to re-hash (-1: all)")] = 64,
    threads: ThreadsOpt = None,
) -> None:
    """Versions, devices, data and cache, and short speed measurements; exit 1 when a check fails.

    On a CPU the default measurement is short (batch 1, one timed step per variant: about a minute on 2
    cores, and a synthetic set not generated yet is not generated); --full measures the long one."""
    from piumr.config import get_preset, with_overrides
    from piumr.doctor import DoctorOptions, run_doctor
    from piumr.runtime import configure_threads, pick_device

    with user_errors():
        cfg = with_overrides(get_preset(preset), {"data.root": data} if data is not None else {})
        dev = pick_device(device)
        configure_threads(threads, cfg.data.num_workers)
        opts = DoctorOptions(batch=batch, iters=iters, warmup=warmup, loader_seconds=loader_seconds,
                             hash_clips=hash_clips, full=full)
        rep = run_doctor(cfg, dev, opts, log=lambda m: err.print(f"[dim]doctor: {m}[/]", highlight=False))
    if as_json:
        typer.echo(json.dumps(rep, indent=1))
    else:
        _print(rep)
    if rep["problems"]:
        raise typer.Exit(1)
