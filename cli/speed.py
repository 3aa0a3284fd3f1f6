"""``piumr train``'s speed options: ``--compile``, ``--fast-depthwise`` and ``--speed LIST`` set ``TrainConfig.speed``
(docs/benchmarks.md, "Training-path levers"). Parsed here, before any heavy import."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from piumr.config import Depthwise, SpeedConfig

from .options import metavar

#: ``--speed`` names -> speed config field (switches); ``name=N`` forms take a value
SPEED_SWITCHES = {"cudnn-benchmark": "cudnn_benchmark", "channels-last": "channels_last", "fused-adamw": "fused_adamw",
                  "uint8": "uint8_clips", "prefetch": "prefetch", "compile": "compile"}
SPEED_VALUES = {"prefetch-factor": "prefetch_factor", "check-every": "check_every", "tiles": "depthwise_tiles",
                "depthwise": "depthwise", "pointwise": "pointwise"}
#: every lever on that can be on without a measurement file: what bench/gpu_lease.sh compares against off
SPEED_ALL = "cudnn-benchmark,channels-last,fused-adamw,uint8,prefetch,check-every=50"

CompileOpt = Annotated[Optional[bool], typer.Option(
    "--compile/--no-compile", help="torch.compile the network (slow first steps; awaits a GPU measurement)")]
FastDepthwiseOpt = Annotated[Optional[str], typer.Option(
    metavar=metavar(Depthwise), help="depthwise convs: auto (default: numba on the CPU, conv3d on a GPU), conv3d, "
                                     "aten (ATen's conv_depthwise3d, CUDA) or triton (CUDA; tiles per shape: --speed "
                                     "tiles=FILE); numba or autograd (the CPU's cheap backward; conv3d on a GPU)")]
SpeedOpt = Annotated[Optional[str], typer.Option(
    metavar="<lever,...>", help="speed levers, comma-separated: " + ", ".join(SPEED_SWITCHES) + " (no-NAME: off), "
    "prefetch-factor=N, check-every=N (host syncs), tiles=FILE, depthwise=NAME, pointwise=conv3d|matmul|auto; 'all' = " + SPEED_ALL
    + " (docs/benchmarks.md)")]

#: config key -> the option that sets it, for one-line errors (merged into cli.flags.FLAGS)
SPEED_FLAGS = {"speed.compile": "--compile/--no-compile", "speed.depthwise": "--fast-depthwise",
               **{f"speed.{f}": "--speed" for f in SpeedConfig.model_fields if f not in ("compile", "depthwise")}}


def parse_speed(text: Optional[str]) -> dict[str, Any]:
    """``--speed`` -> dotted overrides (``{"speed.uint8_clips": True, "speed.check_every": 50}``); ``ValueError``
    naming the flag and the item for anything unknown."""
    if text is None:
        return {}
    out: dict[str, Any] = {}
    items = [i.strip() for i in text.split(",")]
    for item in [j for i in items for j in (SPEED_ALL.split(",") if i == "all" else [i])]:
        if not item:
            continue
        name, eq, value = item.partition("=")
        off = name.startswith("no-") and name[3:] in SPEED_SWITCHES
        if not eq and (name in SPEED_SWITCHES or off):
            out[f"speed.{SPEED_SWITCHES[name[3:] if off else name]}"] = not off
        elif eq and name in SPEED_VALUES:
            field = SPEED_VALUES[name]
            out[f"speed.{field}"] = int(value) if value.isdigit() and field not in ("depthwise_tiles",) else value
        else:
            raise ValueError(f"--speed {item!r}: unknown lever; choose from {', '.join(SPEED_SWITCHES)} (or no-NAME), "
                             f"{', '.join(n + '=...' for n in SPEED_VALUES)}, all")
    return out


def speed_overrides(compile_: Optional[bool], fast_depthwise: Optional[str], speed: Optional[str]) -> dict[str, Any]:
    """The three options as dotted config overrides (None = not typed; ``--compile`` and ``--fast-depthwise`` win
    over the same lever in ``--speed``)."""
    out = parse_speed(speed)
    if compile_ is not None:
        out["speed.compile"] = compile_
    if fast_depthwise is not None:
        out["speed.depthwise"] = fast_depthwise
    return out
