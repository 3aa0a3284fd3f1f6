"""The items of ``bench/gpu_lease.sh``: ``python bench/gpu_lease.py ITEM WORK [--cpu]`` measures one item and
writes ``WORK/ITEM.json``; ``python bench/gpu_lease.py table RESULTS`` prints the final table.

Items, in the lease's priority order: ``calibrate`` (achieved copy TB/s and bf16 matmul TFLOP/s), ``profile`` (one
PIUmr training step's device time by op category), ``matrix`` (eager training step per speed setting, plain
pytorchvideo X3D first), ``depthwise`` (each X3D-M depthwise shape: cuDNN NCTHW and channels_last_3d, ATen's
conv_depthwise3d, the Triton kernels with their default and the best of a few tiles; writes the tiles file),
``loader`` (prepared cache of >= 48 clips: 6/10/14 workers x float32/uint8, GPU JPEG decoding), ``compile``
(the training step under torch.compile) and ``batch160``. ``--cpu``: the same code at tiny sizes on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ITEMS = ("calibrate", "profile", "matrix", "depthwise", "loader", "compile", "batch160")


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median_ms(fn: Callable[[], object], dev: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        times.append((time.perf_counter() - t) * 1e3)
    return sorted(times)[len(times) // 2]


def _setting(cpu: bool) -> dict[str, Any]:
    from piumr.config import get_preset, with_overrides

    if cpu:
        return {"dev": torch.device("cpu"), "cfg": get_preset("tiny"), "batch": 2, "iters": 2, "warmup": 1}
    cfg = with_overrides(get_preset("paper"), {"model.pretrained": None})
    return {"dev": torch.device("cuda"), "cfg": cfg, "batch": cfg.optim.batch_size, "iters": 6, "warmup": 2}


# ------------------------------------------------------------------------------------------ items


def calibrate(s: dict[str, Any]) -> dict[str, Any]:
    dev = s["dev"]
    n_bytes = (2 << 30) if dev.type == "cuda" else (32 << 20)
    a = torch.empty(n_bytes // 4, device=dev).uniform_()
    b = torch.empty_like(a)
    copy_ms = _median_ms(lambda: b.copy_(a), dev, 20, 3)
    n = 8192 if dev.type == "cuda" else 256
    x = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    mm_ms = _median_ms(lambda: x @ y, dev, 10, 3)
    return {"copy_tb_s": 2 * n_bytes / (copy_ms * 1e-3) / 1e12, "copy_bytes": n_bytes,
            "bf16_tflop_s": 2 * n**3 / (mm_ms * 1e-3) / 1e12, "matmul_n": n}


def _step_fn(s: dict[str, Any], speed: Any, batch: int) -> tuple[Callable[[], None], Any]:
    """One training step of the loop's own path (piumr.speed levers, PIUmr loss) on a fixed device batch."""
    from piumr.data.transforms import normalize_clips
    from piumr.losses import build_criterion
    from piumr.model import build_model
    from piumr.recipe import build_optimizer
    from piumr.speed import LossMeter, compile_model, configure_backends, prepare_model

    dev, cfg = s["dev"], s["cfg"].model_copy(update={"speed": speed})
    torch.manual_seed(0)
    model = build_model(config=cfg.model).to(dev).train()
    configure_backends(speed, dev)
    prepare_model(model, speed)
    opt = build_optimizer(model, cfg.optim, speed, dev)
    criterion = build_criterion(cfg)
    net = compile_model(model, speed)
    meter = LossMeter(speed.check_every)
    m = cfg.model
    clip = torch.randint(0, 256, (batch, 3, m.frames, m.crop, m.crop), dtype=torch.uint8, device=dev)
    clip_f = normalize_clips(clip)
    labels = torch.arange(batch, device=dev) % m.num_classes
    step = [0]

    def run() -> None:
        video = normalize_clips(clip) if speed.uint8_clips else clip_f
        if speed.channels_last:
            video = video.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            out = net(video)
        parts = criterion(out.logits, out.embedding, labels)
        step[0] += 1
        meter.add({"total": parts.total, **parts.logs}, step[0])
        opt.zero_grad(set_to_none=True)
        parts.total.backward()
        opt.step()

    return run, meter


def _time_step(s: dict[str, Any], speed: Any, batch: int, warmup: int | None = None) -> dict[str, Any]:
    dev = s["dev"]
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    run, meter = _step_fn(s, speed, batch)
    ms = _median_ms(run, dev, s["iters"], s["warmup"] if warmup is None else warmup)
    meter.flush()
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {"ms_per_step": ms, "clips_per_s": batch / ms * 1e3, "batch": batch, "peak_mem_gib": peak,
            "wall_s": time.perf_counter() - t0}


def _speed(**over: Any) -> Any:
    from piumr.config import SpeedConfig

    return SpeedConfig(**over)


def _settings(cuda: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        "piumr": {}, "cudnn_benchmark": {"cudnn_benchmark": True}, "channels_last": {"channels_last": True},
        "fused_adamw": {"fused_adamw": True}, "uint8_on_device": {"uint8_clips": True},
        "check_every_50": {"check_every": 50}, "depthwise_aten": {"depthwise": "aten"},
    }
    if cuda:
        out["depthwise_triton"] = {"depthwise": "triton"}
        out["all_eager"] = {"cudnn_benchmark": True, "fused_adamw": True, "uint8_clips": True, "check_every": 50,
                            "depthwise": "triton"}
    return out


def matrix(s: dict[str, Any]) -> dict[str, Any]:
    from piumr.bench import bench_variant

    x3d = bench_variant(s["cfg"], "x3d", "train", s["batch"], str(s["dev"]), s["iters"], s["warmup"])
    rows: dict[str, Any] = {"x3d_plain": {"ms_per_step": x3d.ms_per_step, "clips_per_s": x3d.clips_per_s,
                                          "batch": s["batch"], "peak_mem_gib": x3d.peak_mem_gib}}
    for name, over in _settings(s["dev"].type == "cuda").items():
        try:
            rows[name] = _time_step(s, _speed(**over), s["batch"])
        except Exception as e:  # one setting failing must not lose the others: recorded in the JSON
            rows[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
        rows[name]["vs_x3d"] = rows[name].get("clips_per_s", 0.0) / x3d.clips_per_s
    return rows


def profile(s: dict[str, Any]) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    dev = s["dev"]
    run, _ = _step_fn(s, _speed(), s["batch"])
    for _ in range(s["warmup"]):
        run()
    _sync(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with torch_profile(activities=acts, record_shapes=True) as prof:
        run()
        _sync(dev)
    cats: dict[str, float] = {}
    for evt in prof.key_averages(group_by_input_shape=True):
        us = float(evt.self_device_time_total if dev.type == "cuda" else evt.self_cpu_time_total)
        if us > 0:
            cat = _category(evt.key, evt.input_shapes)
            cats[cat] = cats.get(cat, 0.0) + us / 1e3
    total = sum(cats.values())
    return {"ms_by_category": dict(sorted(cats.items(), key=lambda kv: -kv[1])), "total_ms": total,
            "time": "device (self CUDA)" if dev.type == "cuda" else "self CPU"}


def _category(name: str, shapes: Any) -> str:
    n = name.lower()
    if "conv" in n:
        dw = any(isinstance(sh, list) and len(sh) == 5 and sh[1:] == [1, 3, 3, 3] for sh in (shapes or []))
        return "conv depthwise" if dw or "depthwise" in n else "conv other"
    for cat, keys in (("batch norm", ("batch_norm", "bn_")), ("matmul/linear", ("mm", "linear", "matmul", "gemm")),
                      ("optimizer", ("adam", "foreach", "fused")), ("copy/cast", ("copy", "to_copy", "cast")),
                      ("reduction", ("sum", "mean", "max", "norm", "reduce")),
                      ("elementwise", ("add", "mul", "sigmoid", "silu", "relu", "div", "sub", "where", "fill", "swish"))):
        if any(k in n for k in keys):
            return cat
    return "other"


def depthwise(s: dict[str, Any], work: Path) -> dict[str, Any]:
    from piumr.doctor.full import x3d_depthwise_shapes
    from piumr.kernels.depthwise import (
        DepthwiseConv3dFunction, _out_size, _tile, depthwise_conv3d, depthwise_conv3d_backward_input,
        depthwise_conv3d_backward_weight, tile_key, triton_available,
    )

    dev, cuda = s["dev"], s["dev"].type == "cuda"
    m = s["cfg"].model
    shapes = x3d_depthwise_shapes(m.backbone, m.frames, m.crop)
    b, dt = s["batch"], torch.bfloat16 if cuda else torch.float32
    rows, tiles = [], {}
    for c, t, h, w, st in shapes:
        x = torch.randn(b, c, t, h, w, device=dev, dtype=dt)
        wt = torch.randn(c, 1, 3, 3, 3, device=dev, dtype=dt) * 0.2
        gy = torch.randn(b, c, t, _out_size(h, st), _out_size(w, st), device=dev, dtype=dt)

        def fwd_bwd(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], xin: torch.Tensor) -> Callable[[], object]:
            def go() -> object:
                xr, wr = xin.detach().requires_grad_(True), wt.detach().requires_grad_(True)
                return torch.autograd.grad(fn(xr, wr), (xr, wr), gy)
            return go

        row: dict[str, Any] = {"shape": [c, t, h, w, st], "batch": b}
        conv = lambda xr, wr: F.conv3d(xr, wr, None, (1, st, st), 1, 1, c)  # noqa: E731
        row["conv3d_ms"] = _median_ms(fwd_bwd(conv, x), dev, s["iters"], 2)
        row["conv3d_channels_last_ms"] = _median_ms(
            fwd_bwd(conv, x.contiguous(memory_format=torch.channels_last_3d)), dev, s["iters"], 2)
        if cuda:
            aten = getattr(torch._C._nn, "conv_depthwise3d")
            row["aten_ms"] = _median_ms(fwd_bwd(lambda xr, wr: aten(xr, wr, [3, 3, 3], None, [1, st, st], [1, 1, 1],
                                                                   [1, 1, 1]), x), dev, s["iters"], 2)
        if cuda and triton_available():
            row["triton_ms"] = _median_ms(fwd_bwd(lambda xr, wr: DepthwiseConv3dFunction.apply(xr, wr, st), x),
                                          dev, s["iters"], 2)
            ho, wo = _out_size(h, st), _out_size(w, st)
            kernels = {"fwd": ((t, ho, wo), lambda blk: depthwise_conv3d(x, wt, st, block=blk)),
                       "bwd_input": ((t, h, w), lambda blk: depthwise_conv3d_backward_input(gy, wt, (h, w), st,
                                                                                            block=blk)),
                       "bwd_weight": ((t, ho, wo), lambda blk: depthwise_conv3d_backward_weight(x, gy, st, block=blk))}
            best_total = 0.0
            for kind, ((pt, ph, pw), call) in kernels.items():
                cands = {_tile(pt, ph, pw)} | {(1, 8, 64), (2, 8, 32), (4, 8, 16)}  # each one a Triton compile
                timed = {blk: _median_ms(_bound(call, blk), dev, s["iters"], 2) for blk in sorted(cands)}
                best = min(timed, key=lambda k: timed[k])
                tiles[tile_key(kind, t, h, w, st)] = list(best)
                row[f"{kind}_default_ms"], row[f"{kind}_best_ms"] = timed[_tile(pt, ph, pw)], timed[best]
                best_total += timed[best]
            row["triton_tuned_kernels_ms"] = best_total
        rows.append(row)
    (work / "depthwise_tiles.json").write_text(json.dumps(tiles, indent=1))
    tot = {k: sum(r.get(k, 0.0) for r in rows) for k in ("conv3d_ms", "conv3d_channels_last_ms", "aten_ms", "triton_ms",
                                                          "triton_tuned_kernels_ms")}
    return {"shapes": rows, "total_ms_per_shape_once": tot, "tiles_file": "depthwise_tiles.json",
            "note": "one layer of each distinct shape, fwd+bwd; X3D-M repeats shapes (26 convs)"}


def _bound(call: Callable[[Any], object], arg: Any) -> Callable[[], object]:
    return lambda: call(arg)


def loader(s: dict[str, Any], work: Path) -> dict[str, Any]:
    from piumr.data.bench import loader_throughput

    cpu = s["dev"].type == "cpu"
    preset = "tiny" if cpu else "paper"
    raw, cache = work / "synth", work / "synth_cache"
    py = [sys.executable, "-m", "piumr"]
    t0 = time.perf_counter()
    if not (cache / "piumr_manifest.json").is_file():
        subprocess.run(py + ["synth", "--out", str(raw), "--preset", preset, "--persons", "4" if cpu else "8",
                             "--clips-per-person", "12", "--classes-per-body", "1", "--workers", "2" if cpu else "12"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(py + ["prepare", "--data", str(raw), "--out", str(cache), "--workers", "2" if cpu else "12",
                             "--short-side", str(s["cfg"].data.short_side)], check=True)
    made_s = time.perf_counter() - t0
    m, secs = s["cfg"].model, 1.0 if cpu else 5.0
    rows = []
    for workers in ((0, 1) if cpu else (6, 10, 14)):
        for uint8 in (False, True):
            rows.append(loader_throughput(cache, "train", m.frames, m.crop, s["cfg"].data.short_side, workers,
                                          s["batch"], secs, uint8=uint8))
    if not cpu:
        rows.append(loader_throughput(cache, "train", m.frames, m.crop, s["cfg"].data.short_side, 0, s["batch"], secs,
                                      gpu_decode=True))
    return {"rows": rows, "data_prep_s": made_s}


def run_item(item: str, work: Path, cpu: bool) -> dict[str, Any]:
    s = _setting(cpu)
    if item == "calibrate":
        return calibrate(s)
    if item == "profile":
        return profile(s)
    if item == "matrix":
        return matrix(s)
    if item == "depthwise":
        return depthwise(s, work)
    if item == "loader":
        return loader(s, work)
    if item == "compile":
        warm = time.perf_counter()
        row = _time_step(s, _speed(compile=True), s["batch"], warmup=2)
        return {"compiled": row, "first_steps_s": time.perf_counter() - warm}
    if item == "batch160":
        b = 8 if cpu else 160
        return {"piumr": _time_step(s, _speed(), b),
                "all_eager": _time_step(s, _speed(**_settings(not cpu).get("all_eager", {})), b)}
    raise SystemExit(f"unknown item {item!r}; choose from {', '.join(ITEMS)}, table")


def table(results: Path) -> None:
    """The one table the lease ends with: item, status, and its headline numbers."""
    res = json.loads(results.read_text()) if results.is_file() else {}
    print(f"{'item':<11} {'status':<9} numbers")
    for item in ITEMS:
        r = res.get(item, {"status": "not run"})
        body = r.get("result", {})
        nums = ""
        if item == "calibrate" and body:
            nums = f"copy {body['copy_tb_s']:.2f} TB/s, bf16 matmul {body['bf16_tflop_s']:.1f} TFLOP/s"
        elif item == "matrix" and body:
            nums = ", ".join(f"{k} {v.get('clips_per_s', float('nan')):.1f} clips/s" for k, v in body.items())
        elif item == "profile" and body:
            nums = ", ".join(f"{k} {v:.1f} ms" for k, v in list(body["ms_by_category"].items())[:5])
        elif item == "depthwise" and body:
            nums = ", ".join(f"{k} {v:.2f}" for k, v in body["total_ms_per_shape_once"].items() if v)
        elif item == "loader" and body:
            nums = ", ".join(f"{r.get('workers')}w {r.get('dtype', '')} {r.get('decode', '')} "
                             f"{r.get('clips_per_s', float('nan')):.1f}" for r in body["rows"] if "not_run" not in r)
        elif item == "compile" and body:
            nums = f"{body['compiled']['clips_per_s']:.1f} clips/s, first steps {body['first_steps_s']:.0f} s"
        elif item == "batch160" and body:
            nums = ", ".join(f"{k} {v['clips_per_s']:.1f} clips/s" for k, v in body.items())
        print(f"{item:<11} {r.get('status', '?'):<9} {nums or r.get('error', '')[:100]}")


def main(argv: list[str]) -> None:
    if len(argv) >= 2 and argv[0] == "table":
        table(Path(argv[1]))
        return
    if len(argv) < 2:
        raise SystemExit("usage: gpu_lease.py ITEM WORK [--cpu] | table RESULTS")
    item, work, cpu = argv[0], Path(argv[1]), "--cpu" in argv[2:]
    work.mkdir(parents=True, exist_ok=True)
    if not cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run bench/gpu_lease.sh with PIUMR_LEASE_CPU=1 for the CPU mode")
    t = time.perf_counter()
    result = run_item(item, work, cpu)
    (work / f"{item}.json").write_text(json.dumps({"result": result, "compute_s": time.perf_counter() - t}))


if __name__ == "__main__":
    main(sys.argv[1:])
