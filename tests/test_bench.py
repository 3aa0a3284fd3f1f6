"""``piumr.bench``: the interleaved timing (every variant in one process, in rounds) gives one row per variant,
in the order asked, with a step time and the counted FLOPs of the variant's model, and no peak memory."""

from __future__ import annotations

import math

import pytest
import torch

from piumr.bench import bench_interleaved
from piumr.config import get_preset


def test_interleaved_rows() -> None:
    cfg = get_preset("tiny")
    rows = bench_interleaved(cfg, ("x3d", "piumr-ref", "piumr"), "train", 2, "cpu", iters=2, warmup=1, flops=True)
    assert [r.variant for r in rows] == ["x3d", "piumr-ref", "piumr"]
    for r in rows:
        assert r.ms_per_step > 0 and r.clips_per_s == pytest.approx(2 / (r.ms_per_step / 1e3))
        assert math.isnan(r.peak_mem_gib) and r.gflop_per_step > 0
    # PIUmr's two paths run one model: the same counted work
    assert rows[1].gflop_per_step == pytest.approx(rows[2].gflop_per_step)


def test_unknown_variant_is_refused() -> None:
    from piumr.bench import run_bench

    with pytest.raises(ValueError, match="unknown variant 'nope'"):
        run_bench(get_preset("tiny"), "train", batch=2, device="cpu", variants=("nope",), interleave=True)


def test_a_training_step_counts_three_forwards() -> None:
    """``step_flops``: forward + backward = 3 forwards of the model (grad input + grad weight each cost one), not
    what torch's ``FlopCounterMode`` counts for a backward through depthwise convolutions (dense: C + 2 forwards
    for C channels), which made X3D-M's step 8x larger (933 GFLOP for 4 clips) and its CPU rate above 85 % of
    the machine's peak."""
    from torch.utils.flop_counter import FlopCounterMode

    from piumr.bench import forward_flops, step_flops

    cfg = get_preset("tiny")
    train, infer = step_flops(cfg, "x3d", "train", 2), step_flops(cfg, "x3d", "infer", 2)
    assert train == pytest.approx(3 * infer) and infer == pytest.approx(2 * forward_flops(cfg.model), rel=0.01)
    conv = torch.nn.Conv3d(16, 16, 3, padding=1, groups=16, bias=False)  # why the backward is not counted
    x = torch.randn(1, 16, 4, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        conv(x)
    with FlopCounterMode(display=False) as both:
        conv(x).sum().backward()
    assert both.get_total_flops() > 3 * fwd.get_total_flops()  # torch counts the depthwise backward densely
