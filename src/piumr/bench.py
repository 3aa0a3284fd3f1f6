"""``piumr bench``: step time, clips/s and peak memory of plain X3D vs PIUmr, measured in one run.

Two ways to time the variants (``run_bench(interleave=...)``):

- separate (the GPU's default): each variant in a fresh ``spawn``ed process, its steps in a row, so its peak memory
  (CUDA: ``max_memory_allocated``; CPU: peak resident set size of the process, which includes the interpreter and
  libraries, ~0.4 GB) is its own;
- interleaved (the CPU's default): every variant in one process, timed in rounds (round r times one step of each
  variant), so a slow spell of a shared machine hits them alike and their ratio holds (on a busy 2-core VM the
  separate way moved plain X3D's step from 376 to 514 ms between two runs a minute apart). No peak memory.

Variants: ``x3d`` is plain pytorchvideo X3D as built (torch's own ops: the old path); ``piumr-ref`` PIUmr with
every speed lever off (the old path); ``piumr``, ``x3d+tfam``, ``x3d+girl`` and ``x3d-fast`` (plain X3D) run the
config's speed levers resolved for the device (``piumr.speed.resolve_speed``: on the CPU the CPU path);
``piumr-fast`` the Triton depthwise kernels. Each row also gives the FLOPs of one training step (forward +
backward, counted by ``torch.utils.flop_counter`` on the variant's model with torch's own ops, so every path of
one model counts the same work) and the rate they were done at.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import resource
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig, SpeedConfig, TrainConfig, with_overrides
from piumr.recipe import build_criterion, build_optimizer, train_step
from piumr.model import PIUmrNet
from piumr.model.backbone import build_x3d
from piumr.runtime import die_with_parent

__all__ = ["BenchRow", "VARIANTS", "bench_variant", "run_bench", "bench_interleaved", "forward_flops", "estimate_cpu_seconds",
           "CPU_FLOPS_PER_CORE", "cpu_peak", "cpu_peak_line", "step_flops"]

Mode = Literal["train", "infer"]
VARIANTS = ("x3d", "x3d-fast", "x3d+tfam", "x3d+girl", "piumr-ref", "piumr", "piumr-fast")
#: variants that run the config's speed levers (the others: torch's own ops, or Triton)
_LEVERED = ("x3d-fast", "x3d+tfam", "x3d+girl", "piumr")
#: variant -> the variant with the same model and torch's own ops (what its FLOPs are counted on)
_SAME_MODEL = {"x3d-fast": "x3d", "piumr-ref": "piumr", "piumr-fast": "piumr"}


@dataclass(frozen=True)
class BenchRow:
    variant: str
    mode: str
    device: str
    batch: int
    frames: int
    crop: int
    ms_per_step: float
    clips_per_s: float
    peak_mem_gib: float
    gflop_per_step: float = float("nan")  # forward + backward of the model (train) or forward (infer)
    gflop_per_s: float = float("nan")


#: CPU anchor, measured with ``piumr bench train --preset paper --batch 4 --variants x3d,x3d-fast,piumr`` (2026-12-07,
#: 2-core AMD EPYC Zen 5, idle): a training step of PIUmr on the configured CPU path (X3D-M, 16x224, forward 9.46
#: GFLOPs per clip by ``forward_flops``) took 3.25 s for 4 clips on 2 threads (plain X3D on torch's ops: 7.11 s; the
#: anchor was 5.76 s of that old path until then, which overstated a training run's time about 1.8x).
#: Training counts 3x the forward FLOPs (forward + backward); the rate below is FLOPs per second per core.
CPU_FLOPS_PER_CORE = 3 * 9.46e9 * 4 / (3.25 * 2)


def forward_flops(cfg: ModelConfig) -> float:
    """FLOPs of one clip's forward pass through ``cfg``'s backbone and head, counted on the meta device
    (no memory, no arithmetic). TFAM is left out (it is ~0.2 % of an X3D-M step)."""
    from torch.utils.flop_counter import FlopCounterMode

    plain = cfg.model_copy(update={"tfam": cfg.tfam.model_copy(update={"enabled": False}), "pretrained": None})
    with torch.device("meta"):
        net = PIUmrNet(plain)
        x = torch.empty(1, 3, cfg.frames, cfg.crop, cfg.crop)
    with FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def estimate_cpu_seconds(cfg: ModelConfig, clips: int, *, train: bool, threads: int) -> float:
    """ESTIMATED seconds for ``clips`` clips through ``cfg`` on ``threads`` idle CPU cores: forward FLOPs
    (x3 when training) over ``CPU_FLOPS_PER_CORE`` per thread. A loaded machine is slower."""
    return forward_flops(cfg) * (3 if train else 1) * clips / (CPU_FLOPS_PER_CORE * max(1, threads))


def _build(cfg: TrainConfig, variant: str) -> tuple[torch.nn.Module, bool]:
    """(model, full loss) for a variant (full loss: the run's criterion, else CE); "x3d" is the plain backbone: pytorchvideo X3D (no wrapper), or a
    torchvision or VideoMAE backbone in the PIUmr wrapper with TFAM off."""
    m = cfg.model
    if variant in ("x3d", "x3d-fast") and backbone_spec(m.backbone).family == "x3d":
        return build_x3d(m.backbone, num_classes=m.num_classes, frames=m.frames, crop=m.crop, dropout=m.dropout), False
    tfam_on = variant in ("x3d+tfam", "piumr", "piumr-ref", "piumr-fast")
    net = PIUmrNet(m.model_copy(update={"tfam": m.tfam.model_copy(update={"enabled": tfam_on}), "pretrained": None}))
    if variant == "piumr-fast":
        from piumr.kernels.fastpath import apply_fast_path  # imports triton: only for the fast-path variant

        apply_fast_path(net, "triton")  # "auto" would find the model still on the CPU and swap nothing
    return net, variant in ("x3d+girl", "piumr", "piumr-ref", "piumr-fast")


def _criterion(cfg: TrainConfig, full_loss: bool) -> Any:
    """The recipe's criterion: the run's, or with GIRL off (CE alone) for a variant without it (the plain
    backbone gives logits only)."""
    return build_criterion(cfg if full_loss else with_overrides(cfg, {"girl.enabled": False}))


def _step_fn(model: torch.nn.Module, criterion: Any, opt: torch.optim.Optimizer | None, x: torch.Tensor,
             y: torch.Tensor, mode: Mode, amp: bool) -> Any:
    """One step: forward (infer, no grad) or the recipe's training step (``piumr.recipe.train_step``)."""

    def step() -> None:
        if mode == "infer":
            with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                model(x)
            return
        train_step(model, criterion, opt, x, y, amp=amp)

    return step


def step_flops(cfg: TrainConfig, variant: str, mode: Mode, batch: int) -> float:
    """FLOPs of one step of ``variant``: its forward pass on a real batch of ``batch`` clips (B, 3, T, S, S) on the
    CPU, counted by ``torch.utils.flop_counter`` with torch's own ops, times 3 when training (forward + backward:
    for convolutions and matmuls the input gradient and the weight gradient each cost one forward); the loss and
    AdamW are left out. The backward is not counted by ``FlopCounterMode`` itself: torch 2.14 counts a grouped
    (depthwise) convolution's backward as a dense one (C + 2 forwards for C channels instead of 3), which made an
    X3D-M training step look 8x larger than it is (``tests/test_bench.py``)."""
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    model, _ = _build(cfg, _SAME_MODEL.get(variant, variant))
    model.train(mode == "train")  # batch norm as the step runs it
    x = torch.randn(batch, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return float(counter.get_total_flops()) * (3 if mode == "train" else 1)


def _variant_step(cfg: TrainConfig, variant: str, mode: Mode, batch: int, dev: torch.device) -> Any:
    """One variant's step function on random clips (B, 3, T, S, S) and labels, its model built from seed 0."""
    from piumr.speed import prepare_model

    torch.manual_seed(0)
    model, full_loss = _build(cfg, variant)
    model = model.to(dev).train(mode == "train")
    if variant in _LEVERED:
        prepare_model(model, cfg.speed, dev)
    # the plain backbone gives logits only: CE (the recipe's criterion with GIRL off); the old path: plain AdamW
    criterion = _criterion(cfg, full_loss)
    opt = build_optimizer(model, cfg.optim, cfg.speed if variant in _LEVERED else SpeedConfig(fused_adamw=False), dev)
    x = torch.randn(batch, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop, device=dev)
    y = torch.randint(0, cfg.model.num_classes, (batch,), device=dev)
    return _step_fn(model, criterion, opt, x, y, mode, cfg.optim.amp and dev.type == "cuda")


def bench_variant(cfg: TrainConfig, variant: str, mode: Mode, batch: int, device: str, iters: int,
                  warmup: int, flops: bool = False) -> BenchRow:
    """Time ``iters`` steps (after ``warmup``) of one variant in this process; with ``flops`` (CPU only) also count
    one step's FLOPs (one more step on torch's own ops: seconds for a full-size model)."""
    warnings.filterwarnings("ignore")
    dev = torch.device(device)
    counted = step_flops(cfg, variant, mode, batch) if flops and dev.type == "cpu" else float("nan")
    step = _variant_step(cfg, variant, mode, batch, dev)
    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(iters):  # the median step: robust to another process taking the core for a moment
        t = time.perf_counter()
        step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    dt = sorted(times)[len(times) // 2]
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return BenchRow(variant, mode, str(dev), batch, cfg.model.frames, cfg.model.crop, dt * 1e3, batch / dt, peak,
                    counted / 1e9, counted / dt / 1e9)


def bench_interleaved(cfg: TrainConfig, variants: tuple[str, ...], mode: Mode, batch: int, device: str, iters: int,
                      warmup: int, flops: bool = False) -> list[BenchRow]:
    """Time ``iters`` rounds (after ``warmup`` steps of each) of every variant in this process, one step of each
    variant per round; each row's step is its median; peak memory is not measured (NaN)."""
    warnings.filterwarnings("ignore")
    dev = torch.device(device)
    steps = {}
    counted = {}
    for variant in variants:
        counted[variant] = step_flops(cfg, variant, mode, batch) if flops and dev.type == "cpu" else float("nan")
        steps[variant] = _variant_step(cfg, variant, mode, batch, dev)
        for _ in range(warmup):
            steps[variant]()
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(iters):
        for variant, step in steps.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            step()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            times[variant].append(time.perf_counter() - t)
    rows = []
    for variant in variants:
        dt = sorted(times[variant])[len(times[variant]) // 2]
        rows.append(BenchRow(variant, mode, str(dev), batch, cfg.model.frames, cfg.model.crop, dt * 1e3, batch / dt,
                             float("nan"), counted[variant] / 1e9, counted[variant] / dt / 1e9))
    return rows


def _child_interleaved(q: "mp.Queue[dict[str, object]]", cfg_json: str, variants: tuple[str, ...], mode: Mode,
                       batch: int, device: str, iters: int, warmup: int, threads: int, flops: bool) -> None:
    die_with_parent()
    torch.set_num_threads(threads)
    try:
        rows = bench_interleaved(TrainConfig.model_validate_json(cfg_json), variants, mode, batch, device, iters,
                                 warmup, flops)
        q.put({"ok": True, "rows": [asdict(r) for r in rows]})
    except Exception as e:  # reported to the parent, which raises it
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}"})


def _child(q: "mp.Queue[dict[str, object]]", cfg_json: str, variant: str, mode: Mode, batch: int, device: str,
           iters: int, warmup: int, threads: int, flops: bool) -> None:
    die_with_parent()  # a killed doctor or bench takes its measuring process with it
    torch.set_num_threads(threads)
    try:
        row = bench_variant(TrainConfig.model_validate_json(cfg_json), variant, mode, batch, device, iters, warmup,
                            flops)
        q.put({"ok": True, **asdict(row)})
    except Exception as e:  # reported to the parent, which raises it
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}"})


def _result_of(q: "mp.Queue[dict[str, object]]", p: Any, variant: str) -> dict[str, object]:
    """What the measuring process ``p`` put on ``q``; ``RuntimeError`` when it ended without a result (it was
    killed, or could not start) instead of waiting for ever."""
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"bench {variant}: the measuring process ended (exit code {p.exitcode}) "
                                   "without a result") from None


def run_bench(cfg: TrainConfig, mode: Mode, *, batch: int, device: str, iters: int = 5, warmup: int = 2,
              variants: tuple[str, ...] = ("x3d", "piumr"), threads: int | None = None,
              flops: bool = False, interleave: bool = False) -> list[BenchRow]:
    """Run each variant in a fresh process, or (``interleave``) all in one fresh process in rounds; ``flops``: also
    count each step's FLOPs on the CPU. Raises ``RuntimeError`` with the child's error."""
    ctx = mp.get_context("spawn")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {VARIANTS}")
    n_threads = threads or torch.get_num_threads()
    if interleave:
        q0: mp.Queue[dict[str, object]] = ctx.Queue()
        p0 = ctx.Process(target=_child_interleaved, args=(q0, cfg.model_dump_json(), tuple(variants), mode, batch,
                                                          device, iters, warmup, n_threads, flops))
        p0.start()
        res0 = _result_of(q0, p0, ",".join(variants))
        p0.join()
        if not res0.pop("ok"):
            raise RuntimeError(f"bench {','.join(variants)}: {res0['error']}")
        return [BenchRow(**r) for r in res0["rows"]]  # type: ignore[attr-defined]
    rows = []
    for v in variants:
        q: mp.Queue[dict[str, object]] = ctx.Queue()
        p = ctx.Process(target=_child, args=(q, cfg.model_dump_json(), v, mode, batch, device, iters, warmup,
                                             n_threads, flops))
        p.start()
        res = _result_of(q, p, v)
        p.join()
        if not res.pop("ok"):
            raise RuntimeError(f"bench {v}: {res['error']}")
        rows.append(BenchRow(**res))  # type: ignore[arg-type]
    return rows


def cpu_peak(threads: int, cpuinfo: str | None = None) -> tuple[str, float, float, int]:
    """(CPU model, clock GHz, assumed fp32 FLOP per cycle per core, threads) from ``/proc/cpuinfo`` (or the text
    given). FLOP per cycle assumes two FMA units at the widest vector width the flags name: 64 with AVX-512, 32
    with AVX2 + FMA, 16 otherwise -- an upper bound (some AVX-512 cores run 512-bit FMAs at half rate). Clock
    0.0 when the file gives none."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    per_cycle = 64.0 if "avx512f" in flags else 32.0 if {"avx2", "fma"} <= flags else 16.0
    try:
        ghz = float(fields.get("cpu MHz", "0")) / 1e3
    except ValueError:
        ghz = 0.0
    return fields.get("model name", "unknown CPU"), ghz, per_cycle, threads


def cpu_peak_line(threads: int, rows: list[BenchRow] | None = None) -> str:
    """One line: the CPU, its assumed fp32 peak (threads x clock x FLOP per cycle) and each row's share of it."""
    model, ghz, per_cycle, n = cpu_peak(threads)
    if ghz <= 0:
        return f"CPU {model}: clock unknown, no peak estimate"
    peak = n * ghz * per_cycle
    shares = ", ".join(f"{r.variant} {100 * r.gflop_per_s / peak:.1f} %" for r in rows or [])
    return (f"CPU {model}, {n} thread(s) x {ghz:.2f} GHz x {per_cycle:.0f} FLOP/cycle (assumed fp32 FMA peak) = "
            f"{peak:.0f} GFLOP/s" + (f"; of it: {shares}" if shares else ""))
