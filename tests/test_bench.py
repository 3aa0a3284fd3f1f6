"""``piumr.bench``: the interleaved timing (every variant in one process, in rounds) gives one row per variant,
in the order asked, with a step time and the counted FLOPs of the variant's model, and no peak memory."""

from __future__ import annotations

import math

import pytest

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
