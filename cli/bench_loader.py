"""``piumr bench loader``: loader clips/s for several worker counts, uint8 against float32 clips, and JPEG
decoding on the GPU, each from one long-lived loader over at least 48 clips (docs/benchmarks.md)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from piumr.config import MAX_CROP, MAX_FRAMES, MAX_WORKERS, SYNTH

from .errors import console, user_errors
from .options import PresetOpt, ThreadsOpt, check_data

_out = console()


def _ints(flag: str, text: str, hi: int) -> list[int]:
    """``--workers 6,10,14`` -> [6, 10, 14]; ``ValueError`` naming the flag otherwise."""
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        vals = []
    if not vals or any(v < 0 or v > hi for v in vals):
        raise ValueError(f"{flag} {text!r}: give integers 0..{hi} separated by commas, e.g. 6,10,14")
    return vals


def bench_loader(
    data: Annotated[str, typer.Option(help="data root, prepared cache or manifest .csv (all its rows; 'synth' for the "
                                           "generated set)")] = SYNTH,
    preset: PresetOpt = "paper",
    workers: Annotated[str, typer.Option(help="worker counts to measure, comma-separated (e.g. 6,10,14)")] = "2",
    dtype: Annotated[str, typer.Option(metavar="<float32,uint8>", help="clip dtypes out of the loader, "
                                       "comma-separated (uint8: normalised later on the GPU)")] = "float32",
    gpu_decode: Annotated[bool, typer.Option("--gpu-decode", help="also: prepared-cache JPEGs decoded on CUDA "
                                             "(torchvision.io.decode_jpeg) and cropped there")] = False,
    batch: Annotated[Optional[int], typer.Option(min=1, help="clips a batch (default: the preset's)")] = None,
    seconds: Annotated[float, typer.Option(min=0.1, help="seconds each configuration is measured")] = 20.0,
    frames: Annotated[Optional[int], typer.Option(min=1, max=MAX_FRAMES)] = None,
    crop: Annotated[Optional[int], typer.Option(min=32, max=MAX_CROP)] = None,
    threads: ThreadsOpt = None,
) -> None:
    """Data loader throughput (augmented clips/s) from a prepared cache or raw videos."""
    with user_errors():
        check_data(data)
        counts = _ints("--workers", workers, MAX_WORKERS)
        dtypes = [d.strip() for d in dtype.split(",") if d.strip()]
        if not dtypes or any(d not in ("float32", "uint8") for d in dtypes):
            raise ValueError(f"--dtype {dtype!r}: choose float32, uint8 or both (float32,uint8)")
        from piumr.config import get_preset, with_overrides

        cfg = with_overrides(get_preset(preset), {"data.root": data})
    from piumr.data.bench import loader_throughput
    from piumr.data.splits import resolve_root
    from piumr.runtime import configure_threads

    with user_errors():
        root = resolve_root(cfg.data)
        configure_threads(threads, max(counts))
        b = batch or cfg.optim.batch_size
        f, c = frames or cfg.model.frames, crop or cfg.model.crop
        rows = [{"workers": w, "dtype_asked": d, **loader_throughput(root, "train", f, c, cfg.data.short_side, w, b,
                                                                     seconds, uint8=d == "uint8")}
                for w in counts for d in dtypes]
        if gpu_decode:
            rows.append({"workers": 0, "dtype_asked": "uint8", **loader_throughput(
                root, "train", f, c, cfg.data.short_side, 0, b, seconds, gpu_decode=True)})
    t = Table(title=f"bench loader: {root}, batch {b}, {f}x{c}")
    for col in ("workers", "dtype", "decode", "clips/s", "MB/clip", "passes", "source"):
        t.add_column(col, justify="right")
    for r in rows:
        if "not_run" in r:
            t.add_row(str(r["workers"]), r["dtype_asked"], "cuda", r["not_run"], "", "", "")
            continue
        t.add_row(str(r["workers"]), r["dtype"], r["decode"], f"{r['clips_per_s']:.2f}",
                  f"{r['bytes_per_clip'] / 1e6:.2f}", f"{r['passes']:.1f}", r["source"])
    _out.print(t)
    _out.print_json(json.dumps(rows))
