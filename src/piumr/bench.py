"""``piumr bench``: step time, clips/s and peak memory of plain X3D vs PIUmr, measured in one run.

Each variant runs in a fresh ``spawn``ed process so its peak memory (CUDA:
``max_memory_allocated``; CPU: peak resident set size of the process, which
includes the interpreter and libraries, ~0.4 GB) is its own.
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
import torch.nn.functional as F

from piumr.backbones import backbone_spec
from piumr.config import ModelConfig, TrainConfig
from piumr.losses import build_criterion
from piumr.model import PIUmrNet
from piumr.model.backbone import build_x3d
from piumr.runtime import die_with_parent

__all__ = ["BenchRow", "VARIANTS", "bench_variant", "run_bench", "forward_flops", "estimate_cpu_seconds",
           "CPU_FLOPS_PER_CORE"]

Mode = Literal["train", "infer"]
VARIANTS = ("x3d", "x3d+tfam", "x3d+girl", "piumr", "piumr-fast")


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


#: CPU anchor, measured with ``piumr bench train --preset paper --batch 4``: a training step of plain X3D-M
#: (16x224, forward 9.46 GFLOPs per clip by ``forward_flops``) took 5.76 s for 4 clips on 2 idle cores.
#: Training counts 3x the forward FLOPs (forward + backward); the rate below is FLOPs per second per core.
CPU_FLOPS_PER_CORE = 3 * 9.46e9 * 4 / (5.76 * 2)


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
    if variant == "x3d" and backbone_spec(m.backbone).family == "x3d":
        return build_x3d(m.backbone, num_classes=m.num_classes, frames=m.frames, crop=m.crop, dropout=m.dropout), False
    tfam_on = variant in ("x3d+tfam", "piumr", "piumr-fast")
    net = PIUmrNet(m.model_copy(update={"tfam": m.tfam.model_copy(update={"enabled": tfam_on}), "pretrained": None}))
    if variant == "piumr-fast":
        from piumr.kernels.fastpath import apply_fast_path  # imports triton: only for the fast-path variant

        apply_fast_path(net, "triton")  # "auto" would find the model still on the CPU and swap nothing
    return net, variant in ("x3d+girl", "piumr", "piumr-fast")


def bench_variant(cfg: TrainConfig, variant: str, mode: Mode, batch: int, device: str, iters: int,
                  warmup: int) -> BenchRow:
    """Time ``iters`` steps (after ``warmup``) of one variant in this process."""
    warnings.filterwarnings("ignore")
    dev = torch.device(device)
    torch.manual_seed(0)
    model, full_loss = _build(cfg, variant)
    model = model.to(dev).train(mode == "train")
    criterion = build_criterion(cfg) if full_loss else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    x = torch.randn(batch, 3, cfg.model.frames, cfg.model.crop, cfg.model.crop, device=dev)
    y = torch.randint(0, cfg.model.num_classes, (batch,), device=dev)
    amp = cfg.optim.amp and dev.type == "cuda"

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
            if mode == "infer":
                with torch.no_grad():
                    model(x)
                return
            out = model(x)
        logits, emb = (out.logits, out.embedding) if hasattr(out, "logits") else (out, None)
        loss: torch.Tensor = (criterion(logits, emb, y).total if criterion is not None and emb is not None
                              else F.cross_entropy(logits.float(), y))
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward([loss])
        opt.step()

    for _ in range(warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / iters
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    return BenchRow(variant, mode, str(dev), batch, cfg.model.frames, cfg.model.crop, dt * 1e3, batch / dt, peak)


def _child(q: "mp.Queue[dict[str, object]]", cfg_json: str, variant: str, mode: Mode, batch: int, device: str,
           iters: int, warmup: int, threads: int) -> None:
    die_with_parent()  # a killed doctor or bench takes its measuring process with it
    torch.set_num_threads(threads)
    try:
        row = bench_variant(TrainConfig.model_validate_json(cfg_json), variant, mode, batch, device, iters, warmup)
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
              variants: tuple[str, ...] = ("x3d", "piumr"), threads: int | None = None) -> list[BenchRow]:
    """Run each variant in a fresh process; raises ``RuntimeError`` with the child's error."""
    ctx = mp.get_context("spawn")
    rows = []
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {VARIANTS}")
        q: mp.Queue[dict[str, object]] = ctx.Queue()
        p = ctx.Process(target=_child, args=(q, cfg.model_dump_json(), v, mode, batch, device, iters, warmup,
                                             threads or torch.get_num_threads()))
        p.start()
        res = _result_of(q, p, v)
        p.join()
        if not res.pop("ok"):
            raise RuntimeError(f"bench {v}: {res['error']}")
        rows.append(BenchRow(**res))  # type: ignore[arg-type]
    return rows
